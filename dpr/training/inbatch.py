"""In-batch negatives across processes.

`gather_with_offsets` semantics (DPR's, on tensors instead of pickles):
- Every process contributes its question vectors [B_r × D], passage vectors [C_r × D] and the
  positive indices [B_r] (local rows of its passages).
- The global question matrix stacks the processes' questions in *global-rank* order, the
  global passage matrix their passages in the same order, and each positive index is shifted
  by the number of passages of the processes before it.
- This process's own slot holds its local, gradient-carrying tensors; the other slots are
  detached copies. Each process therefore back-propagates through its own vectors only; DDP
  then averages the gradients over processes, as DPR does.

`duplicate_mask` semantics: passage keys travel with the passage vectors (same global order),
and every process marks, for its own questions, the global columns that copy one of their
positives (other than the positive itself); the rows are then gathered in global-rank order,
so every process holds the same [ΣB × ΣC] mask.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist

from dpr.models.loss import correct_count, dot_scores, duplicate_positive_mask, nll_loss
from dpr.utils.dist import DistContext, all_gather_variable


class InBatchLoss(NamedTuple):
    """The loss of one batch over the global pool, and its counts (the same on every process).

    Attributes:
        loss: Scalar loss (carries gradients to this process's vectors).
        correct: Questions whose positive scored highest (scalar int64 tensor).
        questions: Number of questions.
        masked: Number of (question, passage) pairs left out as copies of a positive.
    """

    loss: torch.Tensor
    correct: torch.Tensor
    questions: int
    masked: int


def gather_with_offsets(
    q_vectors: torch.Tensor,
    ctx_vectors: torch.Tensor,
    positive_idx: torch.Tensor,
    dctx: DistContext,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Builds the global in-batch pool (see the module docstring).

    Args:
        q_vectors: [B × D] local question vectors.
        ctx_vectors: [C × D] local passage vectors.
        positive_idx: [B] local positive rows.
        dctx: Process context.

    Returns:
        Global questions [ΣB × D], global passages [ΣC × D], global positive rows [ΣB].
    """
    if not dctx.distributed:
        return q_vectors, ctx_vectors, positive_idx
    world, rank = dctx.world_size, dctx.rank
    device = q_vectors.device
    local_sizes = torch.tensor([q_vectors.shape[0], ctx_vectors.shape[0]], device=device)
    sizes = torch.empty(world * 2, dtype=local_sizes.dtype, device=device)
    dist.all_gather_into_tensor(sizes, local_sizes)
    sizes = sizes.view(world, 2).tolist()
    max_rows = max(nq + nc for nq, nc in sizes)
    max_q = max(nq for nq, _ in sizes)
    packed = torch.cat([q_vectors, ctx_vectors]).detach()
    packed = torch.nn.functional.pad(packed, (0, 0, 0, max_rows - packed.shape[0]))
    all_vectors = packed.new_empty((world * max_rows, packed.shape[1]))
    dist.all_gather_into_tensor(all_vectors, packed.contiguous())
    all_vectors = all_vectors.view(world, max_rows, -1)
    pos = torch.nn.functional.pad(positive_idx, (0, max_q - positive_idx.shape[0]))
    all_pos = torch.empty(world * max_q, dtype=pos.dtype, device=device)
    dist.all_gather_into_tensor(all_pos, pos.contiguous())
    all_pos = all_pos.view(world, max_q)

    questions, passages, positives, offset = [], [], [], 0
    for r, (nq, nc) in enumerate(sizes):
        if r == rank:
            questions.append(q_vectors)
            passages.append(ctx_vectors)
        else:
            questions.append(all_vectors[r, :nq])
            passages.append(all_vectors[r, nq : nq + nc])
        positives.append(all_pos[r, :nq] + offset)
        offset += nc
    return torch.cat(questions), torch.cat(passages), torch.cat(positives)


def duplicate_mask(ctx_keys: torch.Tensor, positive_keys: torch.Tensor,
                   positive_idx: torch.Tensor, dctx: DistContext) -> torch.Tensor:
    """The global mask of in-batch copies of each question's positives (module docstring).

    Args:
        ctx_keys: [C] local passage keys.
        positive_keys: [B × P] keys of the local questions' positives (-1 padded).
        positive_idx: [B] local positive rows.
        dctx: Process context.

    Returns:
        Bool mask [ΣB × ΣC] in the layout of `gather_with_offsets`.
    """
    if not dctx.distributed:
        return duplicate_positive_mask(ctx_keys, positive_keys, positive_idx)
    keys_per_rank = all_gather_variable(ctx_keys, dctx)
    offset = sum(k.shape[0] for k in keys_per_rank[: dctx.rank])
    local = duplicate_positive_mask(torch.cat(keys_per_rank), positive_keys,
                                    positive_idx + offset)
    return torch.cat(all_gather_variable(local.to(torch.uint8), dctx)).bool()


def inbatch_loss(
    q_vectors: torch.Tensor,
    ctx_vectors: torch.Tensor,
    positive_idx: torch.Tensor,
    dctx: DistContext,
    *,
    ctx_keys: torch.Tensor | None = None,
    positive_keys: torch.Tensor | None = None,
) -> InBatchLoss:
    """The DPR loss over the global in-batch pool.

    Args:
        q_vectors: [B × D] local question vectors.
        ctx_vectors: [C × D] local passage vectors.
        positive_idx: [B] local positive rows.
        dctx: Process context.
        ctx_keys: [C] passage keys; with `positive_keys`, copies of a question's positives
            are masked out of its negatives. None (either) = DPR's loss, nothing masked.
        positive_keys: [B × P] keys of each question's positives, -1 padded.

    Returns:
        Loss and counts, all global: the same on every process.
    """
    q, ctx, pos = gather_with_offsets(q_vectors, ctx_vectors, positive_idx, dctx)
    mask = None
    if ctx_keys is not None and positive_keys is not None:
        mask = duplicate_mask(ctx_keys, positive_keys, positive_idx, dctx)
    scores = dot_scores(q, ctx)
    return InBatchLoss(nll_loss(scores, pos, mask), correct_count(scores, pos, mask),
                       q.shape[0], int(mask.sum()) if mask is not None else 0)
