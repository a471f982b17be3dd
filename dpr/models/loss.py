"""The DPR loss as pure tensor functions, used by every training and validation path."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dot_scores(q_vectors: torch.Tensor, ctx_vectors: torch.Tensor) -> torch.Tensor:
    """Dot-product similarity.

    Args:
        q_vectors: [Q × D] question representations.
        ctx_vectors: [C × D] passage representations.

    Returns:
        Scores [Q × C].
    """
    return q_vectors @ ctx_vectors.transpose(0, 1)


def nll_loss(scores: torch.Tensor, positive_idx: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of each question's positive among all passages.

    Args:
        scores: [Q × C] similarity scores.
        positive_idx: [Q] column of each question's positive passage.

    Returns:
        Scalar loss (computed in float32 whatever the scores' dtype).
    """
    return F.cross_entropy(scores.float(), positive_idx, reduction="mean")


def correct_count(scores: torch.Tensor, positive_idx: torch.Tensor) -> torch.Tensor:
    """Number of questions whose highest-scoring passage is their positive (scalar int64)."""
    return (scores.argmax(dim=1) == positive_idx).sum()
