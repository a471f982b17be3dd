"""Command-line flags of the tools that load a model for inference, and their device choice.

Loading and encoding themselves are `dpr.inference.load_encoder`'s.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch

from dpr.models.checkpoint import ENCODER_PARAM_KEYS
from dpr.models.recipe import POOLINGS, RECIPE_KEYS, SIMILARITIES
from dpr.utils.cli import add_precision_flags
from dpr.utils.dist import autocast_dtype

logger = logging.getLogger(__name__)


def pick_device(no_cuda: bool) -> torch.device:
    """CUDA when available and not disabled, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() and not no_cuda else "cpu")


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in "invalid int value"
    return parse


def add_encoder_flags(parser: argparse.ArgumentParser) -> None:
    """Adds DPR's encoder, tokenizer and device flags shared by the evaluation tools."""
    group = parser.add_argument_group("encoder", "Model flags; values stored in the checkpoint "
                                      "win, except the two paths when given here.")
    group.add_argument("--model_file", type=str, required=True,
                       help="Model to encode with: a DPR bi-encoder checkpoint, a dpr2hf export "
                       "folder, or a Hugging Face / sentence-transformers model folder "
                       "(an untrained bi-encoder).")
    group.add_argument("--encoder_model_type", type=str, default=None,
                       help="hf_bert, hf_roberta or fairseq_roberta (normally read from the "
                       "checkpoint).")
    group.add_argument("--pretrained_model_cfg", type=str, default=None,
                       help="Hugging Face model/tokenizer folder (overrides the stored path).")
    group.add_argument("--pretrained_file", type=str, default=None,
                       help="fairseq_roberta: fairseq model folder (overrides the stored path).")
    group.add_argument("--projection_dim", type=_int_at_least(0), default=0,
                       help="Projection size (normally read from the checkpoint).")
    group.add_argument("--sequence_length", type=_int_at_least(4), default=512,
                       help="Maximum tokens per text (normally read from the checkpoint).")
    group.add_argument("--do_lower_case", action="store_true",
                       help="Lower-case texts before tokenization (normally read from the "
                       "checkpoint).")
    add_recipe_flags(group)
    group.add_argument("--no_cuda", action="store_true",
                       help="Run on the CPU even if a GPU is available.")
    add_precision_flags(group)
    group.add_argument("--allow_unsafe_pickle", action="store_true",
                       help="Allow files that need full unpickling (checkpoints, DPR .pkl "
                       "embeddings): only for files you trust.")
    group.add_argument("--quiet", action="store_true", help="No progress bars.")


def add_recipe_flags(group: argparse._ActionsContainer) -> None:
    """The recipe flags of a plain model folder (a checkpoint or an export stores its own)."""
    note = ("a checkpoint or dpr2hf folder uses its stored recipe; for a plain model folder "
            "the default is its sentence-transformers recipe, else DPR's")
    group.add_argument("--pooling", choices=POOLINGS, default=None,
                       help=f"cls or mean pooling ({note}).")
    group.add_argument("--similarity", choices=SIMILARITIES, default=None,
                       help=f"dot or cosine ({note}).")
    group.add_argument("--query_prefix", type=str, default=None,
                       help=f"Text put before every question ({note}).")
    group.add_argument("--passage_prefix", type=str, default=None,
                       help=f"Text put before every passage ({note}).")


def encoding_dtype(args: argparse.Namespace, device: torch.device) -> torch.dtype | None:
    """The autocast type of `--fp16` / `--amp_dtype` on `device` (None: float32)."""
    return autocast_dtype(bool(getattr(args, "fp16", False)),
                          getattr(args, "amp_dtype", "auto"), device)


def cli_encoder_params(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder parameters given on the command line, as ``load_encoder`` wants."""
    return {key: getattr(args, key, None) for key in ENCODER_PARAM_KEYS + RECIPE_KEYS}
