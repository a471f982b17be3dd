"""NLL validation: the same masked loss as training."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from dpr.data.batch import build_batch
from dpr.data.iterator import ShardedIterator
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.factory import build_biencoder
from dpr.training.step import inbatch_loss
from dpr.training.validation import DevBatches, validate_average_rank, validate_nll
from dpr.utils.dist import DistContext


@pytest.mark.parametrize("mask", [True, False])
def test_validate_nll_masks_duplicate_positives_like_training(nodrop_camembert, dpr_files,
                                                              mask: bool) -> None:
    # Given 4 dev questions on 2 shared paragraphs, validated in one batch
    samples = load_samples(str(dpr_files[0]))[:4]
    tensorizer = build_tensorizer("hf_roberta", str(nodrop_camembert), sequence_length=40,
                                  do_lower_case=False)
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0)
    # When validating with or without the mask
    loss, accuracy = validate_nll(model, DevBatches(samples, tensorizer, 4, 1, 0),
                                  dctx=DistContext(), autocast=contextlib.nullcontext,
                                  mask_duplicates=mask)
    # Then loss and accuracy are those of the in-batch loss with (or without) the keys
    batch = build_batch(samples, tensorizer, num_hard=1, num_other=0)
    with torch.no_grad():
        q, c = model(batch.question_ids, batch.question_mask, batch.ctx_ids, batch.ctx_mask)
    keys = {"ctx_keys": batch.ctx_keys, "positive_keys": batch.positive_keys} if mask else {}
    expected = inbatch_loss(q, c, batch.positive_idx, DistContext(), **keys)
    assert expected.masked == (4 if mask else 0)
    assert loss == pytest.approx(expected.loss.item(), abs=1e-6)
    assert accuracy == pytest.approx(int(expected.correct) / 4)
    other = inbatch_loss(q, c, batch.positive_idx, DistContext(),
                         **({} if mask else {"ctx_keys": batch.ctx_keys,
                                             "positive_keys": batch.positive_keys}))
    assert abs(other.loss.item() - loss) > 1e-4  # the mask changes the value


QUESTIONS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
# Question i's passages are rows 2i (its positive) and 2i + 1 (a negative).
PASSAGES = torch.tensor([[0.5, 0.3], [0.7, 0.0], [0.1, 0.35], [0.6, 0.4]])


class FixedVectors(torch.nn.Module):
    """A mock bi-encoder: the vector of id row [k] is row k of a fixed table."""

    def __init__(self, passages: torch.Tensor) -> None:
        super().__init__()
        self.passages = passages

    def encode_questions(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return QUESTIONS[ids[:, 0]]

    def encode_contexts(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.passages[ids[:, 0]]


class FixedDev:
    """The two dev questions, `batch_size` a batch, each with its two passages."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def iterator(self, dctx: DistContext) -> ShardedIterator:
        return ShardedIterator(2, rank=0, world_size=1, batch_size=self.batch_size,
                               shuffle=False)

    def batch(self, indices, device) -> SimpleNamespace:
        ctx = torch.tensor([[2 * i + k] for i in indices for k in (0, 1)])
        questions = torch.tensor([[i] for i in indices])
        return SimpleNamespace(question_ids=questions, question_mask=torch.ones_like(questions),
                               ctx_ids=ctx, ctx_mask=torch.ones_like(ctx),
                               positive_idx=torch.arange(0, 2 * len(indices), 2))


def _average_rank(passages: torch.Tensor, *, batch_size: int, max_questions: int = 100) -> float:
    return validate_average_rank(FixedVectors(passages), FixedDev(batch_size), dctx=DistContext(),
                                 encode_batch_size=1, max_questions=max_questions,
                                 autocast=contextlib.nullcontext)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_validate_average_rank_on_a_hand_computed_case(batch_size: int) -> None:
    # Given q0 = (1, 0) scoring its positive 0.5 and the pool's other passages 0.7, 0.1, 0.6,
    # and q1 = (0, 1) scoring its positive 0.35 and the others 0.3, 0.0, 0.4
    # When validating, whatever the batch size (the pool spans all batches)
    average = _average_rank(PASSAGES, batch_size=batch_size)
    # Then q0's positive has rank 2 (0.7 and 0.6 above it), q1's rank 1 (0.4): average 1.5
    assert average == pytest.approx(1.5)


def test_validate_average_rank_counts_ties_for_the_question_and_stops_at_max_questions() -> None:
    # Given q1's negative scoring exactly its positive's 0.4
    tied = PASSAGES.clone()
    tied[2] = torch.tensor([0.1, 0.4])
    # Then q1's rank is 0 (only strictly higher scores count): (2 + 0) / 2
    assert _average_rank(tied, batch_size=1) == pytest.approx(1.0)
    # And with one question allowed, q0 alone ranks its own two passages: 0.7 above 0.5
    assert _average_rank(PASSAGES, batch_size=1, max_questions=1) == pytest.approx(1.0)
