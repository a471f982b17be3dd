"""NLL validation: the same masked loss as training."""

from __future__ import annotations

import contextlib

import pytest
import torch

from dpr.data.batch import build_batch
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.factory import build_biencoder
from dpr.training.step import inbatch_loss
from dpr.training.validation import DevBatches, validate_nll
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
