"""Validation: NLL over in-batch negatives, DPR's average rank, and a reranker's MRR@10 on
each dev question's own candidates."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from dpr.data.batch import BiEncoderBatch, build_batch, rerank_group
from dpr.data.iterator import ShardedIterator
from dpr.data.recipe import encode_in_batches, pair_items
from dpr.data.records import BiEncoderSample
from dpr.data.tensorizer import Tensorizer
from dpr.models.biencoder import BiEncoder
from dpr.models.encoder import Encoder
from dpr.training.progress import on_terminal, tracked
from dpr.training.step import batch_keys, inbatch_loss
from dpr.utils.dist import DistContext, all_reduce_sum

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DevBatches:
    """The dev samples and how they become batches (per process, in file order)."""

    samples: Sequence[BiEncoderSample]
    tensorizer: Tensorizer
    batch_size: int  # questions per batch and process
    num_hard: int  # hard negatives per question
    num_other: int  # other negatives per question

    def iterator(self, dctx: DistContext) -> ShardedIterator:
        """This process's share of the samples, unshuffled."""
        return ShardedIterator(len(self.samples), rank=dctx.rank, world_size=dctx.world_size,
                               batch_size=self.batch_size, shuffle=False)

    def batch(self, indices: Sequence[int], device: torch.device) -> BiEncoderBatch:
        """The batch of the samples at `indices`, on `device`."""
        return build_batch([self.samples[i] for i in indices], self.tensorizer,
                           num_hard=self.num_hard, num_other=self.num_other).to(device)


def validate_nll(model: BiEncoder, dev: DevBatches, *, dctx: DistContext,
                 autocast: Callable[[], AbstractContextManager], log_every: int = 100,
                 mask_duplicates: bool = True, temperature: float = 1.0) -> tuple[float, float]:
    """(Mean in-batch NLL loss over batches, fraction of questions whose positive scored
    highest) on the dev set, with the in-batch negatives of all processes and the training
    loss's `temperature` and duplicate masking; the same on every process."""
    model.eval()
    iterator = dev.iterator(dctx)
    total_loss, correct, questions, batches, masked = 0.0, 0, 0, 0, 0
    steps = tracked(iterator.batches(0), total=iterator.batches_per_epoch,
                    desc="NLL validation", enabled=dctx.is_main)
    with torch.no_grad():
        for iteration, indices in steps:
            batch = dev.batch(indices, dctx.device)
            with autocast():
                q, ctx = model(batch.question_ids, batch.question_mask, batch.ctx_ids,
                               batch.ctx_mask)
            out = inbatch_loss(q, ctx, batch.positive_idx, dctx, temperature=temperature,
                               **batch_keys(batch, mask_duplicates))
            total_loss += out.loss.item()
            correct += int(out.correct)
            questions += out.questions
            masked += out.masked
            batches += 1
            if iteration % log_every == 0:
                logger.info("NLL validation: step %d/%d, loss %.4f", iteration,
                            iterator.batches_per_epoch, out.loss.item())
    mean_loss = total_loss / max(batches, 1)
    accuracy = correct / max(questions, 1)
    logger.info("NLL validation: loss %.5f, accuracy %.4f (%d/%d), %d duplicate-positive "
                "column(s) masked", mean_loss, accuracy, correct, questions, masked)
    return mean_loss, accuracy


def _encode_in_chunks(encode: Callable, ids: torch.Tensor, mask: torch.Tensor,
                      chunk: int) -> torch.Tensor:
    parts = [encode(ids[i : i + chunk], mask[i : i + chunk]) for i in range(0, len(ids), chunk)]
    return torch.cat(parts).float().cpu()


def validate_average_rank(model: BiEncoder, dev: DevBatches, *, dctx: DistContext,
                          encode_batch_size: int, max_questions: int,
                          autocast: Callable[[], AbstractContextManager]) -> float:
    """DPR's average-rank validation: the average rank (0 = perfect), the same on every
    process.

    Each process encodes its share of dev questions (up to `max_questions / world_size`) with
    their positive and negative passages, ranks its whole passage pool for each of its
    questions, and the 0-based rank of the gold passage is averaged over all processes.
    Ties count in the question's favour (rank = passages scoring strictly higher).
    """
    model.eval()
    iterator = dev.iterator(dctx)
    budget = max_questions / dctx.world_size
    q_parts, ctx_parts, positives, n_ctx = [], [], [], 0
    steps = tracked(iterator.batches(0), desc="Average-rank validation", enabled=dctx.is_main,
                    total=min(iterator.batches_per_epoch, math.ceil(budget / dev.batch_size)))
    with torch.no_grad(), autocast():
        for _, indices in steps:
            if sum(len(p) for p in q_parts) >= budget:
                break
            batch = dev.batch(indices, dctx.device)
            q_parts.append(_encode_in_chunks(model.encode_questions, batch.question_ids,
                                             batch.question_mask, encode_batch_size))
            ctx_parts.append(_encode_in_chunks(model.encode_contexts, batch.ctx_ids,
                                               batch.ctx_mask, encode_batch_size))
            positives.append(batch.positive_idx.cpu() + n_ctx)
            n_ctx += batch.ctx_ids.shape[0]
    q = torch.cat(q_parts)  # [Q × D]
    ctx = torch.cat(ctx_parts)  # [C × D]
    pos = torch.cat(positives)  # [Q]
    scores = q @ ctx.T
    gold = scores.gather(1, pos[:, None])
    ranks = (scores > gold).sum(dim=1)
    totals = all_reduce_sum(torch.tensor([float(ranks.sum()), float(len(ranks))],
                                         device=dctx.device, dtype=torch.float64), dctx)
    average = float(totals[0] / totals[1])
    logger.info("Average-rank validation: %.3f over %d questions", average, int(totals[1]))
    return average


MRR_DEPTH = 10
MRR_METRIC = f"mrr@{MRR_DEPTH}"  # higher is better (`dpr.training.run_dir.new_best`)


def validate_mrr(reranker: Encoder, samples: Sequence[BiEncoderSample],
                 tensorizer: Tensorizer, *, dctx: DistContext, candidates: int,
                 batch_size: int, amp_dtype: torch.dtype | None) -> float:
    """A reranker's MRR@10 over the dev questions (each process scores every world_size-th
    one; the same value on every process): each question's positive and up to `candidates`
    - 1 negatives (`rerank_group` in file order) scored, `batch_size` pairs at a time and
    length-sorted (`encode_in_batches`), the positive's rank being the number of candidates
    scoring at least as high (a tie counts against it: a constant scorer gets 1 / group
    size, not 1)."""
    reranker.eval()
    mine = samples[dctx.rank::dctx.world_size]
    groups = [rerank_group(s, negatives=candidates - 1) for s in mine]
    pairs = [(s.question, (p.title, p.text)) for s, group in zip(mine, groups) for p in group]
    scores = encode_in_batches(reranker, tensorizer, pair_items(pairs, tensorizer.recipe),
                               dim=1, batch_size=batch_size, device=dctx.device,
                               amp_dtype=amp_dtype, desc="MRR@10 validation",
                               quiet=not (dctx.is_main and on_terminal()))[:, 0]
    ranks = [int((group >= group[0]).sum()) for group in
             np.split(scores, np.cumsum([len(g) for g in groups])[:-1])] if groups else []
    reciprocal = sum(1.0 / rank for rank in ranks if rank <= MRR_DEPTH)
    totals = all_reduce_sum(torch.tensor([reciprocal, float(len(ranks))], device=dctx.device,
                                         dtype=torch.float64), dctx)
    mrr = float(totals[0] / totals[1].clamp(min=1))
    logger.info("MRR@%d validation: %.4f over %d questions", MRR_DEPTH, mrr, int(totals[1]))
    return mrr
