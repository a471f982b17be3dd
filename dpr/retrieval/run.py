"""What a retriever returns: one immutable :class:`Run` (Pyserini's shape), and the pool of
runs that is judged (:func:`pool`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class Run:
    """One retriever's ranking of one question set; read-only."""

    name: str  # in reports: bm25, dpr:round1, hybrid...
    rows: tuple[np.ndarray, ...]  # per question, int64 [k_q] corpus rows best first
    scores: tuple[np.ndarray, ...]  # per question, [k_q] the retriever's score of each row
    seconds: float = 0.0  # time it took, encoding and indexing included
    # what produced it: model description, settings, tuning grid
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rows = tuple(_frozen(np.asarray(r, dtype=np.int64)) for r in self.rows)
        scores = tuple(_frozen(np.asarray(s)) for s in self.scores)
        if len(rows) != len(scores) or any(len(r) != len(s) for r, s in zip(rows, scores)):
            raise ValueError(f"run {self.name}: rows and scores differ in shape")
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def from_arrays(cls, name: str, rows: np.ndarray, scores: np.ndarray, *,
                    seconds: float = 0.0, metadata: Mapping[str, Any] | None = None) -> Run:
        """A run from search results [Q × k]; rows < 0 (no result) are left out."""
        kept = [row >= 0 for row in rows]
        return cls(name, tuple(row[keep] for row, keep in zip(rows, kept)),
                   tuple(score[keep] for score, keep in zip(scores, kept)), seconds,
                   metadata or {})

    def __len__(self) -> int:
        """Number of questions."""
        return len(self.rows)

    def top(self, k: int) -> Run:
        """The same run cut to its first ``k`` rows per question."""
        return dataclasses.replace(self, rows=tuple(r[:k] for r in self.rows),
                                   scores=tuple(s[:k] for s in self.scores))

    def replace(self, **changes: Any) -> Run:
        """A copy with some fields changed (``name``, ``seconds``, ``metadata``...)."""
        return dataclasses.replace(self, **changes)


def pool(runs: Iterable[Run], questions: int) -> list[np.ndarray]:
    """Per question (of ``questions``), the union of the rows of runs of the same question
    set, ascending (what is judged)."""
    return pool_rows((run.rows for run in runs), questions)


def pool_rows(rankings: Iterable[Sequence[np.ndarray]], questions: int) -> list[np.ndarray]:
    """Per question, the union of the rows of every ranking (each a list of per-question
    rows), ascending."""
    parts: list[list[np.ndarray]] = [[] for _ in range(questions)]
    for ranking in rankings:
        if len(ranking) != questions:
            raise ValueError(f"a ranking of {len(ranking)} questions, expected {questions}")
        for q, rows in enumerate(ranking):
            parts[q].append(np.asarray(rows, dtype=np.int64))
    return [np.unique(np.concatenate(p)) if p else np.zeros(0, np.int64) for p in parts]
