"""Duplicate-positive masking of the in-batch loss, in one process and across two (gloo)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.multiprocessing as mp
from helpers import free_port, inbatch_case, inbatch_worker

from dpr.training.inbatch import inbatch_loss
from dpr.utils.dist import DistContext

MASKED = {0: [2, 5], 1: [0, 1, 5], 2: [3, 7], 3: []}


def _by_hand(q: torch.Tensor, ctx: torch.Tensor, positive_idx: list[int],
             masked: dict[int, list[int]]) -> tuple[torch.Tensor, int]:
    """Mean -log softmax of each positive over the columns left after removing the masked
    ones, and the number of questions whose best remaining column is their positive."""
    losses, correct = [], 0
    for i, pos in enumerate(positive_idx):
        kept = [j for j in range(ctx.shape[0]) if j not in masked[i]]
        row = torch.stack([q[i] @ ctx[j] for j in kept])
        losses.append(torch.logsumexp(row, 0) - q[i] @ ctx[pos])
        correct += int(kept[int(row.argmax())] == pos)
    return torch.stack(losses).mean(), correct


def test_inbatch_loss_masks_copies_of_positives_as_computed_by_hand() -> None:
    # Given the 4 x 8 pool with known duplicates
    case = inbatch_case()
    # When computing the loss with the passage keys
    result = inbatch_loss(case["q"], case["ctx"], case["positive_idx"], DistContext(),
                          ctx_keys=case["ctx_keys"], positive_keys=case["positive_keys"])
    # Then it is the loss with the duplicate columns removed, and 7 columns were masked
    expected, correct = _by_hand(case["q"], case["ctx"], [0, 2, 4, 6], MASKED)
    assert torch.allclose(result.loss, expected, atol=1e-6)
    assert (int(result.correct), result.questions, result.masked) == (correct, 4, 7)
    # And the masking matters: DPR's loss (no keys) is the hand loss with nothing removed
    plain = inbatch_loss(case["q"], case["ctx"], case["positive_idx"], DistContext())
    no_mask, _ = _by_hand(case["q"], case["ctx"], [0, 2, 4, 6], {i: [] for i in range(4)})
    assert torch.allclose(plain.loss, no_mask, atol=1e-6) and plain.masked == 0
    assert abs(plain.loss.item() - result.loss.item()) > 1e-3


def test_inbatch_loss_masks_copies_across_two_gloo_processes(tmp_path: Path) -> None:
    # Given the same pool split over 2 processes (copies of positives on the other process)
    out = str(tmp_path / "result")
    # When each process computes the loss on its half and back-propagates
    mp.spawn(inbatch_worker, args=(free_port(), out), nprocs=2, join=True)
    results = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    # Then both report the global masked loss of the hand computation, and the counts
    case = inbatch_case()
    q = case["q"].clone().requires_grad_()
    ctx = case["ctx"].clone().requires_grad_()
    expected, correct = _by_hand(q, ctx, [0, 2, 4, 6], MASKED)
    expected.backward()
    for rank, result in enumerate(results):
        assert torch.allclose(result["loss"], expected.detach(), atol=1e-6)
        assert (result["correct"], result["questions"], result["masked"]) == (correct, 4, 7)
        # And each process's gradients are those of its own vectors in the global loss
        assert torch.allclose(result["q_grad"], q.grad[2 * rank : 2 * rank + 2], atol=1e-6)
        assert torch.allclose(result["ctx_grad"], ctx.grad[4 * rank : 4 * rank + 4],
                              atol=1e-6)
