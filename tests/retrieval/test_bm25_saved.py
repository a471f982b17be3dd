"""A BM25 index saved and loaded memory-mapped searches exactly as the one built in memory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dpr.retrieval.bm25 import BM25Retriever, BM25Settings
from dpr.utils.errors import InputError

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "fr_sample_squad.json"


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], list[str], list[str]]:
    """Titles and texts of the French sample's paragraphs, and its questions."""
    articles = json.loads(SAMPLE.read_text(encoding="utf-8"))["data"]
    paragraphs = [(a["title"], p) for a in articles for p in a["paragraphs"]]
    questions = [qa["question"] for _, p in paragraphs for qa in p["qas"]]
    return [t for t, _ in paragraphs], [p["context"] for _, p in paragraphs], questions


def test_bm25_saved_and_memory_mapped_gives_the_same_results(
        tmp_path: Path, sample: tuple[list[str], list[str], list[str]]) -> None:
    # Given a BM25 index built in memory with non-default parameters
    titles, texts, questions = sample
    built = BM25Retriever(titles, texts, settings=BM25Settings(k1=1.2, b=0.6))
    # When it is saved and loaded back memory-mapped, and read into memory
    built.save(tmp_path / "bm25")
    mapped = BM25Retriever.load(tmp_path / "bm25")
    loaded = BM25Retriever.load(tmp_path / "bm25", mmap=False)
    # Then every question gets the same passages and scores, bit for bit
    rows, scores = built.search(questions, 5)
    for other in (mapped, loaded):
        other_rows, other_scores = other.search(questions, 5)
        np.testing.assert_array_equal(other_rows, rows)
        np.testing.assert_array_equal(other_scores, scores)
    # And the loaded index keeps the settings and reads its scores from the files
    assert (mapped.settings, mapped.size) == (built.settings, len(texts))
    assert isinstance(mapped.index.scores["data"], np.memmap)


def test_bm25_load_names_the_folder_when_nothing_was_saved(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing: cannot load a saved BM25 index"):
        BM25Retriever.load(tmp_path / "missing")
