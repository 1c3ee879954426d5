"""`python -m slm4offer.manifest NOTEBOOK SECONDS`: record a stage's wall time in the run manifest.

`make all` calls it after each notebook, so `results/manifest.json` says how long every stage of
the last run took, on which commit, next to the provenance of every figure and table.
"""

from __future__ import annotations

import sys
import time

from slm4offer import provenance
from slm4offer.config import load_config
from slm4offer.plots import update_manifest


def record_stage(notebook: str, seconds: float, profile: str | None = None) -> dict:
    cfg = load_config(profile)
    entry = {"seconds": round(seconds, 1), "git_commit": provenance.git_commit(),
             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": cfg.profile}
    update_manifest(cfg, "stages", notebook, entry)
    return entry


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m slm4offer.manifest NOTEBOOK SECONDS")
    print(f"{sys.argv[1]}: {record_stage(sys.argv[1], float(sys.argv[2]))['seconds']} s")
