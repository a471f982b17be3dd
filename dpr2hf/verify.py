"""Parity check of exported folders against the bi-encoder they came from.

Each folder is reloaded the way a user would load it (transformers `AutoModel`/`AutoTokenizer`,
sentence-transformers, Hugging Face's DPR classes) and fed French questions and (title, text)
passages prepared with the documented recipe (`prepare_question`, `prepare_passage`). The
token ids must equal those of the training tokenizer and the vectors must match the bi-encoder's
own (DPR's training path: `Tensorizer` + `Encoder`) within a tolerance.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    AutoTokenizer,
    DPRContextEncoder,
    DPRQuestionEncoder,
    PreTrainedTokenizerBase,
)

from dpr.data.tensorizer import Tensorizer, strip_question_mark
from dpr.evaluation.dense_models import (  # noqa: F401  (Recipe is part of this API)
    PROJECTION_FILE,
    Recipe,
    prepare_passage,
    prepare_question,
)
from dpr.models.biencoder import BiEncoder
from dpr.utils.errors import DprError

logger = logging.getLogger(__name__)

_LONG = ("La cathédrale Notre-Dame de Paris, chef-d'œuvre de l'art gothique élevé sur l'île de "
         "la Cité à partir de 1163, a été gravement endommagée par l'incendie du 15 avril 2019 ; "
         "sa flèche, œuvre de Viollet-le-Duc, s'est effondrée. ")
VERIFY_QUESTIONS: tuple[str, ...] = (
    "Quel est le plus haut sommet des Alpes françaises ?",
    "Où se trouve l'Élysée?",
    "Qui a écrit « Les Misérables » ?",
    "été",
    "POURQUOI L'ÉCOLE NORMALE SUPÉRIEURE EST-ELLE CÉLÈBRE",
    "Pourquoi " + _LONG * 12 + "?",
)
VERIFY_PASSAGES: tuple[tuple[str, str], ...] = (
    ("Mont Blanc", "Le mont Blanc est le point culminant de la chaîne des Alpes, à 4 805 mètres."),
    ("", "  Un passage sans titre : ça marche aussi, même à Noël.  "),
    ("Victor Hugo", "Victor Hugo, né à Besançon en 1802, a écrit Les Misérables (1862)."),
    ("Notre-Dame de Paris", _LONG * 12),
    ("Œuvres complètes de Molière, tome " + "IV, " * 200, "Très court."),
    ("Île-de-France", "Région CAPITALE ; Paris, Versailles, Saint-Denis. Ça coûte 12 € !"),
)


class VerificationError(DprError):
    """An exported folder that does not reproduce the bi-encoder."""


def _tokenize(tokenizer: PreTrainedTokenizerBase, items: Sequence[str | tuple[str, str]],
              recipe: Recipe) -> list[list[int]]:
    out = []
    for item in items:
        args = (item,) if isinstance(item, str) else ((item[1],) if not item[0] else item)
        out.append(tokenizer(*args, truncation="longest_first", max_length=recipe.max_length)
                   ["input_ids"])
    return out


def _prepared(recipe: Recipe) -> dict[str, list]:
    return {"question": [prepare_question(q, recipe) for q in VERIFY_QUESTIONS],
            "ctx": [prepare_passage(t, x, recipe) for t, x in VERIFY_PASSAGES]}


def reference(biencoder: BiEncoder, tensorizer: Tensorizer) -> dict[str, tuple]:
    """The training path's ids and vectors per side: {"question"|"ctx": (ids lists, [N × D])}."""
    questions = [strip_question_mark(q) for q in VERIFY_QUESTIONS]
    q_ids = tensorizer.encode(questions)
    c_ids = tensorizer.encode([x for _, x in VERIFY_PASSAGES], [t for t, _ in VERIFY_PASSAGES])
    biencoder.eval()
    with torch.no_grad():
        q_vec = biencoder.encode_questions(*tensorizer.pad(q_ids))
        c_vec = biencoder.encode_contexts(*tensorizer.pad(c_ids))
    return {"question": (q_ids, q_vec), "ctx": (c_ids, c_vec)}


def _first_token_vectors(model, ids: list[list[int]], pad_id: int) -> torch.Tensor:
    width = max(len(s) for s in ids)
    batch = torch.full((len(ids), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(ids):
        batch[row, : len(seq)] = torch.as_tensor(seq)
    with torch.no_grad():
        out = model(input_ids=batch, attention_mask=(batch != pad_id).long())
    return out


def _check_ids(name: str, got: list[list[int]], want: list[list[int]]) -> None:
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if list(a) != list(b):
            raise VerificationError(f"{name}: tokenizer ids differ from training for input {i}: "
                                    f"{list(a)[:12]}... vs {list(b)[:12]}...")


def _max_diff(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: float) -> float:
    if got.shape != want.shape:
        raise VerificationError(f"{name}: vector shape {tuple(got.shape)} != {tuple(want.shape)}")
    diff = float((got.float() - want.float()).abs().max())
    logger.info("%s: max |difference| = %.3g", name, diff)
    if not diff <= tolerance:
        raise VerificationError(f"{name}: vectors differ from the bi-encoder's by {diff:.3g} "
                                f"(tolerance {tolerance:g})")
    return diff


def verify_hf_folder(folder: Path, side: str, ref: tuple, *, recipe: Recipe,
                     tolerance: float) -> float:
    """AutoTokenizer + AutoModel (+ encode_proj.safetensors): first-token vectors vs `ref`."""
    want_ids, want = ref
    tokenizer = AutoTokenizer.from_pretrained(folder)
    items = _prepared(recipe)[side]
    ids = _tokenize(tokenizer, items, recipe)
    _check_ids(f"{folder.name} (fast tokenizer)", ids, want_ids)
    if (folder / "sentencepiece.bpe.model").is_file():
        slow = AutoTokenizer.from_pretrained(folder, use_fast=False)
        _check_ids(f"{folder.name} (SentencePiece tokenizer)", _tokenize(slow, items, recipe),
                   want_ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModel.from_pretrained(folder).eval()
    vectors = _first_token_vectors(model, ids, tokenizer.pad_token_id).last_hidden_state[:, 0]
    if (folder / PROJECTION_FILE).is_file():
        proj = load_file(folder / PROJECTION_FILE)
        vectors = torch.nn.functional.linear(vectors, proj["weight"], proj["bias"])
    return _max_diff(f"{folder.name} (transformers)", vectors, want, tolerance)


def verify_dpr_folder(folder: Path, side: str, ref: tuple, *, recipe: Recipe,
                      tolerance: float) -> float:
    """Hugging Face's DPRQuestionEncoder/DPRContextEncoder: `pooler_output` vs `ref`."""
    want_ids, want = ref
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = _tokenize(tokenizer, _prepared(recipe)[side], recipe)
    _check_ids(f"{folder.name} (tokenizer)", ids, want_ids)
    cls = DPRQuestionEncoder if side == "question" else DPRContextEncoder
    model = cls.from_pretrained(folder).eval()
    vectors = _first_token_vectors(model, ids, tokenizer.pad_token_id).pooler_output
    return _max_diff(f"{folder.name} ({cls.__name__})", vectors, want, tolerance)


def verify_sentence_transformers(folder: Path, side: str, ref: tuple, *, recipe: Recipe,
                                 tolerance: float) -> float | None:
    """SentenceTransformer(folder).encode on questions (without '?') and (title, text) pairs;
    lowercasing is left to sentence-transformers (`do_lower_case`). None if not installed."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        logger.warning("sentence-transformers is not installed: its configuration in %s was "
                       "not verified", folder)
        return None
    model = SentenceTransformer(str(folder), device="cpu")
    if side == "question":
        items = [strip_question_mark(q).strip() for q in VERIFY_QUESTIONS]
    else:
        items = [(t, x.strip()) if t else x.strip() for t, x in VERIFY_PASSAGES]
    vectors = torch.stack([torch.as_tensor(model.encode([item], convert_to_numpy=False,
                                                            show_progress_bar=False)[0])
                           for item in items])
    return _max_diff(f"{folder.name} (sentence-transformers)", vectors, ref[1], tolerance)
