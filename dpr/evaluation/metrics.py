"""Retrieval metrics over ranked relevance judgments (pure): top-k accuracy, MRR, AP, recall.

Whether a passage is relevant (answer matching) is `dpr.data.answers`'s concern."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def top_k_accuracy(first_hit_ranks: Sequence[int | None], ks: Iterable[int]) -> dict[int, float]:
    """Per cut-off k (>= 1, else ValueError), the fraction of questions whose first relevant
    passage is ranked within the top k (0.0 for an empty input); `first_hit_ranks` holds each
    question's 0-based rank of it, None when no retrieved passage is relevant."""
    ranks = [rank for rank in first_hit_ranks if rank is not None]
    result: dict[int, float] = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        hits = sum(1 for rank in ranks if rank < k)
        result[k] = hits / len(first_hit_ranks) if first_hit_ranks else 0.0
    return result


def mrr(first_hit_ranks: Sequence[int | None], cutoff: int | None = None) -> float:
    """Mean reciprocal rank ``1 / (rank + 1)`` of the first relevant passage (0 for a miss,
    and for a hit ranked at or beyond ``cutoff`` when given: MRR@cutoff; 0.0 for an empty
    input)."""
    hits = [1.0 / (rank + 1) for rank in first_hit_ranks
            if rank is not None and (cutoff is None or rank < cutoff)]
    return sum(hits) / len(first_hit_ranks) if first_hit_ranks else 0.0


def first_hit_rank(relevant: Sequence[bool]) -> int | None:
    """0-based rank of the first relevant item of a ranking, or None."""
    for rank, flag in enumerate(relevant):
        if flag:
            return rank
    return None


def average_precision(relevant: Sequence[bool], num_relevant: int, cutoff: int) -> float:
    """AP@cutoff: sum of precision@i over the relevant ranks i <= cutoff, divided by
    ``min(num_relevant, cutoff)`` (0 when nothing is relevant).

    With one relevant passage per question it is the reciprocal rank of that passage (within
    the cut-off), which is what Haystack's 2020 retriever evaluation reported as "map".
    """
    denominator = min(num_relevant, cutoff)
    if denominator <= 0:
        return 0.0
    hits, total = 0, 0.0
    for rank, flag in enumerate(relevant[:cutoff]):
        if flag:
            hits += 1
            total += hits / (rank + 1)
    return total / denominator


def recall_at(relevant: Sequence[bool], num_relevant: int, cutoff: int) -> float:
    """Fraction of the question's relevant passages found in the top ``cutoff``."""
    if num_relevant <= 0:
        return 0.0
    return min(1.0, sum(1 for flag in relevant[:cutoff] if flag) / num_relevant)


CUTOFF = 10  # of MRR and MAP in every report
MRR, MAP = f"mrr@{CUTOFF}", f"map@{CUTOFF}"  # their keys in results.json


def retrieval_metrics(relevance: Sequence[Sequence[bool]], num_relevant: Sequence[int], *,
                      ks: Sequence[int],
                      curve_to: int = 100) -> dict[str, object]:
    """Every reported metric of one retriever on one question set.

    Args:
        relevance: Per question, whether each retrieved passage (best first) is relevant.
        num_relevant: Per question, the number R of relevant passages recall and AP divide by
            (the evaluation's: gold passages, or relevant among retrieved); questions with
            none still count as misses in every mean.
        ks: Cut-offs of top-k accuracy and recall.
        curve_to: Length of the top-k accuracy curve (k = 1..curve_to).

    Returns:
        ``top_k`` {k: accuracy}, ``recall`` {k: mean recall}, ``mrr@N``, ``map@N``,
        ``curve`` (accuracy at k = 1..curve_to) and ``questions``.
    """
    if len(relevance) != len(num_relevant):
        raise ValueError("relevance and num_relevant differ in length")
    count = len(relevance)
    ranks = [first_hit_rank(flags) for flags in relevance]
    mean = (lambda values: sum(values) / count) if count else (lambda values: 0.0)
    return {
        "questions": count,
        "top_k": top_k_accuracy(ranks, ks),
        "recall": {k: mean([recall_at(f, n, k) for f, n in zip(relevance, num_relevant)])
                   for k in ks},
        MRR: mrr(ranks, cutoff=CUTOFF),
        MAP: mean([average_precision(f, n, CUTOFF)
                                   for f, n in zip(relevance, num_relevant)]),
        "curve": list(top_k_accuracy(ranks, range(1, curve_to + 1)).values()),
    }
