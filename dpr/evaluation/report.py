"""The evaluation report: per-retriever metrics, paired sign tests, table, plot, results.json."""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from dpr.evaluation.metrics import MAP, MRR, first_hit_rank, retrieval_metrics
from dpr.evaluation.relevance import AMONG_RETRIEVED, Qrels
from dpr.retrieval.run import Run
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)


def score_runs(runs: Sequence[Run], qrels: Qrels, *, ks: Sequence[int], n_docs: int
               ) -> dict[str, dict[str, Any]]:
    """Every metric of every run (each row judged in ``qrels``; R of recall and MAP is
    ``qrels.num_relevant``), with its seconds and each question's first-hit rank; the top-k
    accuracy curve goes to ``n_docs``."""
    results: dict[str, dict[str, Any]] = {}
    for run in runs:
        relevance = [qrels.flags(q, rows) for q, rows in enumerate(run.rows)]
        metrics = retrieval_metrics(relevance, qrels.num_relevant, ks=ks, curve_to=n_docs)
        metrics["seconds"] = round(run.seconds, 3)
        metrics["first_hit_rank"] = [first_hit_rank(flags) for flags in relevance]
        results[run.name] = metrics
    return results


def hits_at(results: Mapping[str, dict[str, Any]], k: int) -> dict[str, list[bool]]:
    """Per retriever, whether each question has a relevant passage in the top k."""
    return {name: [r is not None and r < k for r in metrics["first_hit_rank"]]
            for name, metrics in results.items()}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value for paired wins/losses (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired(results: Mapping[str, dict[str, Any]], hits: Mapping[str, list[bool]], k: int,
           first: str, second: str) -> dict[str, Any]:
    """``first`` against ``second`` at top-k: questions only one of them answers, sign test."""
    wins = sum(1 for a, b in zip(hits[first], hits[second]) if a and not b)
    losses = sum(1 for a, b in zip(hits[first], hits[second]) if b and not a)
    return {"first": first, "retriever": second, "k": k, "wins": wins, "losses": losses,
            "difference": results[first]["top_k"][k] - results[second]["top_k"][k],
            "p_value": sign_test(wins, losses)}


def paired_tests(results: Mapping[str, dict[str, Any]], pairs: Sequence[tuple[str, str]],
                 ks: Sequence[int]) -> list[dict[str, Any]]:
    """The sign test of each requested pair ``(expected winner, other)`` at each k: per pair,
    ``first``, ``second`` and, per ``top-<k>``, :func:`paired`'s entry."""
    hits = {k: hits_at(results, k) for k in ks}
    return [{"first": first, "second": second,
             "at": {f"top-{k}": paired(results, hits[k], k, first, second) for k in ks}}
            for first, second in pairs]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    With the m p-values sorted ascending, p_(i) becomes max over j <= i of
    min(1, (m - j + 1) · p_(j)); rejecting where the adjusted value is below α controls the
    family-wise error rate at α over all m tests.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for position, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - position) * p_values[i]))
        adjusted[i] = running
    return adjusted


def adjust_sign_tests(comparison: dict[str, Any] | None, pairs: Sequence[dict[str, Any]],
                      k: int) -> dict[str, Any]:
    """Adds ``p_holm`` beside every ``p_value`` of ``comparison`` (:func:`compare`, or None)
    and ``pairs`` (:func:`paired_tests`): Holm's adjustment over every distinct sign test of
    the report (every pair of retrievers at top-``k``, and the requested pairs at each of their
    k; a pair tested twice at the same k counts once). Returns the ``sign_tests`` entry.
    """
    rows = [*(comparison["against"] if comparison else ()),
            *(comparison["pairs"].values() if comparison else ()),
            *(row for test in pairs for row in test["at"].values())]
    keyed = [((frozenset((row["first"], row["retriever"])), row["k"]), row) for row in rows]
    family: dict[tuple[frozenset[str], int], float] = {}
    for key, row in keyed:
        family.setdefault(key, row["p_value"])
    adjusted = dict(zip(family, holm(list(family.values()))))
    for key, row in keyed:
        row["p_holm"] = adjusted[key]
    return {"count": len(family), "correction": "holm",
            "family": f"every pair of retrievers at top-{k} and the requested pairs at each "
                      "k, each distinct test once"}


def pairs_text(tests: Sequence[dict[str, Any]]) -> str:
    """The requested pairs in words (one line per pair)."""
    lines = ["Requested pairs (two-sided sign test on the questions only one of the two "
             "answers):"]
    for test in tests:
        cells = []
        for at, row in test["at"].items():
            cells.append(f"{at} {100 * row['difference']:+.1f} points ({row['wins']} vs "
                         f"{row['losses']} questions, {_p_values(row)})")
        lines.append(f"  {test['first']} > {test['second']}?  " + "; ".join(cells))
    return "\n".join(lines)


def fusion_text(fusion: dict[str, Any], retrievers: Sequence[str]) -> str:
    """The fusion settings that were used, in words."""
    tuned = f" (tuned on {fusion['tuning']['file']})" if "tuning" in fusion else ""
    lines = []
    if "hybrid" in retrievers:
        lines.append(f"hybrid λ = {fusion['lambda']:g}" + tuned)
    if "normalised" in fusion:
        setting = fusion["normalised"]
        why = tuned if setting["source"] == "tuned" else (
            " (default, untuned)" if setting["source"] == "default" else " (set by flags)")
        lines.append(f"fusion: {setting['method']} normalisation, dense weight "
                     f"{setting['dense_weight']:g}{why}")
    lines.append(f"dense side of the fusions: {fusion['dpr']}")
    return "\n".join(lines)


def rerank_text(rerank: Mapping[str, Mapping[str, Any]],
                results: Mapping[str, Mapping[str, Any]]) -> str:
    """What each rerank run re-ranked, and its time per question, in words."""
    lines = []
    for name, info in rerank.items():
        total = results[name]["seconds"] / max(len(results[name]["first_hit_rank"]), 1)
        lines.append(f"{name}: the top {info['depth']} of {info['first_stage']} re-ranked by "
                     f"{info['reranker']}, {1000 * info['seconds_per_question']:.1f} ms per "
                     f"question ({1000 * total:.1f} ms with the first stage); its lists hold "
                     "only these passages")
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Any]], ks: Sequence[int]) -> str:
    """One row per retriever: top-k accuracies, MRR@10, MAP@10, recall@20/@100 (or at the
    largest k when smaller), in %."""
    recall_ks = [k for k in (20, 100) if k in ks] or [ks[-1]]
    head = ["Retriever"] + [f"Top-{k}" for k in ks] + ["MRR@10", "MAP@10"] + \
        [f"R@{k}" for k in recall_ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, metrics in results.items():
        cells = [name] + [f"{100 * metrics['top_k'][k]:.1f}" for k in ks]
        cells += [f"{100 * metrics[MRR]:.1f}", f"{100 * metrics[MAP]:.1f}"]
        cells += [f"{100 * metrics['recall'][k]:.1f}" for k in recall_ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(results: dict[str, dict[str, Any]], hits: dict[str, list[bool]], k: int
            ) -> dict[str, Any]:
    """Ranks retrievers by top-k accuracy (ties by MRR@10); the leader against each other one
    with a sign test on the questions where exactly one of the two has an answer in its top k."""
    def key(name: str) -> tuple[float, float]:
        return results[name]["top_k"][k], results[name][MRR]

    order = sorted(results, key=lambda name: tuple(-v for v in key(name)))
    leader = order[0]
    rows = [paired(results, hits, k, leader, other) for other in order[1:]]
    pairs = {f"{a} vs {b}": paired(results, hits, k, a, b)
             for i, a in enumerate(order) for b in order[i + 1:]}
    ranking = order[0]
    for before, name in zip(order, order[1:]):
        ranking += (" = " if key(before) == key(name) else " > ") + name
    return {"metric": f"top-{k} accuracy", "tie_break": MRR, "order": order,
            "ranking": ranking, "leader": leader, "against": rows, "pairs": pairs}


def _p_values(row: Mapping[str, Any]) -> str:
    """The raw and Holm-adjusted p-values of a sign test and the verdict at 5% (on the
    adjusted one when there is one)."""
    verdict = "significant" if row.get("p_holm", row["p_value"]) < 0.05 else "not significant"
    holm_p = f", Holm p = {row['p_holm']:.3g}" if "p_holm" in row else ""
    return f"p = {row['p_value']:.3g}{holm_p}, {verdict} at 5%"


def verdict(comparison: dict[str, Any]) -> str:
    """The comparison in words."""
    leader = comparison["leader"]
    lines = [f"By {comparison['metric']} (ties by MRR@10): {comparison['ranking']}"]
    for row in comparison["against"]:
        lines.append(
            f"  {leader} vs {row['retriever']}: {100 * row['difference']:+.1f} points; "
            f"{row['wins']} questions answered only by {leader}, {row['losses']} only by "
            f"{row['retriever']} (sign test {_p_values(row)})")
    return "\n".join(lines)


def plot_curves(results: dict[str, dict[str, Any]], path: str, title: str) -> None:
    """Top-k accuracy against k for every retriever, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, metrics in results.items():
        curve = metrics["curve"]
        ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], label=name, linewidth=1.8)
    ax.set(xscale="log", xlabel="k (passages retrieved)", ylabel="top-k accuracy (%)",
           ylim=(0, 100))
    ticks = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if k <= len(curve)]
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png")
    plt.close(fig)


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries that produce the numbers."""
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "processor": platform.processor() or platform.machine()}
    for name in ("torch", "transformers", "faiss", "bm25s", "numpy", "sentence_transformers"):
        module = sys.modules.get(name)
        if module is None and name != "sentence_transformers":
            try:
                module = __import__(name)
            except ImportError:
                continue
        if module is not None:
            out[name] = str(getattr(module, "__version__", "unknown"))
    return out


def notes_text(report: Mapping[str, Any]) -> str:
    """What R of recall and MAP is, and how many sign tests the report holds."""
    base = report.get("num_relevant") or {}
    lines = []
    if base.get("definition") == AMONG_RETRIEVED:
        lines.append(f"R@k and MAP@10 divide by the passages relevant among retrieved (those "
                     f"containing an answer in the union of the top {base['depth']} of "
                     f"{', '.join(base['pool'])}), not by those of the whole corpus.")
    tests = report.get("sign_tests") or {}
    if tests.get("count"):
        lines.append(f"{tests['count']} sign tests in this report ({tests['family']}); Holm p "
                     "is each p-value adjusted for all of them (Holm-Bonferroni).")
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    """The report as the command line prints it: table, verdict, fusion and re-ranking
    settings."""
    parts = [markdown_table(report["results"], report["ks"])]
    if report["comparison"]:
        parts.append(verdict(report["comparison"]))
    if report.get("pairs"):
        parts.append(pairs_text(report["pairs"]))
    if report["fusion"]:
        parts.append(fusion_text(report["fusion"], list(report["results"])))
    if report.get("rerank"):
        parts.append(rerank_text(report["rerank"], report["results"]))
    notes = notes_text(report)
    return "\n\n".join(parts + ([notes] if notes else []))


def write_outputs(report: dict[str, Any], output_dir: str) -> tuple[str, str]:
    """results.json and topk_accuracy.png in ``output_dir``; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, "results.json")
    with atomic_write(json_path) as handle:
        json.dump(report, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    plot_path = os.path.join(output_dir, "topk_accuracy.png")
    plot_curves(report["results"], plot_path,
                f"{report['questions']['count']} questions, {report['corpus']['passages']} "
                f"passages ({os.path.basename(report['questions']['source'])})")
    return json_path, plot_path
