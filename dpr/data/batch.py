"""Negative sampling, the bi-encoder batch layout and the reranker's (each question's group of
(question, passage) pairs)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dpr.data.recipe import pair_items, passage_items, question_items
from dpr.data.records import BiEncoderSample, Passage
from dpr.data.tensorizer import Tensorizer

NO_KEY = -1  # padding of `positive_keys`: passage keys are non-negative


@dataclass
class BiEncoderBatch:
    """Tensors of one bi-encoder step.

    Contexts are laid out per question as `[positive, other negatives..., hard negatives...]`,
    blocks concatenated in question order. Every context carries its passage key
    (`Passage.key`) and every question the keys of all of its positives, so that the loss can
    tell a copy of a question's positive from a true negative; batches built without keys
    (None) are scored as in DPR.
    """

    question_ids: torch.Tensor  # [B × Lq] int64
    question_mask: torch.Tensor  # [B × Lq] bool
    ctx_ids: torch.Tensor  # [C × Lc] int64, C = Σ contexts per question
    ctx_mask: torch.Tensor  # [C × Lc] bool
    positive_idx: torch.Tensor  # [B] int64, row of each question's positive in ctx_ids
    hard_negative_idx: list[list[int]]  # per question, rows of its hard negatives
    ctx_keys: torch.Tensor | None = None  # [C] int64 passage key of each row of ctx_ids
    positive_keys: torch.Tensor | None = None  # [B × P] int64 keys of each question's
    #   positives (all of them, not only the sampled one), padded with -1
    question_lengths: torch.Tensor | None = None  # [B] int64 real tokens per question, CPU
    ctx_lengths: torch.Tensor | None = None  # [C] int64 real tokens per context, CPU
    teacher_scores: torch.Tensor | None = None  # [C] float32 a reranker's score of each
    #   context for its question (`dpr.data.teacher.teacher_column`), for --distill_scores

    def to(self, device: torch.device | str) -> BiEncoderBatch:
        """The batch with its tensors moved to `device`, but the row lengths: they stay on the
        CPU (counted here from the masks while these are still there), so that length buckets
        are planned without a copy back from the device."""
        moved = {name: value.to(device, non_blocking=True) for name, value in vars(self).items()
                 if isinstance(value, torch.Tensor) and not name.endswith("_lengths")}
        lengths = {f"{side}_lengths": _cpu_lengths(getattr(self, f"{side}_lengths"),
                                                   getattr(self, f"{side}_mask"))
                   for side in ("question", "ctx")}
        return dataclasses.replace(self, **moved, **lengths)


def _cpu_lengths(lengths: torch.Tensor | None, mask: torch.Tensor) -> torch.Tensor | None:
    if lengths is not None or mask.device.type != "cpu":
        return lengths
    return mask.sum(dim=1)


def _positive_keys(samples: Sequence[BiEncoderSample]) -> torch.Tensor:
    """[B × P] keys of every sample's positives, padded with -1 (P = most positives)."""
    width = max((len(s.positives) for s in samples), default=0)
    rows = [[p.key for p in s.positives] + [NO_KEY] * (width - len(s.positives))
            for s in samples]
    return torch.tensor(rows, dtype=torch.long).view(len(samples), width)


def select_contexts(sample: BiEncoderSample, *, num_hard: int, num_other: int,
                    rng: random.Random | None,
                    shuffle_positive: bool = False) -> tuple[Passage, list[Passage], list[Passage]]:
    """(positive, other negatives, hard negatives) of one question. With an `rng` (training)
    the negative pools are shuffled (copies; the sample is never mutated) and, if
    `shuffle_positive`, the positive is drawn at random; without one (validation) the first
    passages are taken. Pools smaller than the requested count give what they have."""
    positive = sample.positives[0]
    others = list(sample.negatives)
    hards = list(sample.hard_negatives)
    if rng is not None:
        if shuffle_positive and len(sample.positives) > 1:
            positive = sample.positives[rng.randrange(len(sample.positives))]
        rng.shuffle(others)
        rng.shuffle(hards)
    return positive, others[:num_other], hards[:num_hard]


def build_batch(samples: Sequence[BiEncoderSample], tensorizer: Tensorizer, *, num_hard: int,
                num_other: int, rngs: Sequence[random.Random] | None = None,
                shuffle_positive: bool = False) -> BiEncoderBatch:
    """A `BiEncoderBatch` (DPR's `create_biencoder_input`, without global RNGs) of `num_hard`
    hard and `num_other` other negatives per question, drawn with `rngs` (one private
    generator per sample; None: no shuffle) as `select_contexts` does."""
    questions: list[str] = []
    passages: list[Passage] = []
    positive_idx: list[int] = []
    hard_idx: list[list[int]] = []
    for i, sample in enumerate(samples):
        positive, others, hards = select_contexts(
            sample, num_hard=num_hard, num_other=num_other,
            rng=rngs[i] if rngs is not None else None, shuffle_positive=shuffle_positive)
        start = len(passages)
        positive_idx.append(start)
        first_hard = start + 1 + len(others)
        hard_idx.append(list(range(first_hard, first_hard + len(hards))))
        passages.extend([positive, *others, *hards])
        questions.append(sample.question)
    q_ids, q_mask = tensorizer.tensorize(question_items(questions, tensorizer.recipe))
    c_ids, c_mask = tensorizer.tensorize(
        passage_items([(p.title, p.text) for p in passages], tensorizer.recipe))
    return BiEncoderBatch(
        question_ids=q_ids, question_mask=q_mask, ctx_ids=c_ids, ctx_mask=c_mask,
        positive_idx=torch.tensor(positive_idx, dtype=torch.long), hard_negative_idx=hard_idx,
        ctx_keys=torch.tensor([p.key for p in passages], dtype=torch.long),
        positive_keys=_positive_keys(samples))


@dataclass
class RerankBatch:
    """Tensors of one reranker step: each question's group of (question, passage) pairs, its
    positive first (`rerank_group`), the groups concatenated in question order."""

    ids: torch.Tensor  # [P × L] int64, P = Σ group sizes
    mask: torch.Tensor  # [P × L] bool
    valid: torch.Tensor  # [Q × G] bool, slot j of question i holds a pair (in row-major order
    #   the pairs of `ids`); G = the largest group
    lengths: torch.Tensor | None = None  # [P] int64 real tokens per pair, CPU

    def to(self, device: torch.device | str) -> RerankBatch:
        """The batch on `device`, its row lengths kept on the CPU (as `BiEncoderBatch.to`)."""
        return RerankBatch(self.ids.to(device, non_blocking=True),
                           self.mask.to(device, non_blocking=True),
                           self.valid.to(device, non_blocking=True),
                           _cpu_lengths(self.lengths, self.mask))


def rerank_group(sample: BiEncoderSample, *, negatives: int, rng: random.Random | None = None,
                 shuffle_positive: bool = False) -> list[Passage]:
    """A question's candidates for the reranker: its positive, then up to `negatives`
    negatives, hard ones first, then the other ones, drawn as `select_contexts` draws them
    (shuffled with an `rng`, else in file order); copies of any of its positives are left
    out. A question with fewer negatives keeps fewer (groups may differ in size)."""
    positive, others, hards = select_contexts(
        sample, num_hard=len(sample.hard_negatives), num_other=len(sample.negatives), rng=rng,
        shuffle_positive=shuffle_positive)
    keys = {p.key for p in sample.positives}
    return [positive, *[p for p in hards + others if p.key not in keys][:negatives]]


def build_rerank_batch(samples: Sequence[BiEncoderSample], tensorizer: Tensorizer, *,
                       negatives: int, rngs: Sequence[random.Random] | None = None,
                       shuffle_positive: bool = False) -> RerankBatch:
    """A `RerankBatch` of the samples' groups (`rerank_group`, one generator per sample in
    `rngs`; None: file order), as pairs prepared by `dpr.data.recipe.pair_items`."""
    groups = [rerank_group(s, negatives=negatives, rng=rngs[i] if rngs is not None else None,
                           shuffle_positive=shuffle_positive) for i, s in enumerate(samples)]
    pairs = [(s.question, (p.title, p.text)) for s, group in zip(samples, groups) for p in group]
    ids, mask = tensorizer.tensorize(pair_items(pairs, tensorizer.recipe))
    sizes = [len(group) for group in groups]
    valid = torch.arange(max(sizes, default=0))[None, :] < torch.tensor(sizes)[:, None]
    return RerankBatch(ids, mask, valid)
