"""Indexes over embedding shards at scale: faiss indexes built and searched in bounded memory,
and a Milvus collection for serving beyond one machine.

Library API (the CLI is `python -m dpr.index`, see `dpr.index.cli`):

* `build_from_glob(pattern, output_dir, BuildOptions(factory=...))` builds an index folder;
* `load_index(folder, nprobe=..., ef_search=...)` opens one; its `.search(vectors, k)` returns
  `(scores [Q × k], ids per query)`;
* `index_vectors(vectors, ids)` and `index_shards(shards, options)` build the same index in
  memory (the one place faiss indexes are made: `dpr.index.build.make_index`).

Dependencies: `dpr.utils`, faiss and numpy (pymilvus, optional, for `dpr.index.milvus`); the
CLI module alone also reads passage TSVs through `dpr.data.tsv`.
"""

from __future__ import annotations

from dpr.index.build import BuildOptions, build_from_glob, build_index
from dpr.index.search import FaissIndex, index_shards, index_vectors, load_index

__all__ = ["BuildOptions", "FaissIndex", "build_from_glob", "build_index", "index_shards",
           "index_vectors", "load_index"]
