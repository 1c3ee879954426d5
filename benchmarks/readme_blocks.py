"""A measured result and the README block generated from it, written together, so the README's
numbers are always the committed result file's."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def markers(name: str, script: str) -> tuple[str, str]:
    """The comment lines that delimit README's block `name`."""
    return f"<!-- {name}: start ({script} writes this block) -->", f"<!-- {name}: end -->"


def write_result(record: dict, result: Path, block: str, name: str, script: str, readme: Path = ROOT / "README.md"
                 ) -> None:
    """`record` to `result` as JSON, and `block` between README's `name` markers."""
    result.write_text(json.dumps(record, indent=2) + "\n")
    start, end = markers(name, script)
    head, rest = readme.read_text().split(start, 1)
    readme.write_text(head + start + "\n" + block + "\n" + end + rest.split(end, 1)[1])
