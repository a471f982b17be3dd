"""Loads a DPR checkpoint for inference and encodes passages and questions into vectors."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dpr.data.tensorizer import Tensorizer, build_tensorizer, strip_question_mark
from dpr.models.biencoder import BiEncoder
from dpr.models.checkpoint import ENCODER_PARAM_KEYS, load_checkpoint, merge_encoder_params
from dpr.models.factory import build_trained_biencoder

logger = logging.getLogger(__name__)


@dataclass
class InferenceModel:
    """A bi-encoder in eval mode with its tensorizer and device."""

    biencoder: BiEncoder
    tensorizer: Tensorizer
    device: torch.device
    encoder_params: dict[str, Any]

    @property
    def dim(self) -> int:
        """Size of the vectors (question and passage towers have the same)."""
        return int(self.biencoder.question_model.out_size)


def pick_device(no_cuda: bool) -> torch.device:
    """CUDA when available and not disabled, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() and not no_cuda else "cpu")


def load_inference_model(model_file: str, cli: Mapping[str, Any], *, device: torch.device,
                         allow_pickle: bool = False) -> InferenceModel:
    """Builds the bi-encoder and tensorizer of a checkpoint, ready for encoding.

    Model-defining values come from the checkpoint's ``encoder_params``; the paths
    ``pretrained_model_cfg`` / ``pretrained_file`` from ``cli`` when given there.

    Args:
        model_file: DPR checkpoint.
        cli: Command-line encoder parameters (the six ``ENCODER_PARAM_KEYS``).
        device: Where to run the model.
        allow_pickle: Allow checkpoints / fairseq files that need full unpickling.

    Raises:
        CheckpointError: If the checkpoint is missing, unreadable or does not fit the model.
        ValueError: If a required encoder parameter is missing.
    """
    state = load_checkpoint(model_file, allow_pickle=allow_pickle)
    params, messages = merge_encoder_params(cli, state.encoder_params)
    for message in messages:
        logger.info("Checkpoint overrides %s", message)
    if not params.get("encoder_model_type"):
        raise ValueError(f"{model_file}: no encoder_model_type stored; pass "
                         "--encoder_model_type")
    biencoder = build_trained_biencoder(params, state.model_dict, source=model_file,
                                        allow_pickle=allow_pickle).to(device)
    tensorizer = build_tensorizer(
        params["encoder_model_type"], params["pretrained_model_cfg"] or params["pretrained_file"],
        sequence_length=int(params.get("sequence_length") or 512),
        do_lower_case=bool(params.get("do_lower_case")), pad_to_max=False,
        pad_to_multiple_of=8)
    return InferenceModel(biencoder, tensorizer, device, params)


def _encode(model: InferenceModel, encode_fn: Any, texts: Sequence[str],
            titles: Sequence[str] | None, *, batch_size: int, desc: str, quiet: bool
            ) -> np.ndarray:
    """Encodes texts in batches with one tower; returns float32 [N × D]."""
    out = np.zeros((len(texts), model.dim), dtype=np.float32)
    bar = tqdm(total=len(texts), desc=desc, unit=" texts", disable=quiet)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            end = min(start + batch_size, len(texts))
            ids, mask = model.tensorizer.tensorize(
                texts[start:end], titles[start:end] if titles is not None else None)
            vectors = encode_fn(ids.to(model.device), mask.to(model.device))  # [B × D]
            out[start:end] = vectors.float().cpu().numpy()
            bar.update(end - start)
    bar.close()
    return out


def encode_passages(model: InferenceModel, texts: Sequence[str], titles: Sequence[str], *,
                    batch_size: int = 32, quiet: bool = False) -> np.ndarray:
    """Passage vectors (title/text pairs, title omitted when empty), float32 [N × D]."""
    return _encode(model, model.biencoder.encode_contexts, list(texts), list(titles),
                   batch_size=batch_size, desc="Encoding passages", quiet=quiet)


def encode_questions(model: InferenceModel, questions: Sequence[str], *, batch_size: int = 32,
                     quiet: bool = False) -> np.ndarray:
    """Question vectors, float32 [N × D]; one trailing '?' is removed as in training."""
    texts = [strip_question_mark(q) for q in questions]
    return _encode(model, model.biencoder.encode_questions, texts, None,
                   batch_size=batch_size, desc="Encoding questions", quiet=quiet)


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
    group.add_argument("--projection_dim", type=int, default=0,
                       help="Projection size (normally read from the checkpoint).")
    group.add_argument("--sequence_length", type=int, default=512,
                       help="Maximum tokens per text (normally read from the checkpoint).")
    group.add_argument("--do_lower_case", action="store_true",
                       help="Lower-case texts before tokenization (normally read from the "
                       "checkpoint).")
    group.add_argument("--no_cuda", action="store_true",
                       help="Run on the CPU even if a GPU is available.")
    group.add_argument("--allow_unsafe_pickle", action="store_true",
                       help="Allow files that need full unpickling (checkpoints, DPR .pkl "
                       "embeddings): only for files you trust.")
    group.add_argument("--quiet", action="store_true", help="No progress bars.")


def cli_encoder_params(args: argparse.Namespace) -> dict[str, Any]:
    """The encoder parameters given on the command line, as ``merge_encoder_params`` wants."""
    return {key: getattr(args, key, None) for key in ENCODER_PARAM_KEYS}
