"""BM25 over passages with bm25s: the one BM25 of the project (data_prep's hard negatives and
the evaluation's runs and fusions). Text processing: docs/DATA_PREP.md, step 6; the saved,
memory-mapped folder and its reuse by fingerprint: docs/SCALE.md, section 4. Top-k keeps each
question's k best by score, then corpus row (``top_k_of`` says why not bm25s' ``retrieve``); a
question without an indexed term gets the first passages, with score 0.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from tqdm.auto import tqdm

from dpr.retrieval.run import Run
from dpr.utils.errors import InputError, UsageError
from dpr.utils.io import staged_folder

logger = logging.getLogger(__name__)

# language code -> (PyStemmer Snowball algorithm, bm25s built-in stop word list)
LANGUAGES = {
    "fr": ("french", "fr"), "en": ("english", "en"), "de": ("german", "de"),
    "es": ("spanish", "es"), "it": ("italian", "it"), "pt": ("portuguese", "pt"),
    "nl": ("dutch", "nl"),
}
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")  # bm25s' variants
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
        if self.method not in METHODS:
            raise UsageError(f"--bm25_method must be one of {', '.join(METHODS)}, got "
                             f"{self.method!r}")

    def describe(self) -> dict[str, object]:
        """Settings plus the stemmer, stop word list and library version (for reports)."""
        stemmer, stopwords = LANGUAGES[self.language]
        return {
            **asdict(self), "stemmer": f"snowball-{stemmer}", "stopwords": f"bm25s:{stopwords}",
            "token_pattern": r"(?u)\b\w\w+\b", "indexed_text": "title + ' ' + text (NFC)",
            "bm25s_version": bm25s.__version__,
        }


def _tokenize(texts: Sequence[str], language: str, *, ids: bool, show_progress: bool):
    """bm25s tokens of NFC texts: ids + vocabulary (``ids``, for indexing) or stemmed strings."""
    stemmer_name, stopwords = LANGUAGES[language]
    return bm25s.tokenize([unicodedata.normalize("NFC", text) for text in texts],
                          stopwords=stopwords, stemmer=Stemmer.Stemmer(stemmer_name).stemWords,
                          return_ids=ids, show_progress=show_progress)


def passage_text(title: str, text: str) -> str:
    """The text BM25 indexes for a passage: its title and its text."""
    return f"{title} {text}"


def fingerprint(indexed: Sequence[str], settings: BM25Settings) -> str:
    """SHA-256 of the settings and of every indexed text, in order."""
    digest = hashlib.sha256(json.dumps(settings.describe(), sort_keys=True).encode("utf-8"))
    for text in indexed:
        digest.update(f"{len(text)}\t{text}\n".encode())
    return digest.hexdigest()


def top_k_of(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest scores, best first, ties by lower index.

    Written here rather than taken from bm25s' ``BM25.retrieve``: its numpy selection,
    ``argpartition(scores, -k)``, cuts ties anywhere and took 7 times as long per question
    on the mostly-zero scores of a 200k-passage corpus (the whole top-100 search ran at 148
    questions/s against 1,831); its numba backend compiles for 14 s in each process.
    """
    k = min(k, len(scores))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    kth = scores[np.argpartition(-scores, k - 1)[k - 1]]  # the k-th largest score
    candidates = np.flatnonzero(scores >= kth)  # ascending rows
    values = scores[candidates]
    above = candidates[values > kth]  # fewer than k, all kept, sorted below
    above = above[np.lexsort((above, -scores[above]))]
    chosen = np.concatenate([above, candidates[values == kth][:k - len(above)]])
    return chosen.astype(np.int64), scores[chosen]


class BM25Retriever:
    """A BM25 index over passages (titles and texts in corpus order), searched by question."""

    def __init__(self, titles: Sequence[str], texts: Sequence[str], *,
                 settings: BM25Settings = BM25Settings(), show_progress: bool = False) -> None:
        if len(titles) != len(texts):
            raise ValueError("titles and texts differ in length")
        indexed = [passage_text(t, x) for t, x in zip(titles, texts)]
        logger.info("Building the BM25 index of %d passages: %s", len(texts), asdict(settings))
        tokens = _tokenize(indexed, settings.language, ids=True, show_progress=show_progress)
        index = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
        index.index(tokens, show_progress=show_progress)
        self._attach(index, settings=settings, size=len(texts),
                     fingerprint=fingerprint(indexed, settings), show_progress=show_progress)

    def _attach(self, index: bm25s.BM25, *, settings: BM25Settings, size: int,
                fingerprint: str | None, show_progress: bool) -> None:
        self.index, self.settings, self.size = index, settings, size
        self.fingerprint, self.show_progress = fingerprint, show_progress

    def save(self, folder: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Writes the index into a folder (complete or not at all): bm25s' score matrix,
        vocabulary and parameters, and `bm25_settings.json` (settings, size, fingerprint);
        FileExistsError when the folder exists and `overwrite` is false."""
        with staged_folder(folder, overwrite=overwrite) as staging:
            self.index.save(str(staging), show_progress=False)
            saved = {**self.settings.describe(), "size": self.size,
                     "fingerprint": self.fingerprint}
            (staging / SETTINGS_FILE).write_text(json.dumps(saved, indent=2), encoding="utf-8")
        logger.info("Saved the BM25 index of %d passages to %s", self.size, folder)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], *, mmap: bool = True,
             show_progress: bool = False) -> BM25Retriever:
        """Reads an index written by `save`, memory-mapped unless `mmap` is false; InputError
        naming the folder when a file is missing or unreadable."""
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
                    fingerprint=saved.get("fingerprint"), show_progress=show_progress)
        return out

    @classmethod
    def load_or_build(cls, folder: str | os.PathLike[str], titles: Sequence[str],
                      texts: Sequence[str], *, settings: BM25Settings,
                      show_progress: bool = False) -> tuple[BM25Retriever, bool]:
        """The index saved in `folder` when its fingerprint is that of these passages and
        settings, else a new one saved there (replacing what was there), and whether it was
        reused."""
        expected = fingerprint([passage_text(t, x) for t, x in zip(titles, texts)], settings)
        try:
            saved = json.loads((Path(folder) / SETTINGS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        if (saved.get("fingerprint"), saved.get("size")) == (expected, len(texts)):
            try:
                logger.info("Reusing the BM25 index in %s (same passages and settings)", folder)
                return cls.load(folder, show_progress=show_progress), True
            except InputError as err:
                logger.warning("%s; rebuilding it", err)
        built = cls(titles, texts, settings=settings, show_progress=show_progress)
        built.save(folder, overwrite=True)
        return built, False

    def query_tokens(self, questions: Sequence[str]) -> list[list[str]]:
        """Stemmed question tokens restricted to the index vocabulary (others score nothing)."""
        vocab = self.index.vocab_dict
        tokens = _tokenize(list(questions), self.settings.language, ids=False,
                           show_progress=False)
        return [[t for t in query if t in vocab] for query in tokens]

    def scores(self, tokens: list[str], weight_mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every passage for one tokenised question, float32 [N] (times
        `weight_mask` [N] when given)."""
        if not tokens:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.index.get_scores(tokens, weight_mask=weight_mask),
                          dtype=np.float32)

    def top_k(self, tokens: Sequence[list[str]], k: int, *, weight_mask: np.ndarray | None = None,
              n_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passages (k at most the corpus size) of tokenised questions, by score then
        corpus row (:func:`top_k_of`): rows int64 and scores float32 [Q × k], best first.

        Args:
            weight_mask: Score multiplier per passage [N] (0: excluded, its score is 0).
            n_threads: Threads scoring questions at once (0: in the calling thread).
        """
        k = min(k, self.size)

        def one(query: list[str]) -> tuple[np.ndarray, np.ndarray]:
            return top_k_of(self.scores(query, weight_mask), k)

        with ThreadPoolExecutor(max(n_threads, 1)) as pool:
            found = list(tqdm(pool.map(one, tokens) if n_threads > 0 else map(one, tokens),
                              total=len(tokens), desc="BM25 search", unit=" questions",
                              disable=not self.show_progress))
        rows = np.array([r for r, _ in found], np.int64).reshape(len(tokens), k)
        return rows, np.array([v for _, v in found], np.float32).reshape(len(tokens), k)

    def search(self, questions: Sequence[str], k: int, *, n_threads: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passages per question (:meth:`top_k` of their :meth:`query_tokens`): rows and
        scores [Q × min(k, N)], best first."""
        return self.top_k(self.query_tokens(questions), k, n_threads=n_threads)

    def run(self, questions: Sequence[str], k: int, *, seconds: float = 0.0) -> Run:
        """The ``bm25`` run of the top ``k`` of every question (``seconds``: time already
        spent, e.g. indexing)."""
        start = time.perf_counter()
        rows, scores = self.search(questions, k)
        return Run.from_arrays("bm25", rows, scores,
                               seconds=seconds + time.perf_counter() - start,
                               metadata={"bm25": self.settings.describe()})
