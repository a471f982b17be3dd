"""BM25 (dpr.retrieval.bm25): the French analyser, batched top-k in a documented order on ties
(score descending, then corpus row), its scores equal to the per-passage scores the fusions
read, and the index reused while its fingerprint matches the passages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from dpr.retrieval.bm25 import SETTINGS_FILE, BM25Retriever, BM25Settings, top_k_of

# 30 passages of 3 shapes: every passage of a shape ties with the others of that shape
TIED_TEXTS = [("Le chat dort dans la maison.", "Le chien court dans le jardin du voisin.",
               "La pluie tombe sur la ville.")[i % 3] for i in range(30)]
TIED_TITLES = ["Animaux"] * 30
QUESTIONS = ["Où dort le chat ?", "Le chien court-il ?", "chat chien pluie", "Rien du tout ?"]


@pytest.fixture(scope="module")
def tied() -> BM25Retriever:
    return BM25Retriever(TIED_TITLES, TIED_TEXTS)


def test_top_k_of_breaks_ties_by_corpus_order() -> None:
    ids, values = top_k_of(np.array([1.0, 3.0, 3.0, 0.0, 3.0]), 2)
    assert ids.tolist() == [1, 2] and values.tolist() == [3.0, 3.0]
    assert top_k_of(np.zeros(3), 5)[0].tolist() == [0, 1, 2]


def test_bm25_french_analyser_matches_inflected_forms() -> None:
    retriever = BM25Retriever(
        ["Chats", "Cuisine", "Montagne"],
        ["Les chats dorment beaucoup pendant la journée.",
         "La cuisine lyonnaise est réputée.",
         "Les montagnes des Alpes sont enneigées en hiver."])
    ids, scores = retriever.search(["Combien de temps dort un chat ?",
                                    "Où trouve-t-on de la neige en montagne ?"], 2)
    assert ids[:, 0].tolist() == [0, 2]
    assert (scores[:, 0] > 0).all()


@pytest.mark.parametrize("k", [1, 4, 10, 11, 25, 30, 50])
def test_top_k_orders_ties_by_corpus_row_at_every_depth(tied: BM25Retriever, k: int) -> None:
    # Given passages tied in threes of tens, and a mask excluding some of them
    tokens = tied.query_tokens(QUESTIONS)
    mask = np.array([i % 4 != 1 for i in range(30)], dtype=np.float32)
    for weight_mask in (None, mask):
        # When the top k is retrieved in one batch (and with two threads)
        rows, scores = tied.top_k(tokens, k, weight_mask=weight_mask)
        threaded = tied.top_k(tokens, k, weight_mask=weight_mask, n_threads=2)
        # Then each question's list is the exhaustive order: score descending, row ascending
        for q, query in enumerate(tokens):
            every = tied.scores(query, weight_mask)
            want = np.lexsort((np.arange(30), -every))[:k]  # a full sort, as the reference
            assert rows[q].tolist() == want.tolist(), (k, q)
            assert scores[q].tolist() == every[want].tolist()
        np.testing.assert_array_equal(threaded[0], rows)
    assert rows.shape == (len(QUESTIONS), min(k, 30)) and rows.dtype == np.int64


def test_search_ties_give_the_first_passages_and_unknown_words_score_zero(
        tied: BM25Retriever) -> None:
    rows, scores = tied.search(QUESTIONS, 3)
    assert rows[0].tolist() == [0, 3, 6]  # the cat passages, first ones first
    assert rows[1].tolist() == [1, 4, 7]
    assert rows[3].tolist() == [0, 1, 2] and scores[3].tolist() == [0.0, 0.0, 0.0]


def test_search_scores_are_the_per_passage_scores_the_fusions_read() -> None:
    titles = [f"Titre {i}" for i in range(12)]
    texts = [f"Le chat {'dort ' * (i % 4)}dans la maison {'bleue ' * (i % 3)}." for i in range(12)]
    bm25 = BM25Retriever(titles, texts, settings=BM25Settings(k1=1.2, b=0.6))
    rows, scores = bm25.search(QUESTIONS[:2], 12)
    for q, tokens in enumerate(bm25.query_tokens(QUESTIONS[:2])):
        np.testing.assert_array_equal(bm25.scores(tokens)[rows[q]], scores[q])
        assert sorted(rows[q].tolist()) == list(range(12))


def test_load_or_build_reuses_the_index_only_for_the_same_passages_and_settings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "bm25_index"
    settings = BM25Settings()
    first, reused = BM25Retriever.load_or_build(folder, TIED_TITLES, TIED_TEXTS,
                                                settings=settings)
    assert not reused and (folder / SETTINGS_FILE).is_file()
    # Given the same passages and settings, the saved index is reused, memory-mapped
    again, reused = BM25Retriever.load_or_build(folder, TIED_TITLES, TIED_TEXTS,
                                                settings=settings)
    assert reused and isinstance(again.index.scores["data"], np.memmap)
    np.testing.assert_array_equal(again.search(QUESTIONS, 5)[0], first.search(QUESTIONS, 5)[0])
    # A changed passage, a changed setting or a damaged folder: rebuilt and saved again
    changed = [*TIED_TEXTS[:-1], "Autre chose."]
    assert not BM25Retriever.load_or_build(folder, TIED_TITLES, changed, settings=settings)[1]
    assert not BM25Retriever.load_or_build(folder, TIED_TITLES, changed,
                                           settings=BM25Settings(k1=1.0))[1]
    saved = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    assert saved["k1"] == 1.0 and saved["size"] == 30
    for name in ("data.csc.index.npy",):
        (folder / name).unlink()
    with caplog.at_level(logging.WARNING):
        rebuilt, reused = BM25Retriever.load_or_build(folder, TIED_TITLES, changed,
                                                      settings=BM25Settings(k1=1.0))
    assert not reused and "cannot load a saved BM25 index" in caplog.text
    assert (folder / "data.csc.index.npy").is_file()
