"""The corpus a mining run searches (:func:`dpr.retrieval.mining.mine`): its passages
encoded over the processes of a distributed job and gathered on every process
(:func:`encode_corpus`), and :class:`MiningCorpus`, the passages with their vectors and
lookups by id and by text."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dpr.data.answers import contains_answer, prepare_text
from dpr.data.records import Passage
from dpr.utils.dist import DistContext, all_gather_variable

GATHER_CHUNK_ROWS = 16384


def shard_range(total: int, rank: int, world_size: int, batch_size: int) -> tuple[int, int]:
    """Rows [start, end) a process encodes: contiguous, cut on multiples of ``batch_size``.

    Cutting on batch boundaries makes every process encode exactly the batches a single
    process would, so the vectors (and the mined file) do not depend on the process count.
    """
    batches = -(-total // batch_size)
    per_rank = -(-batches // world_size) * batch_size
    return min(rank * per_rank, total), min((rank + 1) * per_rank, total)


def encode_corpus(encode: Callable[[Sequence[tuple[str, str]]], np.ndarray],
                  passages: Sequence[tuple[str, str]], *, ctx: DistContext,
                  batch_size: int) -> np.ndarray:
    """Encodes every passage, each process its contiguous share, and gathers the vectors.

    Args:
        encode: ``model.encode_passages`` (``(title, text)`` passages → vectors).
        passages: ``(title, text)`` passages, corpus order.
        ctx: Process context (one process: no communication).
        batch_size: The model's batch size (shares are cut on its multiples).

    Returns:
        float32 vectors [N × D] of the whole corpus, in corpus order, on every process.
    """
    start, end = shard_range(len(passages), ctx.rank, ctx.world_size, batch_size)
    local = np.asarray(encode(passages[start:end]), dtype=np.float32)
    if not ctx.distributed:
        return local
    dims = all_gather_variable(torch.tensor([local.shape[1] if len(local) else 0],
                                            device=ctx.device), ctx)
    dim = max(int(d[0]) for d in dims)
    local = local.reshape(len(local), dim) if len(local) else np.zeros((0, dim), np.float32)
    largest = shard_range(len(passages), 0, ctx.world_size, batch_size)[1]
    parts: list[list[np.ndarray]] = [[] for _ in range(ctx.world_size)]
    for offset in range(0, largest, GATHER_CHUNK_ROWS):
        chunk = torch.from_numpy(local[offset:offset + GATHER_CHUNK_ROWS]).to(ctx.device)
        for rank, got in enumerate(all_gather_variable(chunk, ctx)):
            parts[rank].append(got.cpu().numpy())
    vectors = np.concatenate([a for rank_parts in parts for a in rank_parts])
    if len(vectors) != len(passages):
        raise RuntimeError(f"gathered {len(vectors)} vectors for {len(passages)} passages")
    return vectors


class MiningCorpus:
    """The passages with their vectors and lookups by id and by stripped text."""

    def __init__(self, passages: Sequence[Passage], vectors: np.ndarray) -> None:
        self.passages, self.vectors = passages, vectors
        self.row_of_id = {p.passage_id: row for row, p in enumerate(passages)}
        self.rows_of_text: dict[str, list[int]] = {}
        for row, passage in enumerate(passages):
            self.rows_of_text.setdefault(passage.text.strip(), []).append(row)
        self._prepared: dict[tuple[int, str], str] = {}

    def contains(self, row: int, answers: Sequence[str], match: str) -> bool:
        """Whether passage `row` contains one of the prepared answers
        (:func:`~dpr.data.answers.prepare_answers`); each passage is prepared once, when first
        judged."""
        if (row, match) not in self._prepared:
            self._prepared[row, match] = prepare_text(self.passages[row].text, match)
        return contains_answer(answers, self._prepared[row, match], match)

    def gold_rows(self, positives: Sequence[Mapping[str, Any]]) -> set[int]:
        """Rows that are one of the positives, by passage id or identical (stripped) text."""
        rows: set[int] = set()
        for ctx in positives:
            rows.update(self.rows_of_text.get(str(ctx.get("text", "")).strip(), ()))
            if str(ctx.get("passage_id")) in self.row_of_id:
                rows.add(self.row_of_id[str(ctx["passage_id"])])
        return rows

    def row_for(self, ctx: Mapping[str, Any]) -> int | None:
        """The corpus row of a passage dict with the same id and text, else None."""
        row = self.row_of_id.get(str(ctx.get("passage_id")))
        same = row is not None and self.passages[row].text.strip() == str(ctx["text"]).strip()
        return row if same else None

    def vectors_for(self, ctxs: Sequence[Mapping[str, Any]], model: Any) -> np.ndarray:
        """Model vectors of passage dicts: the corpus vector when the passage is in the
        corpus, else encoded now (in one call)."""
        rows = [self.row_for(ctx) for ctx in ctxs]
        out = np.zeros((len(ctxs), self.vectors.shape[1]), dtype=np.float32)
        missing = [i for i, row in enumerate(rows) if row is None]
        if missing:
            out[missing] = model.encode_passages([(ctxs[i].get("title") or "", ctxs[i]["text"])
                                                  for i in missing])
        for i, row in enumerate(rows):
            if row is not None:
                out[i] = self.vectors[row]
        return out
