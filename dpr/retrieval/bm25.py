"""BM25 over passages with bm25s: French (or other Snowball) analyser shared by data_prep and
the evaluation.

Text processing: NFC normalisation, lowercase, bm25s' regex tokens ``(?u)\\b\\w\\w+\\b``, the
language's bm25s stop word list removed, PyStemmer Snowball stemming. A passage is indexed as
``title + " " + text``.

An index can be saved (``BM25Retriever.save``: bm25s' files plus ``bm25_settings.json``,
written through a staging folder) and loaded memory-mapped (``BM25Retriever.load``), so a
corpus of millions of passages is tokenised and indexed once and searched without reading its
score matrix into memory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import staged_folder

logger = logging.getLogger(__name__)

# language code -> (PyStemmer Snowball algorithm, bm25s built-in stop word list)
LANGUAGES = {
    "fr": ("french", "fr"), "en": ("english", "en"), "de": ("german", "de"),
    "es": ("spanish", "es"), "it": ("italian", "it"), "pt": ("portuguese", "pt"),
    "nl": ("dutch", "nl"),
}
SETTINGS_FILE = "bm25_settings.json"


@dataclass(frozen=True)
class BM25Settings:
    """BM25 variant and text processing."""

    language: str = "fr"
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"

    def __post_init__(self) -> None:
        if not 0.0 <= self.k1 < math.inf:
            raise UsageError(f"--bm25_k1 must be a finite number >= 0, got {self.k1}")
        if not 0.0 <= self.b <= 1.0:
            raise UsageError(f"--bm25_b must be in [0, 1], got {self.b}")

    def describe(self) -> dict[str, object]:
        """Settings plus the stemmer, stop word list and library version (for reports)."""
        stemmer, stopwords = LANGUAGES[self.language]
        return {
            **asdict(self), "stemmer": f"snowball-{stemmer}", "stopwords": f"bm25s:{stopwords}",
            "token_pattern": r"(?u)\b\w\w+\b", "indexed_text": "title + ' ' + text (NFC)",
            "bm25s_version": bm25s.__version__,
        }


class BM25Tokenizer:
    """NFC, lowercase, bm25s regex tokens, stop words removed, Snowball-stemmed."""

    def __init__(self, language: str) -> None:
        """Creates the tokenizer for a language code of :data:`LANGUAGES`."""
        stemmer_name, self.stopwords = LANGUAGES[language]
        self.stemmer = Stemmer.Stemmer(stemmer_name)

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        return [unicodedata.normalize("NFC", text) for text in texts]

    def corpus(self, texts: Sequence[str], *, show_progress: bool) -> bm25s.tokenization.Tokenized:
        """Tokenises documents into ids + vocabulary (for indexing)."""
        return bm25s.tokenize(
            self._prepare(texts), stopwords=self.stopwords, stemmer=self.stemmer.stemWords,
            return_ids=True, show_progress=show_progress,
        )

    def queries(self, texts: Sequence[str], *, show_progress: bool) -> list[list[str]]:
        """Tokenises queries into stemmed token strings."""
        return bm25s.tokenize(
            self._prepare(texts), stopwords=self.stopwords, stemmer=self.stemmer.stemWords,
            return_ids=False, show_progress=show_progress,
        )


def passage_text(title: str, text: str) -> str:
    """The text BM25 indexes for a passage: its title and its text."""
    return f"{title} {text}"


class BM25Retriever:
    """An in-memory BM25 index over a list of passages, searched by question.

    Args:
        titles: Passage titles, in corpus order.
        texts: Passage texts, same order.
        settings: BM25 variant, parameters and language.
        show_progress: Show bm25s progress bars.
    """

    def __init__(self, titles: Sequence[str], texts: Sequence[str], *,
                 settings: BM25Settings = BM25Settings(), show_progress: bool = False) -> None:
        if len(titles) != len(texts):
            raise ValueError("titles and texts differ in length")
        tokenizer = BM25Tokenizer(settings.language)
        tokens = tokenizer.corpus([passage_text(t, x) for t, x in zip(titles, texts)],
                                  show_progress=show_progress)
        index = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
        index.index(tokens, show_progress=show_progress)
        self._attach(index, settings=settings, size=len(texts), show_progress=show_progress)

    def _attach(self, index: bm25s.BM25, *, settings: BM25Settings, size: int,
                show_progress: bool) -> None:
        self.index, self.settings, self.size = index, settings, size
        self.tokenizer = BM25Tokenizer(settings.language)
        self.show_progress = show_progress

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Writes the index into a folder (complete or not at all): bm25s' score matrix,
        vocabulary and parameters, and `bm25_settings.json` (our settings and corpus size).

        Raises:
            FileExistsError: When the folder exists and `overwrite` is false.
        """
        with staged_folder(folder, overwrite=overwrite) as staging:
            self.index.save(str(staging), show_progress=False)
            saved = {**self.settings.describe(), "size": self.size}
            (staging / SETTINGS_FILE).write_text(json.dumps(saved, indent=2), encoding="utf-8")
        logger.info("Saved the BM25 index of %d passages to %s", self.size, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, mmap: bool = True,
             show_progress: bool = False) -> BM25Retriever:
        """Reads an index written by `save`, memory-mapped unless `mmap` is false.

        Raises:
            InputError: Naming the folder when a file is missing or unreadable.
        """
        try:
            saved = json.loads((Path(folder) / SETTINGS_FILE).read_text(encoding="utf-8"))
            settings = BM25Settings(language=saved["language"], k1=saved["k1"], b=saved["b"],
                                    method=saved["method"])
            index = bm25s.BM25.load(os.fspath(folder), mmap=mmap, show_progress=False)
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{folder}: cannot load a saved BM25 index: {err}") from err
        logger.info("Loaded the BM25 index of %d passages from %s (memory-mapped: %s): %s",
                    saved["size"], folder, mmap, asdict(settings))
        out = cls.__new__(cls)
        out._attach(index, settings=settings, size=int(saved["size"]),
                    show_progress=show_progress)
        return out

    def query_tokens(self, questions: Sequence[str]) -> list[list[str]]:
        """Stemmed question tokens restricted to the index vocabulary (others score nothing)."""
        vocab = self.index.vocab_dict
        tokens = self.tokenizer.queries(list(questions), show_progress=False)
        return [[t for t in query if t in vocab] for query in tokens]

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every passage for one tokenised question, float32 [N]."""
        if not tokens:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.index.get_scores(tokens), dtype=np.float32)

    def search(self, questions: Sequence[str], top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passages per question by BM25 score.

        Ties are broken by corpus order; a question with no indexed term gets the first
        passages with score 0.

        Returns:
            Passage indices [Q × k] and scores [Q × k], best first, with k = min(top_k, N).
        """
        k = min(top_k, self.size)
        rows = np.zeros((len(questions), k), dtype=np.int64)
        scores = np.zeros((len(questions), k), dtype=np.float32)
        from tqdm import tqdm

        for i, tokens in enumerate(tqdm(self.query_tokens(questions), desc="BM25 search",
                                        unit=" questions", disable=not self.show_progress)):
            all_scores = self.scores(tokens)
            rows[i], scores[i] = top_k_of(all_scores, k)
        return rows, scores


def top_k_of(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest scores, best first, ties by lower index."""
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    part = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # argpartition may cut inside a tie: take every index tied with the k-th value, then sort
    threshold = scores[part].min()
    candidates = np.flatnonzero(scores >= threshold)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    chosen = candidates[order]
    return chosen.astype(np.int64), scores[chosen]
