"""`--compile`: the compiled towers give the eager step's loss and gradients, and keep the
eager parameter names (checkpoints, optimizer state)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from dpr.data.batch import build_batch
from dpr.data.records import load_samples
from dpr.data.tensorizer import build_tensorizer
from dpr.models.factory import build_biencoder
from dpr.training.build import compile_towers
from dpr.training.step import plain_step
from dpr.utils.dist import DistContext

NULL = contextlib.nullcontext


def _step(model, batch):
    model.zero_grad()
    result = plain_step(model, batch, dctx=DistContext(), autocast=NULL, scale=lambda t: t,
                        loss_factor=1.0, no_sync=NULL)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return result.loss.item(), grads


def test_compiled_towers_give_the_eager_loss_and_gradients(nodrop_camembert, dpr_files) -> None:
    # Given a tiny bi-encoder (dropout off) and one training batch
    samples = load_samples(str(dpr_files[0]))[:4]
    tz = build_tensorizer("hf_roberta", str(nodrop_camembert), sequence_length=48,
                          do_lower_case=False, pad_to_max=False, pad_to_multiple_of=8)
    batch = build_batch(samples, tz, num_hard=1, num_other=0).to("cpu")
    model = build_biencoder("hf_roberta", str(nodrop_camembert), dropout=0).train()
    names = [n for n, _ in model.named_parameters()]
    eager_loss, eager_grads = _step(model, batch)
    # When its towers are compiled and the same step runs again
    torch._dynamo.reset()
    compile_towers(model)
    compiled_loss, compiled_grads = _step(model, batch)
    # Then loss and gradients agree within 1e-4, under the same parameter names
    assert compiled_loss == pytest.approx(eager_loss, abs=1e-4)
    assert compiled_grads.keys() == eager_grads.keys() and compiled_grads
    for name, grad in eager_grads.items():
        assert torch.allclose(grad, compiled_grads[name], atol=1e-4), name
    assert [n for n, _ in model.named_parameters()] == names
    assert model.question_model.model._compiled_call_impl is not None  # it did compile
