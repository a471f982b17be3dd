"""`python -m dpr.index build|search|milvus-load|milvus-search` (see dpr.index.cli)."""

from __future__ import annotations

from dpr.index.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
