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
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from dpr.models.loss import correct_count, dot_scores, nll_loss
from dpr.utils.dist import DistContext


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


def inbatch_loss(
    q_vectors: torch.Tensor,
    ctx_vectors: torch.Tensor,
    positive_idx: torch.Tensor,
    dctx: DistContext,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The DPR loss over the global in-batch pool.

    Returns:
        (loss, number of correct questions, number of questions), all global: the same on
        every process.
    """
    q, ctx, pos = gather_with_offsets(q_vectors, ctx_vectors, positive_idx, dctx)
    scores = dot_scores(q, ctx)
    return nll_loss(scores, pos), correct_count(scores, pos), q.shape[0]
