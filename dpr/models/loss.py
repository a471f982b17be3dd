"""The DPR loss as pure tensor functions, used by every training and validation path, and
the reranker's listwise loss (`listwise_loss`), the same softmax cross-entropy over each
question's own group of candidates; `distill_loss`, the KL divergence that teaches the
bi-encoder a reranker's preferences over each question's own passages.

A boolean mask [Q × C] leaves the copies of a question's positives in the in-batch pool out of
its softmax (score -inf) and of the correct count (why: docs/DIFFERENCES.md, "Training loop");
a question's own positive column never is, so no row is fully masked (the loss would be NaN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def scaled_scores(q_vectors: torch.Tensor, ctx_vectors: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """The training scores [Q × C]: dot products of questions [Q × D] and passages [C × D]
    divided by the temperature (DPR's recipe: 1, the plain dot product).

    With cosine similarity the vectors arrive L2-normalised (the encoder normalises them), so
    this is cos(q, c) / temperature, the contrastive loss of E5 and sentence-transformers'
    MultipleNegativesRankingLoss (scale = 1 / temperature).
    """
    scores = q_vectors @ ctx_vectors.transpose(0, 1)
    return scores if temperature == 1.0 else scores / temperature


def duplicate_positive_mask(ctx_keys: torch.Tensor, positive_keys: torch.Tensor,
                            positive_idx: torch.Tensor) -> torch.Tensor:
    """Bool [Q × C]: True where column j holds a copy of one of question i's positives,
    other than its own positive column (`positive_idx` [Q]). Keys are int64: `ctx_keys` [C]
    per column, `positive_keys` [Q × P] per question, padded with -1 (no key is negative)."""
    mask = (positive_keys[:, :, None] == ctx_keys[None, None, :]).any(dim=1)  # [Q × C]
    mask[torch.arange(mask.shape[0], device=mask.device), positive_idx] = False
    return mask


def masked_scores(scores: torch.Tensor, positive_idx: torch.Tensor,
                  mask: torch.Tensor | None) -> torch.Tensor:
    """[Q × C] scores in float32, with the `mask` columns (never a question's own positive
    column of `positive_idx`) at -inf."""
    scores = scores.float()
    if mask is None:
        return scores
    keep = torch.zeros_like(mask)
    keep[torch.arange(mask.shape[0], device=mask.device), positive_idx] = True
    return scores.masked_fill(mask & ~keep, float("-inf"))


def nll_loss(scores: torch.Tensor, positive_idx: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean negative log-likelihood of each question's positive among all passages (a scalar,
    computed in float32 whatever the scores' dtype).

    Args:
        scores: [Q × C] similarity scores.
        positive_idx: [Q] column of each question's positive passage.
        mask: [Q × C] bool columns left out of each question's softmax, or None (DPR).
    """
    return F.cross_entropy(masked_scores(scores, positive_idx, mask), positive_idx,
                           reduction="mean")


def correct_count(scores: torch.Tensor, positive_idx: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
    """Number of questions whose highest-scoring passage is their positive (scalar int64).

    Masked columns (see `nll_loss`) cannot be the highest-scoring passage.
    """
    best = masked_scores(scores, positive_idx, mask).argmax(dim=1)
    return (best == positive_idx).sum()


def listwise_loss(scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The reranker's loss: mean softmax cross-entropy of each question's positive among its
    own candidates (a scalar, in float32), as `nll_loss` with the positive in column 0.

    Args:
        scores: [Q × G] scores of each question's group, its positive first.
        valid: [Q × G] bool, False for the empty slots of groups shorter than G (left out of
            the softmax); None = every group is full.
    """
    first = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return nll_loss(scores, first, None if valid is None else ~valid)


def listwise_correct(scores: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Number of questions whose positive (column 0) scored strictly above every other
    candidate of its group (a tie counts as wrong: a constant scorer gets none right);
    `valid`: see `listwise_loss`."""
    first = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    kept = masked_scores(scores, first, None if valid is None else ~valid)
    return (kept[:, 1:] < kept[:, :1]).all(dim=1).sum()


def own_groups(positive_idx: torch.Tensor, columns: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each question's own passages in a bi-encoder batch, whose blocks are contiguous and in
    question order (`dpr.data.batch.BiEncoderBatch`): (columns [Q × G] int64, valid [Q × G]
    bool), block i running from `positive_idx[i]` to the next question's positive (the last to
    `columns`), G its longest block; the empty slots of shorter blocks point at column 0."""
    ends = torch.cat([positive_idx[1:], positive_idx.new_tensor([columns])])
    sizes = ends - positive_idx
    width = int(sizes.max()) if sizes.numel() else 0
    slots = torch.arange(width, device=positive_idx.device)
    valid = slots[None, :] < sizes[:, None]
    return torch.where(valid, positive_idx[:, None] + slots[None, :], 0), valid


def distill_loss(scores: torch.Tensor, positive_idx: torch.Tensor,
                 teacher: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence KL(teacher ‖ student) between the softmaxes of a reranker's scores
    and the bi-encoder's over each question's own passages (its positive and negatives), a
    scalar in float32: the distillation term of `--distill_scores`.

    Args:
        scores: [Q × C] the bi-encoder's scores of this process's questions and passages (as
            trained: divided by the temperature).
        positive_idx: [Q] column of each question's positive, which starts its block.
        teacher: [C] the reranker's score of each column for the question whose block holds it
            (its softmax taken at temperature 1, as the reranker was trained).
    """
    columns, valid = own_groups(positive_idx, scores.shape[1])
    student = scores.float().gather(1, columns).masked_fill(~valid, float("-inf"))
    target = teacher.float()[columns].masked_fill(~valid, float("-inf"))
    log_student = F.log_softmax(student, dim=1)[valid]
    log_target = F.log_softmax(target, dim=1)[valid]
    return (log_target.exp() * (log_target - log_student)).sum() / scores.shape[0]
