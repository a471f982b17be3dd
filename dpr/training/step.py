"""One forward/backward pass of a training batch: plain, or with gradient caching.

Gradient caching (Gao et al. 2021, "GradCache") gives the loss and gradients of the whole
in-batch pool while only ever holding the activations of `chunk_size` sequences:
1. encode every question and passage in chunks without a graph, remembering the RNG state
   before each chunk (so dropout draws the same masks again in step 3);
2. compute the DPR loss on the cached vectors and back-propagate it to the vectors only;
3. re-encode each chunk with a graph and back-propagate the cached vector gradients into the
   encoders. The result equals plain back-propagation through the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from itertools import zip_longest

import torch

from dpr.data.batch import BiEncoderBatch
from dpr.training.inbatch import inbatch_loss
from dpr.utils.dist import DistContext

ContextFactory = Callable[[], AbstractContextManager]


@dataclass
class StepResult:
    """Global (all processes) results of one batch."""

    loss: torch.Tensor
    correct: int
    questions: int
    masked: int = 0  # (question, passage) pairs left out as copies of a positive


def batch_keys(batch: BiEncoderBatch, mask_duplicates: bool) -> dict[str, torch.Tensor | None]:
    """The `inbatch_loss` keyword arguments that mask copies of positives (or not)."""
    if not mask_duplicates:
        return {"ctx_keys": None, "positive_keys": None}
    return {"ctx_keys": batch.ctx_keys, "positive_keys": batch.positive_keys}


def plain_step(model: torch.nn.Module, batch: BiEncoderBatch, *, dctx: DistContext,
               autocast: ContextFactory, scale: Callable[[torch.Tensor], torch.Tensor],
               loss_factor: float, no_sync: ContextFactory,
               mask_duplicates: bool = True) -> StepResult:
    """Forward the whole batch, compute the loss, back-propagate `loss * loss_factor`.

    Args:
        mask_duplicates: Leave copies of a question's positives out of its negatives.
    """
    with no_sync():
        with autocast():
            q, ctx = model(batch.question_ids, batch.question_mask, batch.ctx_ids,
                           batch.ctx_mask)
        out = inbatch_loss(q, ctx, batch.positive_idx, dctx,
                           **batch_keys(batch, mask_duplicates))
        scale(out.loss * loss_factor).backward()
    return StepResult(out.loss.detach(), int(out.correct), out.questions, out.masked)


class _RngState:
    """The CPU (and current CUDA device's) generator state, to replay dropout exactly."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)


def _chunks(ids: torch.Tensor, mask: torch.Tensor, size: int) -> list[tuple]:
    return [(ids[i : i + size], mask[i : i + size]) for i in range(0, ids.shape[0], size)]


def grad_cache_step(model: torch.nn.Module, batch: BiEncoderBatch, *, dctx: DistContext,
                    autocast: ContextFactory, scale: Callable[[torch.Tensor], torch.Tensor],
                    loss_factor: float, no_sync: ContextFactory, chunk_size: int,
                    sync_last: bool, mask_duplicates: bool = True) -> StepResult:
    """The same result as `plain_step`, holding activations of `chunk_size` rows at a time.

    Args:
        sync_last: Let DDP reduce gradients on the last chunk's backward (the end of an
            optimizer update); every other chunk runs under `no_sync`.
        mask_duplicates: As in `plain_step`.
    """
    pairs = list(zip_longest(_chunks(batch.question_ids, batch.question_mask, chunk_size),
                             _chunks(batch.ctx_ids, batch.ctx_mask, chunk_size),
                             fillvalue=(None, None)))
    states, q_parts, c_parts = [], [], []
    with torch.no_grad():
        for (q_ids, q_mask), (c_ids, c_mask) in pairs:
            states.append(_RngState(batch.question_ids.device))
            with autocast():
                q, c = model(q_ids, q_mask, c_ids, c_mask)
            q_parts += [q] if q is not None else []
            c_parts += [c] if c is not None else []
    q_all = torch.cat(q_parts).requires_grad_()
    train_ctx = any(p.requires_grad for p in _unwrap(model).ctx_model.parameters())
    c_all = torch.cat(c_parts).requires_grad_(train_ctx)
    out = inbatch_loss(q_all, c_all, batch.positive_idx, dctx,
                       **batch_keys(batch, mask_duplicates))
    scale(out.loss * loss_factor).backward()
    # Chunk 0 holds questions and passages, so it is the last one, the one DDP reduces on.
    for i in reversed(range(len(pairs))):
        (q_ids, q_mask), (c_ids, c_mask) = pairs[i]
        if not train_ctx:
            c_ids = c_mask = None
        if q_ids is None and c_ids is None:
            continue
        guard = contextlib.nullcontext() if (i == 0 and sync_last) else no_sync()
        with guard:
            states[i].restore()
            with autocast():
                q, c = model(q_ids, q_mask, c_ids, c_mask)
            start = i * chunk_size
            terms = [(v * cached.grad[start : start + v.shape[0]]).sum()
                     for v, cached in ((q, q_all), (c, c_all)) if v is not None]
            torch.stack(terms).sum().backward()
    return StepResult(out.loss.detach(), int(out.correct), out.questions, out.masked)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
