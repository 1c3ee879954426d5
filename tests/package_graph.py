"""The package's own import graph, read from the source (every import, top level or inside a function)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import slm4offer
from slm4offer.judges import JUDGES

PACKAGE = Path(slm4offer.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str) -> Path:
    base = PACKAGE.parent / Path(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@cache
def modules() -> tuple[str, ...]:
    return tuple(sorted(module_name(p) for p in PACKAGE.rglob("*.py")))


@cache
def imports(name: str) -> frozenset[str]:
    """The package's modules that `name` imports (`from slm4offer.x import y` counts y when y is a module)."""
    known = set(modules())
    out = set()
    tree = ast.parse(module_path(name).read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for n in ast.walk(block)}  # annotations only: never executed
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("slm4offer"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known}
    if name == "slm4offer.judges":  # the registry imports its judges by name when one is asked for
        out |= {entry.module for entry in JUDGES.values()}
    return frozenset(m for m in out if m in known and m != name)


def closure(name: str) -> set[str]:
    """`name` and every package module it reaches through imports."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imports(m))
    return seen


def relative_file(name: str) -> str:
    return module_path(name).relative_to(PACKAGE).as_posix()
