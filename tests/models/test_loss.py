from __future__ import annotations

import math

import torch

from dpr.models import loss as losses
from dpr.models.loss import correct_count, duplicate_positive_mask, nll_loss, scaled_scores


def test_loss_matches_hand_computation_two_questions_four_passages() -> None:
    # Given 2 questions and 4 passages with known dot products
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ctx = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.0, 0.0]])
    positive = torch.tensor([0, 1])
    # When scoring
    scores = scaled_scores(q, ctx)
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


def _two_by_four() -> tuple[torch.Tensor, torch.Tensor]:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    ctx = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0], [0.0, 0.0]])
    return scaled_scores(q, ctx), torch.tensor([0, 1])


def test_duplicate_positive_mask_marks_copies_of_any_positive_but_not_the_positive() -> None:
    # Given columns with keys [10, 20, 10, 30]; q0's positives are {10, 30} (column 0 sampled),
    # q1's only positive is 20 (column 1), padded with -1
    ctx_keys = torch.tensor([10, 20, 10, 30])
    positive_keys = torch.tensor([[10, 30], [20, -1]])
    # When building the mask
    mask = duplicate_positive_mask(ctx_keys, positive_keys, torch.tensor([0, 1]))
    # Then q0 loses column 2 (a copy of its positive) and 3 (its other positive), not column 0
    assert mask.tolist() == [[False, False, True, True], [False, False, False, False]]


def test_masked_loss_equals_the_loss_without_the_duplicate_column() -> None:
    # Given the 2 x 4 case where column 2 is a copy of q2's positive (column 1)
    scores, positive = _two_by_four()
    mask = torch.tensor([[False, False, False, False], [False, False, True, False]])
    # When computing the masked loss and count
    loss = nll_loss(scores, positive, mask)
    correct = correct_count(scores, positive, mask)
    # Then q2's softmax runs over columns 0, 1, 3 only: log(1 + e + 1) - 1 = 0.551445, and
    # with q1's 0.493812 the mean is 0.522628; q2 is now correct (its best unmasked is 1)
    assert math.isclose(loss.item(), (0.493812 + math.log(2 + math.e) - 1) / 2, abs_tol=1e-6)
    assert math.isclose(loss.item(), 0.522628, abs_tol=1e-6)
    assert correct.item() == 2
    # And it equals the plain loss on the scores with that column removed, row by row
    by_hand = (nll_loss(scores[:1], positive[:1]) + nll_loss(scores[1:, [0, 1, 3]],
                                                              torch.tensor([1]))) / 2
    assert torch.allclose(loss, by_hand)


def test_no_mask_is_dpr_loss_exactly() -> None:
    scores, positive = _two_by_four()
    none = torch.zeros(2, 4, dtype=torch.bool)
    assert torch.equal(nll_loss(scores, positive, None),
                       torch.nn.functional.cross_entropy(scores, positive))
    assert torch.equal(nll_loss(scores, positive, none), nll_loss(scores, positive))
    assert correct_count(scores, positive, None).item() == 1


def test_fully_masked_row_keeps_its_positive_and_gives_finite_loss_and_gradients() -> None:
    # Given a mask that (wrongly) covers every column, the positive included
    scores, positive = _two_by_four()
    scores.requires_grad_()
    mask = torch.ones(2, 4, dtype=torch.bool)
    # When computing the loss and its gradient
    loss = nll_loss(scores, positive, mask)
    loss.backward()
    # Then each row keeps only its positive: loss 0, finite gradients, every question correct
    assert loss.item() == 0.0
    assert torch.isfinite(scores.grad).all()
    assert correct_count(scores, positive, mask).item() == 2


def test_masked_loss_gradient_is_zero_on_masked_columns() -> None:
    scores, positive = _two_by_four()
    scores.requires_grad_()
    mask = torch.tensor([[False, False, True, False], [False, False, False, False]])
    nll_loss(scores, positive, mask).backward()
    assert scores.grad[0, 2].item() == 0.0
    assert torch.isfinite(scores.grad).all() and scores.grad[0, 1].item() > 0


def test_listwise_loss_matches_hand_computation_two_questions_three_candidates() -> None:
    # Given 2 questions x 3 candidate scores, positive first; q2 has 2 candidates only
    scores = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 99.0]])
    valid = torch.tensor([[True, True, True], [True, True, False]])
    # When computing the listwise loss and count
    loss = losses.listwise_loss(scores, valid)
    correct = losses.listwise_correct(scores, valid)
    # Then q1: log(e^2 + 1 + e) - 2 = 0.407606; q2 (its empty slot left out, whatever its
    # score): log(1 + e) - 0 = 1.313262; mean 0.860434
    assert math.isclose(loss.item(), 0.860434, abs_tol=1e-6)
    # And q1's positive scored highest, q2's did not
    assert correct.item() == 1


def test_listwise_loss_of_tied_scores_is_log_group_size_and_counts_no_question_right() -> None:
    # Given a constant scorer (a zero-initialised head): 2 groups of 3 equal scores
    scores = torch.zeros(2, 3, dtype=torch.bfloat16)
    # Then the loss is log 3 (a uniform softmax), in float32, and no question is right
    loss = losses.listwise_loss(scores)
    assert loss.dtype == torch.float32
    assert math.isclose(loss.item(), math.log(3), abs_tol=1e-6)
    assert losses.listwise_correct(scores).item() == 0


def _kl(teacher: list[float], student: list[float]) -> float:
    """KL(softmax(teacher) ‖ softmax(student)) by hand."""
    zt, zs = sum(math.exp(t) for t in teacher), sum(math.exp(s) for s in student)
    return sum(math.exp(t) / zt * ((t - math.log(zt)) - (s - math.log(zs)))
               for t, s in zip(teacher, student))


def test_distill_loss_matches_hand_computation_over_each_questions_own_block() -> None:
    # Given 2 questions whose blocks are columns 0-2 and 3-4 of a 5-passage batch, and scores
    # for the other question's block that must not count (99)
    scores = torch.tensor([[1.0, 0.0, 0.5, 99.0, 99.0], [99.0, 99.0, 99.0, 2.0, -1.0]],
                          dtype=torch.bfloat16)
    teacher = torch.tensor([3.0, -1.0, 2.0, 0.0, 1.0])
    # When computing the distillation term
    loss = losses.distill_loss(scores, torch.tensor([0, 3]), teacher)
    # Then it is the mean of each question's KL over its own block, in float32
    expected = (_kl([3.0, -1.0, 2.0], [1.0, 0.0, 0.5]) + _kl([0.0, 1.0], [2.0, -1.0])) / 2
    assert loss.dtype == torch.float32
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


def test_distill_loss_is_zero_when_the_student_ranks_as_the_teacher_and_its_gradient_finite(
        ) -> None:
    # Given a student whose scores are the teacher's plus a constant per question (the same
    # softmax), blocks of 3 and 1 passages
    teacher = torch.tensor([1.0, -2.0, 0.5, 4.0])
    scores = torch.stack([teacher + 7.0, teacher - 3.0]).requires_grad_()
    loss = losses.distill_loss(scores, torch.tensor([0, 3]), teacher)
    # Then the divergence is 0 and its gradient finite (the one-passage block included)
    assert abs(loss.item()) < 1e-6
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    # And a question's scores outside its own block get no gradient
    assert scores.grad[0, 3] == 0 and (scores.grad[1, :3] == 0).all()


def test_own_groups_lists_each_questions_block_padded_with_invalid_slots() -> None:
    columns, valid = losses.own_groups(torch.tensor([0, 4, 5]), 8)
    assert columns.tolist() == [[0, 1, 2, 3], [4, 0, 0, 0], [5, 6, 7, 0]]
    assert valid.tolist() == [[True] * 4, [True, False, False, False],
                              [True, True, True, False]]
