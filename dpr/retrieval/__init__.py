"""retrieval: BM25, dense search, fusion, runs and hard-negative mining."""
