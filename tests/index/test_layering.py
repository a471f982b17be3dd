"""dpr.index depends on dpr.utils only (its CLI module also reads passage TSVs through
dpr.data), and no other dpr package imports it but dpr.retrieval (dense search),
dpr.inference (the shard files it writes) and dpr.evaluation (run files)
(docs/ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import dpr

ROOT = Path(dpr.__path__[0])
ENTRY_MODULES = ("cli.py", "__main__.py")


def _dpr_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {".".join(n.split(".")[:2]) for n in names if n.split(".")[0] == "dpr"}


def test_dpr_index_library_modules_import_only_dpr_utils() -> None:
    offenders = {p.name: _dpr_imports(p) - {"dpr.utils", "dpr.index"}
                 for p in sorted((ROOT / "index").glob("*.py")) if p.name not in ENTRY_MODULES}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_no_other_dpr_package_imports_dpr_index() -> None:
    importers = [str(p.relative_to(ROOT)) for p in sorted(ROOT.rglob("*.py"))
                 if p.relative_to(ROOT).parts[0] not in ("index", "retrieval", "inference",
                                                         "evaluation")
                 and "dpr.index" in _dpr_imports(p)]
    assert importers == []
