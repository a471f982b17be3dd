"""One training step: forward/backward, its in-batch loss, and the loss that must stay finite.

`plain_step` (or `grad_cache_step`) encodes the batch, `inbatch_loss` gathers the in-batch
pool of all processes and scores it with `dpr.models.loss` (plus, with `--distill_scores`, the
KL term to a reranker over each question's own passages), and the loss is back-propagated.

The in-batch pool (`gather_pool`; DPR's semantics, on tensors instead of pickles): questions,
passages and positive indices of every process stacked in global-rank order, each positive
shifted by the passages of the processes before it. This process's own slot holds its
gradient-carrying tensors, the other slots detached copies, so each process back-propagates
through its own vectors only and DDP averages the gradients, as DPR does. The
duplicate-positive mask is built once, on the gathered passage keys: the same on every process.

Gradient caching (Gao et al. 2021, "GradCache"), the loss and gradients of the whole pool
holding the activations of `chunk_size` sequences only: encode every chunk without a graph
(remembering the RNG state, so that dropout draws the same masks again), back-propagate the
loss to the cached vectors, then re-encode each chunk with a graph and back-propagate the
cached vector gradients into the encoders.

A reranker's step (`rerank_step`) scores each question's group of pairs and back-propagates
the listwise loss; no pool is shared between processes (DDP averages the gradients).

`LossGuard` stops a run whose loss is no longer finite (docs/RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from itertools import zip_longest
from typing import NamedTuple

import torch
import torch.nn.functional as F

from dpr.data.batch import BiEncoderBatch, RerankBatch
from dpr.models.loss import (
    correct_count,
    distill_loss,
    duplicate_positive_mask,
    listwise_correct,
    listwise_loss,
    nll_loss,
    scaled_scores,
)
from dpr.utils.dist import DistContext, all_gather_variable, all_reduce_sum
from dpr.utils.errors import RunFailure

logger = logging.getLogger(__name__)

SCALER_TOLERANCE = 5  # non-finite float16 steps in a row that stop a run
ContextFactory = Callable[[], AbstractContextManager]


class InBatchLoss(NamedTuple):
    """The loss of one batch over the global pool, and its counts (the same on every process):
    `correct` (questions whose positive scored highest) and `masked` ((question, passage) pairs
    left out as copies of a positive), ints or, with `sync=False`, 0-dim device tensors."""

    loss: torch.Tensor  # scalar, carrying gradients to this process's vectors
    correct: int | torch.Tensor
    questions: int
    masked: int | torch.Tensor


def gather_pool(q_vectors: torch.Tensor, ctx_vectors: torch.Tensor, positive_idx: torch.Tensor,
                dctx: DistContext, *, ctx_keys: torch.Tensor | None = None,
                positive_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """The global in-batch pool (module docstring): questions [ΣB × D], passages [ΣC × D],
    positive rows [ΣB] and the duplicate-positive mask [ΣB × ΣC] (None without both keys).

    Args:
        q_vectors: [B × D] local question vectors.
        ctx_vectors: [C × D] local passage vectors.
        positive_idx: [B] local positive rows.
        ctx_keys: [C] passage keys.
        positive_keys: [B × P] keys of each question's positives, -1 padded.
    """
    keyed = ctx_keys is not None and positive_keys is not None
    if dctx.distributed:
        if not keyed:
            ctx_keys, positive_keys = positive_idx[:0], positive_idx[:, None][:, :0]
        # Two gathers: the integers (sizes, positives, keys), then the vectors.
        (n_q, width), n_c = positive_keys.shape, ctx_keys.shape[0]
        head = positive_idx.new_tensor([n_q, ctx_vectors.shape[0], n_c, width])
        ints = all_gather_variable(
            torch.cat([head, positive_idx, ctx_keys, positive_keys.flatten()]), dctx)
        shapes = torch.stack([part[:4] for part in ints]).tolist()  # (B, C, keys, P) each
        rows = all_gather_variable(torch.cat([q_vectors, ctx_vectors]), dctx,
                                   sizes=[b + c for b, c, _, _ in shapes])
        widest = max(p for *_, p in shapes)
        questions, passages, positives, keys, padded_keys = [], [], [], [], []
        offset = 0
        for rank, ((b, c, k, p), part, vectors) in enumerate(zip(shapes, ints, rows)):
            own = rank == dctx.rank
            questions.append(q_vectors if own else vectors[:b])
            passages.append(ctx_vectors if own else vectors[b:])
            pos, ctx_k, pos_k = part[4:].split([b, k, b * p])
            positives.append(pos + offset)
            keys.append(ctx_k)
            padded_keys.append(F.pad(pos_k.view(b, p), (0, widest - p), value=-1))
            offset += c
        q_vectors, ctx_vectors, positive_idx = (torch.cat(questions), torch.cat(passages),
                                                torch.cat(positives))
        ctx_keys, positive_keys = torch.cat(keys), torch.cat(padded_keys)
    mask = duplicate_positive_mask(ctx_keys, positive_keys, positive_idx) if keyed else None
    return q_vectors, ctx_vectors, positive_idx, mask


def inbatch_loss(q_vectors: torch.Tensor, ctx_vectors: torch.Tensor, positive_idx: torch.Tensor,
                 dctx: DistContext, *, ctx_keys: torch.Tensor | None = None,
                 positive_keys: torch.Tensor | None = None, sync: bool = True,
                 temperature: float = 1.0, teacher: torch.Tensor | None = None,
                 distill_weight: float = 0.0) -> InBatchLoss:
    """The DPR loss over the global in-batch pool, the same on every process, plus
    `distill_weight` times the distillation term of this process's questions when a `teacher`
    is given.

    Args:
        ctx_keys, positive_keys: As in `gather_pool`: with both, copies of a question's
            positives are masked out of its negatives; None = DPR's loss, nothing masked.
        sync: Return the counts as ints (a device-to-host copy each); False = as tensors.
        temperature: Scores are divided by it (`dpr.models.loss.scaled_scores`).
        teacher: [C] a reranker's score of each local passage for its own question
            (`dpr.models.loss.distill_loss`, over each question's own passages only, which
            are all local: no gather needed). The term is divided by the number of
            processes: DDP averages the gradients, and each process back-propagates the whole
            pooled loss through its own vectors only, so the pooled loss reaches the weights
            divided by it too; the weight means the same on one GPU or eight.
    """
    extra = None
    if teacher is not None and distill_weight:
        local = scaled_scores(q_vectors, ctx_vectors, temperature)
        extra = distill_weight / dctx.world_size * distill_loss(local, positive_idx, teacher)
    q, ctx, pos, mask = gather_pool(q_vectors, ctx_vectors, positive_idx, dctx,
                                    ctx_keys=ctx_keys, positive_keys=positive_keys)
    scores = scaled_scores(q, ctx, temperature)
    correct = correct_count(scores, pos, mask)
    masked = mask.sum() if mask is not None else scores.new_zeros((), dtype=torch.long)
    if sync:
        correct, masked = int(correct), int(masked)
    loss = nll_loss(scores, pos, mask)
    return InBatchLoss(loss if extra is None else loss + extra, correct, q.shape[0], masked)


def batch_keys(batch: BiEncoderBatch, mask_duplicates: bool) -> dict[str, torch.Tensor | None]:
    """The `inbatch_loss` keyword arguments that mask copies of positives (or not)."""
    if not mask_duplicates:
        return {"ctx_keys": None, "positive_keys": None}
    return {"ctx_keys": batch.ctx_keys, "positive_keys": batch.positive_keys}


def plain_step(model: torch.nn.Module, batch: BiEncoderBatch, *, dctx: DistContext,
               autocast: ContextFactory, scale: Callable[[torch.Tensor], torch.Tensor],
               loss_factor: float, no_sync: ContextFactory,
               mask_duplicates: bool = True, sync: bool = True,
               temperature: float = 1.0, distill_weight: float = 0.0) -> InBatchLoss:
    """Forward the whole batch, compute the loss, back-propagate `loss * loss_factor`.

    Args:
        mask_duplicates: Leave copies of a question's positives out of its negatives.
        sync, temperature: As in `inbatch_loss`.
        distill_weight: The weight of the distillation term, with the batch's
            `teacher_scores` (`inbatch_loss`).
    """
    with no_sync():
        with autocast():
            q, ctx = model(batch.question_ids, batch.question_mask, batch.ctx_ids,
                           batch.ctx_mask, host_lengths(batch.question_lengths),
                           host_lengths(batch.ctx_lengths))
        out = inbatch_loss(q, ctx, batch.positive_idx, dctx, sync=sync,
                           temperature=temperature, teacher=batch.teacher_scores,
                           distill_weight=distill_weight, **batch_keys(batch, mask_duplicates))
        scale(out.loss * loss_factor).backward()
    return out._replace(loss=out.loss.detach())


class _RngState:
    """The CPU (and current CUDA device's) generator state, to replay dropout exactly."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_state = torch.get_rng_state()
        self.cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu_state)
        if self.cuda_state is not None:
            torch.cuda.set_rng_state(self.cuda_state, self.device)


def host_lengths(lengths: torch.Tensor | None) -> list[int] | None:
    """A batch's CPU row lengths as a list for the model: DDP moves tensor arguments to the
    device, and the bucket plan would then have to copy them back (a synchronisation)."""
    return None if lengths is None else lengths.tolist()


def _chunks(ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor | None,
            size: int) -> list[tuple]:
    """(ids, mask, row lengths or None) of consecutive chunks of `size` rows."""
    listed = host_lengths(lengths)
    return [(ids[i : i + size], mask[i : i + size],
             None if listed is None else listed[i : i + size])
            for i in range(0, ids.shape[0], size)]


def grad_cache_step(model: torch.nn.Module, batch: BiEncoderBatch, *, dctx: DistContext,
                    autocast: ContextFactory, scale: Callable[[torch.Tensor], torch.Tensor],
                    loss_factor: float, no_sync: ContextFactory, chunk_size: int,
                    sync_last: bool, mask_duplicates: bool = True,
                    sync: bool = True, temperature: float = 1.0,
                    distill_weight: float = 0.0) -> InBatchLoss:
    """The same result as `plain_step`, holding activations of `chunk_size` rows at a time.

    Args:
        sync_last: Let DDP reduce gradients on the last chunk's backward (the end of an
            optimizer update); every other chunk runs under `no_sync`.
        mask_duplicates, sync, temperature, distill_weight: As in `plain_step`.
    """
    pairs = list(zip_longest(
        _chunks(batch.question_ids, batch.question_mask, batch.question_lengths, chunk_size),
        _chunks(batch.ctx_ids, batch.ctx_mask, batch.ctx_lengths, chunk_size),
        fillvalue=(None, None, None)))
    states, q_parts, c_parts = [], [], []
    with torch.no_grad():
        for q_chunk, c_chunk in pairs:
            states.append(_RngState(batch.question_ids.device))
            with autocast():
                q, c = model(*q_chunk[:2], *c_chunk[:2], q_chunk[2], c_chunk[2])
            q_parts += [q] if q is not None else []
            c_parts += [c] if c is not None else []
    q_all = torch.cat(q_parts).requires_grad_()
    train_ctx = any(p.requires_grad for p in getattr(model, "module", model).ctx_model.parameters())
    c_all = torch.cat(c_parts).requires_grad_(train_ctx)
    out = inbatch_loss(q_all, c_all, batch.positive_idx, dctx, sync=sync,
                       temperature=temperature, teacher=batch.teacher_scores,
                       distill_weight=distill_weight, **batch_keys(batch, mask_duplicates))
    scale(out.loss * loss_factor).backward()
    # Chunk 0 holds questions and passages, so it is the last one, the one DDP reduces on.
    for i in reversed(range(len(pairs))):
        (q_ids, q_mask, q_len), (c_ids, c_mask, c_len) = pairs[i]
        if not train_ctx:
            c_ids = c_mask = c_len = None
        if q_ids is None and c_ids is None:
            continue
        guard = contextlib.nullcontext() if (i == 0 and sync_last) else no_sync()
        with guard:
            states[i].restore()
            with autocast():
                q, c = model(q_ids, q_mask, c_ids, c_mask, q_len, c_len)
            start = i * chunk_size
            terms = [(v * cached.grad[start : start + v.shape[0]]).sum()
                     for v, cached in ((q, q_all), (c, c_all)) if v is not None]
            torch.stack(terms).sum().backward()
    return out._replace(loss=out.loss.detach())


def rerank_step(model: torch.nn.Module, batch: RerankBatch, *, dctx: DistContext,
                autocast: ContextFactory, scale: Callable[[torch.Tensor], torch.Tensor],
                loss_factor: float, no_sync: ContextFactory, sync: bool = True) -> InBatchLoss:
    """Forward a reranker's batch, back-propagate its listwise loss times `loss_factor`;
    returns the loss and count over the questions of all processes (one all-reduce), nothing
    masked. `sync`: as in `inbatch_loss`."""
    with no_sync():
        with autocast():
            scores = model(batch.ids, batch.mask, host_lengths(batch.lengths))  # [P × 1]
        # The pairs in the valid slots of each question's row, in order; -inf elsewhere.
        grid = scores.new_full(batch.valid.shape, float("-inf"), dtype=torch.float32)
        grid = grid.masked_scatter(batch.valid, scores.float().view(-1))  # [Q × G]
        loss = listwise_loss(grid, batch.valid)
        scale(loss * loss_factor).backward()
    questions = batch.valid.shape[0]
    totals = all_reduce_sum(torch.stack([loss.detach() * questions,
                                         listwise_correct(grid.detach(), batch.valid).float()]),
                            dctx)
    correct = totals[1].long()
    return InBatchLoss(totals[0] / (questions * dctx.world_size),
                       int(correct) if sync else correct, questions * dctx.world_size,
                       0 if sync else torch.zeros_like(correct))


def update_number(epoch: int, iteration: int, *, batches: int, accumulation: int) -> int:
    """The 1-based optimizer update that batch `iteration` (1-based) of `epoch` belongs to,
    with `batches` per epoch (per process) and `accumulation` batches per update."""
    return epoch * math.ceil(batches / accumulation) + math.ceil(iteration / accumulation)


class NonFiniteLossError(RunFailure):
    """The training loss is no longer finite; the message names where it happened."""


class LossGuard:
    """Watches the training losses of a run, step by step in order (`update_number`'s
    `batches` and `accumulation` name the update); when `scaled` (a float16 loss scaler skips
    the updates of non-finite steps), up to `SCALER_TOLERANCE - 1` of them in a row are
    tolerated, with a warning."""

    def __init__(self, *, batches: int, accumulation: int, scaled: bool) -> None:
        self.batches, self.accumulation = batches, accumulation
        self.limit = SCALER_TOLERANCE if scaled else 1
        self.in_a_row = 0
        self.first: tuple[int, int, float] | None = None  # of the current run of bad steps

    def _where(self, epoch: int, iteration: int) -> str:
        update = update_number(epoch, iteration, batches=self.batches,
                               accumulation=self.accumulation)
        return f"epoch {epoch}, step {iteration}/{self.batches} (update {update})"

    def observe(self, epoch: int, iteration: int, loss: float) -> None:
        """Records one step's loss; resets the count on a finite one."""
        if math.isfinite(loss):
            self.in_a_row, self.first = 0, None
            return
        self.in_a_row += 1
        if self.first is None:
            self.first = (epoch, iteration, loss)
        if self.in_a_row < self.limit:
            logger.warning("Training loss is %s at %s: the float16 loss scaler skips this "
                           "update (%d of %d non-finite steps in a row allowed)", loss,
                           self._where(epoch, iteration), self.in_a_row, self.limit - 1)

    def check(self) -> None:
        """Raises `NonFiniteLossError`, naming the first step of the run of non-finite losses,
        once that run is too long."""
        if self.in_a_row < self.limit or self.first is None:
            return
        epoch, iteration, loss = self.first
        if self.limit == 1:
            raise NonFiniteLossError(
                f"training loss is {loss} at {self._where(epoch, iteration)}: the run "
                "diverged (try a lower --learning_rate or more --warmup_steps); no checkpoint "
                "was written after it")
        raise NonFiniteLossError(
            f"training loss not finite for {self.in_a_row} steps in a row from "
            f"{self._where(epoch, iteration)} despite float16 loss scaling: the run diverged "
            "(try a lower --learning_rate, more --warmup_steps or --amp_dtype bfloat16); no "
            "checkpoint was written after it")
