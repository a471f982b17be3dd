"""Every faiss index of the project: built from embedding shards in bounded memory into a folder
(`build_from_glob`, `build_index`) or in memory (`index_vectors`, `index_shards`), opened with
`load_index` and searched; a Milvus store (`dpr.index.milvus`). The CLI is `python -m
dpr.index` (`dpr.index.cli`); docs/SCALE.md describes both. Depends on `dpr.utils`, faiss and
numpy only (the CLI also reads passage TSVs through `dpr.data.tsv`).
"""

from __future__ import annotations

from dpr.index.build import BuildOptions, build_from_glob, build_index
from dpr.index.search import FaissIndex, index_shards, index_vectors, load_index

__all__ = ["BuildOptions", "FaissIndex", "build_from_glob", "build_index", "index_shards",
           "index_vectors", "load_index"]
