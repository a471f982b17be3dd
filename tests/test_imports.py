"""Every module imports (catches stale imports in rarely-run code)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import data_prep
import dpr
import dpr2hf

MODULES = sorted(
    m.name for pkg in (dpr, data_prep, dpr2hf)
    for m in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + ".")
) + ["train_dense_encoder", "generate_dense_embeddings", "dense_retriever"]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
