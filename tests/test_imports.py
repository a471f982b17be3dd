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
) + ["train_dense_encoder", "train_reranker", "generate_dense_embeddings", "dense_retriever"]


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_dpr_never_imports_the_entry_point_packages() -> None:
    # Given every module of the dpr package
    import ast
    from pathlib import Path

    offenders = []
    for path in sorted(Path(dpr.__path__[0]).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("data_prep", "dpr2hf")]
    # Then none imports data_prep or dpr2hf (dependencies flow from entry points to dpr)
    assert offenders == []
