"""Atomic writes (a reader, or an interrupted run, never sees a half-written file or folder), and
caption text made safe for LaTeX tables."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_text(path: str | Path, text: str) -> Path:
    """Write to a temp file in the same folder, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results and caches are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def json_text(data) -> str:
    """The JSON form every file of the project uses: indented, sorted keys, newline-terminated."""
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def write_json(path: str | Path, data) -> Path:
    return write_text(path, json_text(data))


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes it private; models and datasets are for everyone to read
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def latex_text(text: str) -> str:
    """Plain caption text made safe for LaTeX (pandas escapes the cells, not the caption)."""
    for plain, tex in (("\\", r"\textbackslash{}"), ("%", r"\%"), ("_", r"\_"), ("&", r"\&"), ("#", r"\#"),
                       ("±", r"$\pm$"), ("≥", r"$\geq$")):
        text = text.replace(plain, tex)
    return text
