"""Executed notebooks as `make all` leaves them.

papermill records the profile a notebook ran with in a cell it injects (tagged
`injected-parameters`). `make test` runs the committed notebooks under nbval with
$SLM4OFFER_PROFILE=smoke, which reaches them through their parameters cell; the injected cell
would pin them to the profile they were executed with (the default: full-size training in CI).
So it is also tagged `nbval-skip`: the record stays for readers, and the tests skip it.

`slm4offer mark-parameters NOTEBOOK...` tags them in place (the Makefile runs it after papermill).
"""

from __future__ import annotations

import json
from pathlib import Path

from slm4offer.files import write_text

INJECTED, SKIP = "injected-parameters", "nbval-skip"


def mark_injected_parameters(path: str | Path) -> int:
    """Tag every injected-parameters cell of the notebook at `path` nbval-skip; returns how many."""
    path = Path(path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    marked = 0
    for cell in nb["cells"]:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED in tags and SKIP not in tags:
            tags.append(SKIP)
            marked += 1
    if marked:
        write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return marked
