"""Article-level splits: held-out domains (test), then dev, tune and train; articles with
questions and corpus-only articles shuffled separately. The rule, and why it gives exactly the
historical train/dev split by default: docs/DATA_PREP.md, "Pipeline", step 5.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dpr.data.records import DataFormatError
from dpr.data.squad import SquadFile
from dpr.utils.errors import UsageError

logger = logging.getLogger(__name__)

TRAIN, DEV, TUNE, TEST = "train", "dev", "tune", "test"


@dataclass(frozen=True)
class SplitOptions:
    """How articles are split (see ``python -m data_prep.squad2dpr --help``)."""

    dev_ratio: float = 0.2
    tune_ratio: float = 0.0
    seed: int = 42
    holdout_field: str | None = None
    holdout_values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        every_dev = self.dev_ratio == 1 and self.tune_ratio == 0
        if not every_dev and not (min(self.dev_ratio, self.tune_ratio) >= 0
                                  and self.dev_ratio + self.tune_ratio < 1):
            raise UsageError(
                f"--dev_ratio {self.dev_ratio} and --tune_ratio {self.tune_ratio}: both >= 0 "
                "with a sum < 1, or --dev_ratio 1 alone (every article in dev)")
        if bool(self.holdout_field) != bool(self.holdout_values):
            raise UsageError("--holdout_field and --holdout_values go together")

    @property
    def names(self) -> tuple[str, ...]:
        """The splits written, in output order: train, dev, then tune and test if asked."""
        return (TRAIN, DEV, *((TUNE,) if self.tune_ratio > 0 else ()),
                *((TEST,) if self.holdout_field else ()))


def _field_value(squad_file: SquadFile, name: str) -> dict[str, str]:
    """Article key -> value of the article field ``name``; raises if an article lacks it."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for paragraph in squad_file.paragraphs:
        fields = {"title": paragraph.title, **paragraph.article_fields}
        if name not in fields:
            missing.append(paragraph.title)
            continue
        values.setdefault(paragraph.article_key, str(fields[name]).strip())
    if missing:
        titles = sorted(set(missing))
        raise DataFormatError(
            f"{squad_file.path}: {len(titles)} article(s) have no field {name!r} asked for by "
            f"--holdout_field (first: {titles[0]!r})")
    return values


def held_out_keys(files: Sequence[SquadFile], options: SplitOptions) -> set[str]:
    """Article keys whose ``holdout_field`` is one of ``holdout_values`` (an article present in
    several files is held out if any of them says so). DataFormatError if an article lacks the
    field, or a value matches no article."""
    if not options.holdout_field:
        return set()
    seen: set[str] = set()
    held: set[str] = set()
    for squad_file in files:
        for key, value in _field_value(squad_file, options.holdout_field).items():
            seen.add(value)
            if value in options.holdout_values:
                held.add(key)
    unknown = [v for v in options.holdout_values if v not in seen]
    if unknown:
        raise DataFormatError(
            f"--holdout_values {', '.join(map(repr, unknown))}: no article has this "
            f"{options.holdout_field!r} (values present: {', '.join(sorted(seen))})")
    return held


def _count(total: int, ratio: float) -> int:
    return max(1, round(total * ratio)) if ratio > 0 else 0


def _assign(keys: list[str], options: SplitOptions, seed: str | int) -> dict[str, str]:
    """The split of each of ``keys`` (sorted), by the rule of :func:`plan_splits`."""
    if options.dev_ratio == 1:
        return dict.fromkeys(keys, DEV)
    n_dev = n_tune = 0
    if len(keys) >= 2:
        n_dev = min(len(keys) - 1, _count(len(keys), options.dev_ratio))
        n_tune = min(len(keys) - 1 - n_dev, _count(len(keys), options.tune_ratio))
        random.Random(seed).shuffle(keys)
    return {key: DEV if i < n_dev else TUNE if i < n_dev + n_tune else TRAIN
            for i, key in enumerate(keys)}


def plan_splits(files: Sequence[SquadFile], options: SplitOptions) -> dict[str, str]:
    """Article key -> split (train, dev, tune or test). Of the n non-held-out articles with
    questions, sorted then shuffled with ``random.Random(seed)``, dev gets the first
    ``round(n * dev_ratio)`` (at least one when the ratio is > 0; all with ``--dev_ratio 1``),
    tune the next ``round(n * tune_ratio)`` (at least one), never leaving train without an
    article when there are two or more. Corpus-only articles are split alike, with their own
    shuffle.

    Raises:
        DataFormatError: See :func:`held_out_keys`.
    """
    held = held_out_keys(files, options)
    asked = {p.article_key for f in files for p in f.paragraphs if p.questions} - held
    rest = {p.article_key for f in files for p in f.paragraphs} - held - asked
    plan = {**dict.fromkeys(sorted(held), TEST), **_assign(sorted(asked), options, options.seed)}
    if options.tune_ratio > 0 and TUNE not in plan.values():
        logger.warning("too few articles (%d) for a tune split; it is empty", len(asked))
    return {**plan, **_assign(sorted(rest), options, f"{options.seed}-corpus-only")}
