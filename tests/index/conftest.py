"""Small clustered vectors written as embedding shards, as generate_dense_embeddings.py does."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

DIM = 32


def clustered(n: int, *, dim: int = DIM, centres: int = 20, seed: int = 0) -> np.ndarray:
    """L2-normalised points around fixed random centres (clusters, as retrieval vectors are).

    Args:
        n: Number of points.
        dim: Vector size.
        centres: Number of clusters (their centres depend on `dim` and `centres` only).
        seed: Seed of the points (another seed: other points of the same clusters).

    Returns:
        float32 [n × dim].
    """
    means = np.random.default_rng(1234).standard_normal((centres, dim))  # [C × D]
    rng = np.random.default_rng(seed)
    points = means[rng.integers(0, centres, n)] + 0.3 * rng.standard_normal((n, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def write_shard(prefix: Path, ids: list[str], vectors: np.ndarray) -> Path:
    """Writes `<prefix>.npy` and `<prefix>.ids.json`; returns the `.npy`."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    np.save(f"{prefix}.npy", vectors)
    Path(f"{prefix}.ids.json").write_text(json.dumps(ids, ensure_ascii=False),
                                          encoding="utf-8")
    return Path(f"{prefix}.npy")


def write_shards(folder: Path, vectors: np.ndarray, parts: int, *,
                 dtype: str = "float32") -> str:
    """Splits vectors into `parts` shards `passages_<k>` with ids `p<row>`; returns the glob."""
    bounds = np.linspace(0, len(vectors), parts + 1).astype(int)
    for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        write_shard(folder / f"passages_{k}", [f"p{i}" for i in range(start, end)],
                    vectors[start:end].astype(dtype))
    return str(folder / "passages_*")


@pytest.fixture(scope="session")
def corpus() -> np.ndarray:
    """3,000 clustered vectors [3000 × 32]."""
    return clustered(3000)


@pytest.fixture(scope="session")
def queries() -> np.ndarray:
    """50 other points of the same clusters [50 × 32]."""
    return clustered(50, seed=1)


@pytest.fixture(scope="session")
def shards_of():
    """`write_shards(folder, vectors, parts, dtype=...)`: writes shards, returns their glob."""
    return write_shards


@pytest.fixture(scope="session")
def shard_file():
    """`write_shard(prefix, ids, vectors)`: writes one shard, returns its `.npy`."""
    return write_shard


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """faiss on one thread: on a shared 2-core machine OpenMP threads otherwise wait on each
    other (small trainings measured 2-3x slower with 2 threads under load)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
