"""Loads a DPR checkpoint for inference and encodes passages and questions into vectors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dpr.data.recipe import encode_in_batches, passage_items, question_items
from dpr.data.tensorizer import Tensorizer, tensorizer_for
from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import ENCODER_PARAM_KEYS
from dpr.models.factory import load_trained_biencoder
from dpr.utils.cli import add_precision_flags
from dpr.utils.dist import autocast_dtype

logger = logging.getLogger(__name__)


@dataclass
class InferenceModel:
    """A bi-encoder in eval mode with its tensorizer and device."""

    biencoder: BiEncoder
    tensorizer: Tensorizer
    device: torch.device
    encoder_params: dict[str, Any]
    amp_dtype: torch.dtype | None = None  # autocast type of encoding (None: float32)

    @property
    def dim(self) -> int:
        """Size of the vectors (question and passage towers have the same)."""
        return int(self.biencoder.question_model.out_size)


def pick_device(no_cuda: bool) -> torch.device:
    """CUDA when available and not disabled, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() and not no_cuda else "cpu")


def load_inference_model(model_file: str, cli: Mapping[str, Any], *, device: torch.device,
                         allow_pickle: bool = False,
                         amp_dtype: torch.dtype | None = None) -> InferenceModel:
    """Builds the bi-encoder and tensorizer of a checkpoint, ready for encoding.

    Encoder parameters follow `dpr.models.checkpoint.resolve_encoder_params` (model-defining
    values from the checkpoint, paths from ``cli`` when given there, else the stored ones,
    resolved beside the checkpoint when they do not exist as given).

    Args:
        model_file: DPR checkpoint.
        cli: Command-line encoder parameters (the six ``ENCODER_PARAM_KEYS``).
        device: Where to run the model.
        allow_pickle: Allow checkpoints / fairseq files that need full unpickling.
        amp_dtype: Encode under autocast in this type (`encoding_dtype`); None: float32.

    Raises:
        CheckpointError: If the checkpoint is missing, unreadable or does not fit the model.
    """
    trained = load_trained_biencoder(model_file, cli, allow_pickle=allow_pickle)
    tensorizer = tensorizer_for(trained.params)
    return InferenceModel(trained.biencoder.to(device), tensorizer, device, trained.params,
                          amp_dtype)


def encode_passages(model: InferenceModel, texts: Sequence[str], titles: Sequence[str], *,
                    batch_size: int = 32, quiet: bool = False,
                    sort_by_length: bool = True) -> np.ndarray:
    """Passage vectors (title/text pairs, title omitted when empty), float32 [N × D]."""
    items = passage_items(list(titles), list(texts), model.tensorizer.recipe)
    return encode_in_batches(model.biencoder.encode_contexts, model.tensorizer, items,
                             dim=model.dim, batch_size=batch_size, device=model.device,
                             sort_by_length=sort_by_length, amp_dtype=model.amp_dtype,
                             desc="Encoding passages",
                             quiet=quiet)


def encode_questions(model: InferenceModel, questions: Sequence[str], *, batch_size: int = 32,
                     quiet: bool = False, sort_by_length: bool = True) -> np.ndarray:
    """Question vectors, float32 [N × D]; one trailing '?' is removed as in training."""
    items = question_items(list(questions), model.tensorizer.recipe)
    return encode_in_batches(model.biencoder.encode_questions, model.tensorizer, items,
                             dim=model.dim, batch_size=batch_size, device=model.device,
                             sort_by_length=sort_by_length, amp_dtype=model.amp_dtype,
                             desc="Encoding questions",
                             quiet=quiet)


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
                       help="DPR bi-encoder checkpoint to encode with.")
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
    group.add_argument("--no_cuda", action="store_true",
                       help="Run on the CPU even if a GPU is available.")
    add_precision_flags(group)
    group.add_argument("--allow_unsafe_pickle", action="store_true",
                       help="Allow files that need full unpickling (checkpoints, DPR .pkl "
                       "embeddings): only for files you trust.")
    group.add_argument("--quiet", action="store_true", help="No progress bars.")


def encoding_dtype(args: argparse.Namespace, device: torch.device) -> torch.dtype | None:
    """The autocast type of `--fp16` / `--amp_dtype` on `device` (None: float32)."""
    return autocast_dtype(bool(getattr(args, "fp16", False)),
                          getattr(args, "amp_dtype", "auto"), device)


def cli_encoder_params(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder parameters given on the command line, as ``resolve_encoder_params`` wants."""
    return {key: getattr(args, key, None) for key in ENCODER_PARAM_KEYS}
