"""`python -m dpr2hf [--model_file] CHECKPOINT --output_dir DIR` (docs/DPR2HF.md): a bi-encoder
checkpoint gives question/passage encoder folders, a reranker checkpoint a `CrossEncoder`
folder."""

from __future__ import annotations

import argparse
import logging

from dpr.cli.flags import (
    add_checkpoint_path_flags,
    add_debug_flag,
    add_pickle_flag,
    add_positional_flag,
    add_recipe_flags,
    encoder_params,
    require,
)
from dpr.cli.main import run_main
from dpr2hf.convert import convert

logger = logging.getLogger("dpr2hf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr2hf",
        description="Convert a DPR bi-encoder checkpoint (ours or the original DPR's: hf_bert, "
                    "hf_roberta, fairseq_roberta) into Hugging Face question/passage encoder "
                    "folders, or a reranker checkpoint (train_reranker.py) into a "
                    "sentence-transformers CrossEncoder folder, verified against the "
                    "checkpoint.")
    add_positional_flag(parser, "--model_file", metavar="CHECKPOINT",
                        help="DPR checkpoint file, e.g. dpr_biencoder.34.708, or a "
                             "reranker checkpoint, e.g. reranker.2.1000.")
    parser.add_argument("--output_dir", required=True,
                        help="Folder to create; receives question_encoder/ and ctx_encoder/ "
                             "(and dpr_question_encoder/, dpr_ctx_encoder/ for BERT); for a "
                             "reranker it is the CrossEncoder folder.")
    add_checkpoint_path_flags(parser)
    add_recipe_flags(parser.add_argument_group(
        "recipe of a plain model folder", "A checkpoint carries its own; a plain Hugging Face "
        "or sentence-transformers folder is exported as the untrained bi-encoder training "
        "would start from."))
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace an existing non-empty --output_dir (only after the new "
                             "folders passed verification).")
    add_pickle_flag(parser, help="Allow files that need full unpickling (the original DPR's "
                    "checkpoints with pickled objects, fairseq model.pt with an OmegaConf "
                    "config). Unpickling can run arbitrary code: trusted files only.")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="Largest accepted absolute difference between the exported "
                             "folders' vectors and the bi-encoder's, or the CrossEncoder's "
                             "scores and the reranker's (default 1e-4).")
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Converts, then logs what was written and verified."""
    result = convert(require(args, "--model_file", "the checkpoint"), args.output_dir,
                     cli=encoder_params(args), overwrite=args.overwrite,
                     allow_pickle=args.allow_unsafe_pickle, tolerance=args.tolerance)
    if result.reranker:
        logger.info("Wrote the reranker's CrossEncoder folder %s", result.output_dir)
    else:
        logger.info("Wrote %s under %s", ", ".join(result.folders), result.output_dir)
    for name, diff in sorted(result.max_differences.items()):
        logger.info("Verified %s: max |difference| %.3g (tolerance %g)", name, diff,
                    args.tolerance)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Converts a checkpoint: 0 on success, 1 on bad input or failed verification (nothing
    written), 2 on bad flags."""
    return run_main(build_parser(), argv, run, prog="dpr2hf",
                    on_error=lambda args: logger.error("Nothing was written to %s",
                                                       args.output_dir))
