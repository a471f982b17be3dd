from __future__ import annotations

import math

import torch

from dpr.models.loss import correct_count, dot_scores, nll_loss


def test_loss_matches_hand_computation_two_questions_four_passages() -> None:
    # Given 2 questions and 4 passages with known dot products
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ctx = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.0, 0.0]])
    positive = torch.tensor([0, 1])
    # When scoring
    scores = dot_scores(q, ctx)
    # Then scores are the dot products: q1 -> [2, 0, 1, 0], q2 -> [0, 1, 3, 0]
    assert scores.tolist() == [[2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 3.0, 0.0]]
    # -log softmax of the positive: q1: log(e^2 + 1 + e + 1) - 2 = 0.493812,
    # q2: log(1 + e + e^3 + 1) - 1 = 2.210998; mean 1.352405
    assert math.isclose(nll_loss(scores, positive).item(), 1.352405, abs_tol=1e-6)
    # q1's best passage is its positive (0); q2's best is 2, not its positive 1
    assert correct_count(scores, positive).item() == 1


def test_nll_loss_is_computed_in_float32_for_half_scores() -> None:
    scores = torch.tensor([[4.0, 1.0], [0.5, 2.0]], dtype=torch.bfloat16)
    loss = nll_loss(scores, torch.tensor([0, 1]))
    assert loss.dtype == torch.float32
    expected = nll_loss(scores.float(), torch.tensor([0, 1]))
    assert torch.allclose(loss, expected)
