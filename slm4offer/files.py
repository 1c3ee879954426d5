"""Atomic writes (a reader, or an interrupted run, never sees a half-written file or folder), locks
so that two runs writing the same output take turns, the rule for folders a user names as output,
and caption text made safe for LaTeX tables."""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slm4offer.errors import InvalidValue


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


_HELD: dict[str, int] = {}  # locks this process holds, by file: taking one again inside is a no-op


@contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of `path` (a hidden `.<name>.lock` file beside it, removed again on
    release), waiting while another process holds it: two runs that write the same output take
    turns instead of mixing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.parent / f".{path.name}.lock"
    key = str(lock.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    while True:  # the lock file is removed when released: a waiter that got a removed one tries again
        fh = open(lock, "a")  # closed below, once the lock is released
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if os.fstat(fh.fileno()).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        lock.unlink(missing_ok=True)  # while still held: nothing is left beside the output
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path`, on error it is removed.

    Writers of one `path` take turns (`locked`), so a temp folder of `path` found while holding
    the lock was left by a run that was killed, and is removed."""
    path = Path(path)
    with locked(path):
        for stale in glob.glob(str(path.parent / f".{glob.escape(path.name)}.*.tmp")):
            shutil.rmtree(stale, ignore_errors=True)
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


def replaceable_folder(path: str | Path, markers: tuple[str, ...]) -> Path:
    """`path` as a folder the project may write or replace: one that does not exist yet, an empty
    one, or one holding every file of `markers` (one the project wrote before). Anything else, a
    file or a folder of someone else's, is refused: the project never deletes what it did not write."""
    path = Path(path)
    if path.is_file() or path.is_symlink() and not path.is_dir():
        raise InvalidValue(f"{path}: is a file; give the folder to write into (a new one, or one written by "
                           "slm4offer before)")
    if path.is_dir() and any(path.iterdir()) and not all((path / m).is_file() for m in markers):
        raise InvalidValue(f"{path}: the folder exists and holds files slm4offer did not write (no "
                           f"{', '.join(markers)}); nothing was changed. Choose a new folder, or empty this one")
    return path


def latex_text(text: str) -> str:
    """Plain caption text made safe for LaTeX (pandas escapes the cells, not the caption)."""
    for plain, tex in (("\\", r"\textbackslash{}"), ("%", r"\%"), ("_", r"\_"), ("&", r"\&"), ("#", r"\#"),
                       ("±", r"$\pm$"), ("≥", r"$\geq$")):
        text = text.replace(plain, tex)
    return text
