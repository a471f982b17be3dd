"""The product's imports: no circle between modules, and the package graph is the one
docs/ARCHITECTURE.md states in its "Allowed imports" table (both ways: no import the table
does not allow, no edge the table claims that the code does not have), every module in its
"Where each concern lives" table, and no function over 60 lines."""

from __future__ import annotations

import ast
import importlib
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dpr", "data_prep", "dpr2hf")
SCRIPTS = ("train_dense_encoder", "train_reranker", "generate_dense_embeddings", "dense_retriever")
# Modules that are entry points (`python -m ...`): they may import anything of the product.
ENTRY_MODULES = {"dpr.evaluate", "dpr.average", "dpr.tiny", "dpr.index.cli",
                 "dpr.index.__main__", *SCRIPTS}


def _modules() -> dict[str, Path]:
    found = {}
    for path in [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")] + \
            [ROOT / f"{s}.py" for s in SCRIPTS]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(module: str, node: ast.AST, is_package: bool, modules: dict) -> list[str]:
    """The product modules an import statement loads (`from pkg import sub` counts as `sub`
    only, not as the package's `__init__`)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: None if is_package else -1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
    if len(subs) == len(node.names):
        return subs
    return [base, *subs] if base in modules else subs


def import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports (anywhere in the file, typing-only too)."""
    modules = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges[name] |= {t for t in _targets(name, node, path.name == "__init__.py",
                                                    modules) if t != name}
    return {m: edges[m] for m in modules}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def package_of(module: str) -> str | None:
    """`dpr.<sub>`, `data_prep` or `dpr2hf`; None for entry modules and the bare `dpr`
    namespace package."""
    if module in ENTRY_MODULES or module.endswith("__main__") or module == "dpr":
        return None
    parts = module.split(".")
    return f"dpr.{parts[1]}" if parts[0] == "dpr" and len(parts) > 1 else parts[0]


def documented_edges() -> dict[str, set[str]]:
    """The "Allowed imports" table of docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Allowed imports", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            table[cells[0].strip("`")] = set(re.findall(r"`([\w.]+)`", cells[1]))
    return table


def test_no_import_circle_in_the_product() -> None:
    assert cycles(import_graph()) == []


def test_cycles_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_package_graph_is_the_documented_one() -> None:
    actual: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        source = package_of(module)
        for target in targets:
            dest = package_of(target)
            if source and dest and dest != source:
                actual[source].add(dest)
    documented = documented_edges()
    packages = set(actual) | {package_of(m) for m in _modules()} - {None}
    assert set(documented) == packages, "every package has one row in the table"
    assert {p: actual.get(p, set()) for p in documented} == documented


def _listed_modules() -> set[str]:
    """The module files the "Where each concern lives" table names (`a/{b,c}.py` expanded)."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## Where each concern lives", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for name in re.findall(r"`([\w/.{},-]+\.py)`", table):
        match = re.fullmatch(r"(.*)\{(.*)\}(.*)", name)
        parts = match.group(2).split(",") if match else [""]
        listed |= {f"{match.group(1)}{p}{match.group(3)}" if match else name for p in parts}
    return listed


def test_every_module_has_a_row_in_the_architecture_table() -> None:
    modules = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert sorted(modules - _listed_modules()) == []


MAX_FUNCTION_LINES = 60


def test_no_product_function_over_60_lines() -> None:
    # Lines from a function's `def` to its last line (docstring and nested functions included,
    # decorators not); benchmarks/ and tests/ are not product code. Modules have no cap: one
    # concept per module, however long (docs/ARCHITECTURE.md).
    too_long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}.{node.name}: {size} lines")
    assert too_long == []


def _one_home_names() -> list[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## One home per concept", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(dpr\.[\w.]+)`", section)


def test_every_home_of_the_one_home_table_exists() -> None:
    # Given the documented home of each concept, when each is imported, then it exists
    names = _one_home_names()
    assert len(names) >= 15
    missing = []
    for name in names:
        module, _, attr = name.rpartition(".")
        if not hasattr(importlib.import_module(module), attr):
            missing.append(name)
    assert missing == []


def _calls_of(attribute: str, owner: str) -> list[str]:
    """Product modules that call `<owner>.<attribute>(...)`."""
    found = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == attribute and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == owner):
                found.append(name)
    return sorted(set(found))


def test_one_module_constructs_bm25_and_one_makes_faiss_indexes() -> None:
    assert _calls_of("BM25", "bm25s") == ["dpr.retrieval.bm25"]
    assert _calls_of("index_factory", "faiss") == ["dpr.index.build"]
    makers = [m for attr in ("IndexFlatIP", "IndexFlatL2", "IndexHNSWFlat", "IndexIVFFlat")
              for m in _calls_of(attr, "faiss")]
    assert makers == []
