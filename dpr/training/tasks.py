"""What differs between the two models a run trains, behind one small interface that the loop
(`dpr.training.trainer`) calls: a bi-encoder's (`BiEncoderTask`) or a reranker's
(`RerankTask`) samples, batch, step and validation. Everything else (data order, resume,
optimizer, schedule, precision, progress, curves, checkpoints, signals) is the loop's, the
same for both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from dpr.data.batch import (
    BiEncoderBatch,
    RerankBatch,
    build_batch,
    build_rerank_batch,
    rerank_group,
)
from dpr.data.records import BiEncoderSample, DataFormatError
from dpr.data.teacher import TeacherScores, teacher_column
from dpr.recipe import Recipe
from dpr.training.build import TrainingParts
from dpr.training.config import Config
from dpr.training.step import InBatchLoss, grad_cache_step, plain_step, rerank_step
from dpr.training.validation import (
    MRR_METRIC,
    DevBatches,
    validate_average_rank,
    validate_mrr,
    validate_nll,
)
from dpr.utils.dist import DistContext

logger = logging.getLogger(__name__)

# The recipe entries a reranker takes from a sentence-transformers folder (no prefix, never
# normalised: the pair is read at once and the head scores it).
RERANK_FOLDER_KEYS = ("pooling",)


class Task:
    """The run's configuration and what `dpr.training.build.build_parts` built."""

    reranker = False  # the kind of checkpoint it writes

    def __init__(self, cfg: Config, dctx: DistContext, parts: TrainingParts,
                 recipe: Recipe, teacher: TeacherScores | None = None) -> None:
        self.cfg, self.dctx, self.parts, self.recipe = cfg, dctx, parts, recipe
        self.teacher = teacher  # --distill_scores (a bi-encoder's only)

    @staticmethod
    def usable(samples: list[BiEncoderSample], flag: str) -> list[BiEncoderSample]:
        """The samples it trains or validates on (read from `flag`): all of them."""
        return samples


class BiEncoderTask(Task):
    """DPR's bi-encoder: in-batch negatives over all processes, NLL then average-rank
    validation (lower is better)."""

    def describe(self) -> str:
        text = f"Encoder recipe: {self.recipe.describe()}"
        if self.teacher is not None:
            text += (f"; distilling the reranker scores of {self.cfg.data.distill_scores} "
                     f"(weight {self.cfg.train.distill_weight})")
        return text

    def batch(self, samples: Sequence[BiEncoderSample], rngs: Sequence) -> BiEncoderBatch:
        d = self.cfg.data
        batch = build_batch(samples, self.parts.tensorizer, num_hard=d.hard_negatives,
                            num_other=d.other_negatives, rngs=rngs,
                            shuffle_positive=d.shuffle_positive_ctx)
        if self.teacher is not None:
            batch.teacher_scores = teacher_column(self.teacher, [s.question for s in samples],
                                                  batch.ctx_keys, batch.positive_idx)
        return batch

    def step(self, batch: BiEncoderBatch, loss_factor: float, update: bool) -> InBatchLoss:
        """Forward + backward of one batch; DDP reduces gradients only when `update`."""
        t, model = self.cfg.train, self.parts.model
        no_sync = model.no_sync if self.dctx.distributed else contextlib.nullcontext
        common = {"dctx": self.dctx, "autocast": self.parts.autocast,
                  "scale": self.parts.scaler.scale, "loss_factor": loss_factor,
                  "mask_duplicates": not t.keep_duplicate_positives, "sync": False,
                  "temperature": self.recipe.score_temperature,
                  "distill_weight": t.distill_weight if self.teacher is not None else 0.0}
        if t.grad_cache_chunk_size:
            return grad_cache_step(model, batch, no_sync=no_sync,
                                   chunk_size=t.grad_cache_chunk_size, sync_last=update,
                                   **common)
        return plain_step(model, batch,
                          no_sync=contextlib.nullcontext if update else no_sync, **common)

    def _nll(self, dev: Sequence[BiEncoderSample], **extra: Any) -> tuple[float, float]:
        cfg = self.cfg
        batches = DevBatches(dev, self.parts.tensorizer, cfg.data.dev_batch_size,
                             cfg.data.hard_negatives, cfg.data.other_negatives)
        return validate_nll(self.parts.bare, batches, dctx=self.dctx,
                            autocast=self.parts.autocast,
                            mask_duplicates=not cfg.train.keep_duplicate_positives,
                            temperature=self.recipe.score_temperature, **extra)

    def _average_rank(self, dev: Sequence[BiEncoderSample]) -> float:
        t = self.cfg.train
        batches = DevBatches(dev, self.parts.tensorizer, self.cfg.data.dev_batch_size,
                             t.val_av_rank_hard_neg, t.val_av_rank_other_neg)
        return validate_average_rank(self.parts.bare, batches, dctx=self.dctx,
                                     encode_batch_size=t.val_av_rank_bsz,
                                     max_questions=t.val_av_rank_max_qs,
                                     autocast=self.parts.autocast)

    def validate(self, dev: Sequence[BiEncoderSample], epoch: int) -> tuple[str, float]:
        """The validation DPR would run at `epoch`: (metric name, value; lower is better)."""
        if epoch >= self.cfg.train.val_av_rank_start_epoch:
            return "average_rank", self._average_rank(dev)
        loss, _ = self._nll(dev, log_every=self.cfg.train.log_batch_step)
        return "nll_loss", loss

    def validate_only(self, dev: Sequence[BiEncoderSample]) -> dict[str, float]:
        """DPR's no-train mode: NLL then average-rank validation."""
        loss, accuracy = self._nll(dev)
        return {"nll_loss": loss, "accuracy": accuracy, "average_rank": self._average_rank(dev)}


class RerankTask(Task):
    """A reranker: each question's group (its positive and `--negatives` negatives) scored
    pair by pair with a listwise loss; MRR@10 validation on each dev question's own
    candidates (higher is better)."""

    reranker = True

    def describe(self) -> str:
        return (f"Reranker: {self.recipe.pooling} pooling, one-score head "
                f"(--head_init {self.cfg.rerank.head_init})")

    @staticmethod
    def usable(samples: list[BiEncoderSample], flag: str) -> list[BiEncoderSample]:
        """The samples with at least one negative (a group of one teaches nothing and ranks
        first by construction); `DataFormatError` naming `flag` when none has one."""
        kept = [s for s in samples if len(rerank_group(s, negatives=1)) > 1]
        if len(kept) < len(samples):
            logger.warning("%s: %d of %d questions have no negative passage: left out",
                           flag, len(samples) - len(kept), len(samples))
        if not kept:
            raise DataFormatError(f"{flag}: no question has a negative passage to rank its "
                                  "positive against")
        return kept

    def batch(self, samples: Sequence[BiEncoderSample], rngs: Sequence) -> RerankBatch:
        return build_rerank_batch(samples, self.parts.tensorizer,
                                  negatives=self.cfg.rerank.negatives, rngs=rngs,
                                  shuffle_positive=self.cfg.data.shuffle_positive_ctx)

    def step(self, batch: RerankBatch, loss_factor: float, update: bool) -> InBatchLoss:
        """Forward + backward of one batch; DDP reduces gradients only when `update`."""
        model = self.parts.model
        no_sync = model.no_sync if self.dctx.distributed and not update \
            else contextlib.nullcontext
        return rerank_step(model, batch, dctx=self.dctx, autocast=self.parts.autocast,
                           scale=self.parts.scaler.scale, loss_factor=loss_factor,
                           no_sync=no_sync, sync=False)

    def validate(self, dev: Sequence[BiEncoderSample], epoch: int) -> tuple[str, float]:
        """(MRR@10, its value; higher is better)."""
        r = self.cfg.rerank
        return MRR_METRIC, validate_mrr(
            self.parts.bare, dev, self.parts.tensorizer, dctx=self.dctx,
            candidates=r.val_candidates, amp_dtype=self.parts.amp_dtype,
            batch_size=self.cfg.data.dev_batch_size * r.val_candidates)

    def validate_only(self, dev: Sequence[BiEncoderSample]) -> dict[str, float]:
        return dict([self.validate(dev, 0)])
