"""Passages and their vectors in a Milvus collection (`MilvusStore`, `load_shards`): Milvus Lite
for a `.db` file, a server or cluster for an http(s) URI. Schema and behaviour: docs/SCALE.md,
section 3. pymilvus is optional: without it every function here raises
`MissingDependencyError` saying how to install it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from dpr.index.shards import Shard, read_ids, vectors
from dpr.utils.errors import DprError, InputError

logger = logging.getLogger(__name__)

PYMILVUS_REQUIREMENTS = "pymilvus==3.0.2 milvus-lite==3.2.2"
MAX_ID_LENGTH = 512
MAX_TITLE_LENGTH = 2048
MAX_TEXT_LENGTH = 65535
SEARCH_BATCH = 256


class MissingDependencyError(DprError):
    """An optional package a command needs is not installed (exit status 1)."""


def import_pymilvus() -> Any:
    """The pymilvus module, or MissingDependencyError saying how to install it."""
    try:
        import pymilvus
    except ImportError as err:
        raise MissingDependencyError(
            f"the Milvus store needs pymilvus (and milvus-lite for a local file): pip install "
            f"{PYMILVUS_REQUIREMENTS}  (or pip install -e '.[test]')") from err
    return pymilvus


@contextlib.contextmanager
def _milvus_errors(what: str) -> Iterator[None]:
    """Turns Milvus' errors (server refused, bad URI...) into one-line InputErrors."""
    pymilvus = import_pymilvus()
    try:
        yield
    except pymilvus.MilvusException as err:
        raise InputError(f"{what}: Milvus: {getattr(err, 'message', err)}") from err


class MilvusStore:
    """One Milvus collection of passages (`client`: a `pymilvus.MilvusClient`)."""

    def __init__(self, client: Any, collection: str, *, uri: str) -> None:
        self.client, self.collection, self.uri = client, collection, uri
        self.what = f"{uri} collection {collection!r}"

    @classmethod
    def connect(cls, uri: str, collection: str, *, token: str | None = None) -> MilvusStore:
        """Opens a client: a `.db` file path is Milvus Lite, an http(s) URI a server."""
        pymilvus = import_pymilvus()
        with _milvus_errors(uri):
            client = pymilvus.MilvusClient(uri, **({"token": token} if token else {}))
        return cls(client, collection, uri=uri)

    def create(self, dim: int, *, index_type: str = "AUTOINDEX", overwrite: bool = False) -> None:
        """Creates the collection (dropping an existing one with `overwrite`); InputError
        when it exists and `overwrite` is false, or Milvus refuses."""
        pymilvus = import_pymilvus()
        with _milvus_errors(self.what):
            if self.client.has_collection(self.collection):
                if not overwrite:
                    raise InputError(f"{self.what}: exists (pass --overwrite to replace it)")
                self.client.drop_collection(self.collection)
            schema = pymilvus.MilvusClient.create_schema(auto_id=False,
                                                         enable_dynamic_field=False)
            kinds = pymilvus.DataType
            schema.add_field("id", kinds.VARCHAR, is_primary=True, max_length=MAX_ID_LENGTH)
            schema.add_field("title", kinds.VARCHAR, max_length=MAX_TITLE_LENGTH)
            schema.add_field("text", kinds.VARCHAR, max_length=MAX_TEXT_LENGTH)
            schema.add_field("vector", kinds.FLOAT_VECTOR, dim=dim)
            params = self.client.prepare_index_params()
            params.add_index(field_name="vector", index_type=index_type, metric_type="IP")
            self.client.create_collection(self.collection, schema=schema, index_params=params,
                                          consistency_level="Strong")
        logger.info("Created %s (dim %d, %s, inner product)", self.what, dim, index_type)

    def insert(self, ids: list[str], vectors: np.ndarray, titles: list[str],
               texts: list[str]) -> None:
        """Inserts one batch of passages (vectors [n × dim])."""
        rows = [{"id": i, "title": t, "text": x, "vector": v}
                for i, t, x, v in zip(ids, titles, texts, np.asarray(vectors, np.float32))]
        with _milvus_errors(self.what):
            self.client.insert(self.collection, rows)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """Top-k passages of queries [Q × dim] by inner product: scores float32 [Q × k] (-inf
        for missing results) and the ids found per query."""
        queries = np.asarray(vectors, dtype=np.float32)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids: list[list[str]] = []
        search_params = {"metric_type": "IP", "params": {}}
        for start in range(0, len(queries), SEARCH_BATCH):
            batch = list(queries[start:start + SEARCH_BATCH])
            with _milvus_errors(self.what):
                hits = self.client.search(self.collection, data=batch, limit=k,
                                          search_params=search_params, output_fields=["id"])
            for row, found in enumerate(hits, start=start):
                ids.append([str(hit["id"]) for hit in found])
                scores[row, :len(found)] = [hit["distance"] for hit in found]
        return scores, ids

    def close(self) -> None:
        self.client.close()


def _texts(passages: Iterator[tuple[str, str, str]] | None, ids: list[str], *, shard: Shard,
           source: str) -> tuple[list[str], list[str]]:
    """The titles and texts of a shard's passages, read in step from `passages` (None: empty
    strings)."""
    if passages is None:
        return [""] * len(ids), [""] * len(ids)
    titles, texts = [], []
    for row, passage_id in enumerate(ids):
        found = next(passages, None)
        if found is None or found[0] != passage_id:
            raise InputError(f"{source}: passage {found[0] if found else 'end of file'!r} where "
                             f"{shard.path} row {row} is {passage_id!r}: the passages must be in "
                             "the shards' order (as generate_dense_embeddings.py encodes them)")
        titles.append(found[1])
        texts.append(found[2])
    return titles, texts


def load_shards(store: MilvusStore, shards: list[Shard], *,
                passages: Iterable[tuple[str, str, str]] | None = None, source: str = "passages",
                batch_size: int = 1000, quiet: bool = False) -> int:
    """Inserts every shard's vectors in batches of `batch_size` into a created collection,
    with the titles and texts of `passages` ((id, title, text) in the shards' order, read from
    the file `source`; None: ids and vectors only); returns the rows inserted."""
    stream = None if passages is None else iter(passages)
    done = 0
    with tqdm(total=sum(s.rows for s in shards), unit=" passages", desc="Milvus insert",
              disable=quiet) as bar:
        for shard in shards:
            ids, array = read_ids(shard), vectors(shard)
            titles, texts = _texts(stream, ids, shard=shard, source=source)
            for start in range(0, len(ids), batch_size):
                end = start + batch_size
                store.insert(ids[start:end], array[start:end], titles[start:end],
                             texts[start:end])
                bar.update(len(ids[start:end]))
            done += len(ids)
    with _milvus_errors(store.what):  # seals what was inserted (a server persists it)
        store.client.flush(store.collection)
    logger.info("Inserted %d passages into %s", done, store.what)
    return done
