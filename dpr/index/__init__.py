"""Every faiss index of the project, built, opened and searched, and a Milvus store; the CLI is
`python -m dpr.index` (docs/SCALE.md). Depends on `dpr.utils`, faiss and numpy only (the CLI
also reads passage TSVs through `dpr.data.tsv`)."""

from __future__ import annotations

from dpr.index.build import BuildOptions, build_from_glob, build_index
from dpr.index.search import FaissIndex, index_shards, index_vectors, load_index

__all__ = ["BuildOptions", "FaissIndex", "build_from_glob", "build_index", "index_shards",
           "index_vectors", "load_index"]
