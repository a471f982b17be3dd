"""`python -m dpr.evaluate`: parses the flags (generated from
:class:`dpr.evaluation.options.EvalOptions`), runs :func:`dpr.evaluation.pipeline.evaluate` and
prints the report. Retrievers, relevance, flags and outputs: docs/EVALUATION.md.
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
        description="Compare BM25, DPR, BM25+DPR fusions, a sentence-transformers baseline and "
        "rerankers over one of them on one question set: top-k accuracy, MRR@10, MAP@10 and "
        "recall, as a Markdown table, results.json and a top-k accuracy plot.")
    models = add_options(parser, EvalOptions, groups=GROUPS)["models"]
    add_checkpoint_path_flags(models)
    add_recipe_flags(models)
    add_device_flags(models)
    add_precision_flags(models)
    add_pickle_flag(models)
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Checks the flags (`EvalOptions`: `UsageError`, exit 2) and the paths, evaluates and
    prints (and writes) the report."""
    options = options_of(EvalOptions, args, encoder_cli=encoder_params(args),
                         command=shlex.join(["python", "-m", "dpr.evaluate", *argv]))
    for flag, folder in (("--output_dir", options.output_dir), ("--trec_dir", options.trec_dir)):
        if folder:  # refused before the evaluation runs, not after
            check_output_dir(folder, flag=flag)
    for spec in (*options.dpr_models, *options.rerankers):
        check_input_path(spec.path, flag=spec.flag)
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
