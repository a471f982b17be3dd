"""Parity check of exported folders against the bi-encoder they came from: each folder
reloaded as users load it, its token ids equal to training's and its vectors within a tolerance
of the bi-encoder's (docs/DPR2HF.md, "Verification built in"); a reranker's `CrossEncoder`
folder likewise, its scores against the checkpoint's (`verify_cross_encoder`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import DPRContextEncoder, DPRQuestionEncoder

from dpr.data.recipe import encode_in_batches, pair_items, passage_items, question_items
from dpr.data.tensorizer import Tensorizer, export_tensorizer
from dpr.inference import Reranker, load_reranker
from dpr.models.biencoder import BiEncoder
from dpr.models.export import exported_params, load_exported_encoder
from dpr.recipe import Recipe
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

# Every check question with every check passage: what a reranker's export is checked on.
VERIFY_PAIRS: tuple[tuple[str, tuple[str, str]], ...] = tuple(
    (q, p) for q in VERIFY_QUESTIONS for p in VERIFY_PASSAGES)


class VerificationError(DprError):
    """An exported folder that does not reproduce the bi-encoder."""


def _items(side: str, recipe: Recipe) -> list:
    if side == "question":
        return question_items(VERIFY_QUESTIONS, recipe)
    return passage_items(VERIFY_PASSAGES, recipe)


def _vectors(encode_fn, tensorizer: Tensorizer, items: list, dim: int) -> torch.Tensor:
    """All check inputs encoded in one batch (`encode_in_batches`), as a tensor [N × D]."""
    return torch.from_numpy(encode_in_batches(encode_fn, tensorizer, items, dim=dim,
                                              batch_size=len(items)))


def reference(biencoder: BiEncoder, tensorizer: Tensorizer) -> dict[str, tuple]:
    """The training path's ids and vectors per side: {"question"|"ctx": (ids lists, [N × D])}."""
    biencoder.eval()
    out = {}
    dim = biencoder.question_model.out_size
    for side, encode in (("question", biencoder.encode_questions),
                         ("ctx", biencoder.encode_contexts)):
        items = _items(side, tensorizer.recipe)
        out[side] = (tensorizer.encode_items(items), _vectors(encode, tensorizer, items, dim))
    return out


def _check_ids(name: str, got: list[list[int]], want: list[list[int]]) -> None:
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        if list(a) != list(b):
            raise VerificationError(f"{name}: tokenizer ids differ from training for input {i}: "
                                    f"{list(a)[:12]}... vs {list(b)[:12]}...")


def _max_diff(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: float, *,
              what: str = "vectors differ from the bi-encoder's") -> float:
    if got.shape != want.shape:
        raise VerificationError(f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}")
    diff = float((got.float() - want.float()).abs().max())
    logger.info("%s: max |difference| = %.3g", name, diff)
    if not diff <= tolerance:
        raise VerificationError(f"{name}: {what} by {diff:.3g} (tolerance {tolerance:g})")
    return diff


def _folder_inputs(folder: Path, side: str, want_ids: list[list[int]], *,
                   use_fast: bool = True) -> tuple[Tensorizer, list]:
    """The folder's tokenizer and stored recipe applied to the check inputs; ids checked.

    Returns:
        The folder's tensorizer and the prepared inputs.
    """
    tensorizer = export_tensorizer(folder, exported_params(folder), use_fast=use_fast)
    items = _items(side, tensorizer.recipe)
    kind = "fast" if use_fast else "SentencePiece"
    _check_ids(f"{folder.name} ({kind} tokenizer)", tensorizer.encode_items(items), want_ids)
    return tensorizer, items


def verify_hf_folder(folder: Path, side: str, ref: tuple, *, tolerance: float) -> float:
    """The folder as every tool loads it (`load_exported_encoder`: AutoModel,
    `encode_proj.safetensors`, its `dpr` entry's pooling and normalisation) with its own
    tokenizer: vectors vs `ref`."""
    want_ids, want = ref
    tensorizer, items = _folder_inputs(folder, side, want_ids)
    if (folder / "sentencepiece.bpe.model").is_file():
        _folder_inputs(folder, side, want_ids, use_fast=False)
    vectors = _vectors(load_exported_encoder(folder), tensorizer, items, want.shape[1])
    return _max_diff(f"{folder.name} (transformers)", vectors, want, tolerance)


def verify_dpr_folder(folder: Path, side: str, ref: tuple, *, tolerance: float) -> float:
    """Hugging Face's DPRQuestionEncoder/DPRContextEncoder: `pooler_output` vs `ref`."""
    want_ids, want = ref
    tensorizer, items = _folder_inputs(folder, side, want_ids)
    cls = DPRQuestionEncoder if side == "question" else DPRContextEncoder
    model = cls.from_pretrained(folder).eval()
    vectors = _vectors(lambda ids, mask: model(input_ids=ids, attention_mask=mask.long()
                                               ).pooler_output, tensorizer, items, want.shape[1])
    return _max_diff(f"{folder.name} ({cls.__name__})", vectors, want, tolerance)


def verify_sentence_transformers(folder: Path, side: str, ref: tuple, *,
                                 tolerance: float) -> float:
    """`SentenceTransformer(folder).encode` on questions (without '?') and (title, text)
    pairs (`f"{title} {text}"` strings for a joined passage format), as a user calls it: the
    prefix is its default prompt, the lowercasing its tokenizer's."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    stored = Recipe.from_params(exported_params(folder))
    items = _items(side, Recipe(passage_format=stored.passage_format))
    vectors = torch.as_tensor(model.encode(items, batch_size=len(items),
                                           show_progress_bar=False))
    return _max_diff(f"{folder.name} (sentence-transformers)", vectors, ref[1], tolerance)


def cross_encoder_pair(question: str, passage: tuple[str, str]) -> tuple[str, str]:
    """A (question, `(title, text)`) pair as a `CrossEncoder` user passes it (the model card's
    snippet): the question stripped, the passage `f"{title} {text}"` (the text stripped, alone
    when untitled); its lower-casing is the saved tokenizer's."""
    title, text = passage
    text = text.strip()
    return question.strip(), f"{title} {text}" if title else text


def verify_cross_encoder(folder: Path, reranker: Reranker, *,
                         tolerance: float) -> dict[str, float]:
    """`CrossEncoder(folder).predict` on `VERIFY_PAIRS` as a user passes them
    (`cross_encoder_pair`), its token ids equal to training's and no `token_type_ids`, then
    `dpr.inference.load_reranker(folder)`: scores vs the checkpoint's `reranker.score_pairs`.

    Returns:
        The largest absolute difference of each way of loading the folder.
    """
    from sentence_transformers import CrossEncoder

    want = torch.from_numpy(reranker.score_pairs(VERIFY_PAIRS))
    model = CrossEncoder(str(folder), device="cpu", local_files_only=True)
    pairs = [cross_encoder_pair(q, p) for q, p in VERIFY_PAIRS]
    features = model.preprocess(pairs)
    if "token_type_ids" in features:
        raise VerificationError(f"{folder.name}: its tokenizer returns token_type_ids (training "
                                "fed none)")
    got_ids = [row[mask.bool()].tolist() for row, mask in
               zip(features["input_ids"], features["attention_mask"], strict=True)]
    _check_ids(f"{folder.name} (CrossEncoder tokenizer)", got_ids, reranker.tensorizer.encode_items(
        pair_items(VERIFY_PAIRS, reranker.tensorizer.recipe)))
    scores = torch.as_tensor(model.predict(pairs, batch_size=len(pairs),
                                           show_progress_bar=False))
    loaded = torch.from_numpy(load_reranker(folder).score_pairs(VERIFY_PAIRS))
    what = "scores differ from the checkpoint's"
    return {"sentence-transformers CrossEncoder": _max_diff(
                f"{folder.name} (CrossEncoder)", scores, want, tolerance, what=what),
            "dpr.inference.load_reranker": _max_diff(
                f"{folder.name} (load_reranker)", loaded, want, tolerance, what=what)}
