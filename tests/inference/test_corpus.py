"""The one corpus encoder (dpr.inference.corpus) on passages held in memory, with a stand-in
model: every passage encoded once, in the batches of one pass over the corpus, and the chunks
of any number of workers read back as one worker's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dpr.data.recipe import SORT_WINDOW_BATCHES
from dpr.data.records import Passage
from dpr.inference.chunks import Layout
from dpr.inference.corpus import encode_corpus, read_chunks

PASSAGES = [Passage(f"T{i}", "x" * (1 + i % 7), f"p{i}") for i in range(23)]


class LengthModel:
    """Encodes a passage as [len(text), row of its call]; records each call's texts."""

    batch_size, dim = 2, 2

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode_passages(self, pairs):
        self.calls.append([text for _, text in pairs])
        return np.array([[len(text), i] for i, (_, text) in enumerate(pairs)], np.float32)


def _encode(tmp_path: Path, chunk_size: int, workers: int) -> tuple[np.ndarray, LengthModel]:
    model, prefix = LengthModel(), str(tmp_path / f"w{workers}" / "emb")
    layout = Layout(len(PASSAGES), chunk_size=chunk_size)
    for worker in range(workers):
        encode_corpus(model, PASSAGES, prefix, layout, manifest={}, worker=worker,
                      workers=workers, progress=False)
    return read_chunks(prefix, layout), model


@pytest.mark.parametrize("chunk_size", [4, 5, 23, 100])
def test_in_memory_passages_give_the_same_chunks_whatever_the_workers(
        tmp_path: Path, chunk_size: int) -> None:
    # Given the passages encoded by one worker, then by 2 and by 3 sharing the chunks
    one, model = _encode(tmp_path, chunk_size, 1)
    # Then every passage was encoded once, in corpus order, and the vectors are the same
    assert sorted(t for call in model.calls for t in call) == sorted(p.text for p in PASSAGES)
    assert one[:, 0].tolist() == [len(p.text) for p in PASSAGES]
    for workers in (2, 3):
        np.testing.assert_array_equal(_encode(tmp_path, chunk_size, workers)[0], one)


def test_a_chunk_of_one_window_is_encoded_in_one_call(tmp_path: Path) -> None:
    # Given chunks of batch_size x SORT_WINDOW_BATCHES passages (one length-sorted window)
    window = LengthModel.batch_size * SORT_WINDOW_BATCHES
    passages = [Passage("T", "x" * (1 + i % 5), f"p{i}") for i in range(2 * window + 3)]
    model, prefix = LengthModel(), str(tmp_path / "emb")
    layout = Layout(len(passages), chunk_size=window)
    # When they are encoded
    encode_corpus(model, passages, prefix, layout, manifest={}, progress=False)
    # Then each window is one call, as in one call over the whole corpus
    assert [len(call) for call in model.calls] == [window, window, 3]
    assert read_chunks(prefix, layout).shape == (len(passages), 2)
