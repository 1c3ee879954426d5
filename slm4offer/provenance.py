"""Where a result came from: config, seeds, package versions, git commit, machine.

Every table, figure and cached artifact carries this, so a number can always be traced to the
run that produced it. Nothing here is time-dependent unless asked (`with_time=True`), which
keeps cached datasets byte-identical across runs of the same commit.
"""

from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata

from slm4offer.config import Config, repo_root

TRACKED_PACKAGES = ("slm4offer", "torch", "transformers", "tokenizers", "accelerate", "datasets", "numpy",
                    "scipy", "pandas", "scikit-learn", "openai", "matplotlib")


def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """HEAD's hash, with '+dirty' when tracked inputs differ from it; 'unknown' outside git.

    figures/, results/ and the executed notebooks are outputs that `make all` rewrites as it
    goes (notebook 02 runs after 01 was rewritten), so they do not count as dirty.
    """
    try:
        root = str(repo_root())
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!figures", ":!results", ":!notebooks/*.ipynb"], cwd=root,
                               capture_output=True, text=True, check=True, timeout=10).stdout
        return head + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def collect(cfg: Config, stage: str | None = None, with_time: bool = False, **extra) -> dict:
    """The provenance record of `cfg` (and of `stage`'s cached output, when given)."""
    record = {
        "profile": cfg.profile,
        "seed": cfg.seed,
        "domain": cfg.domain,
        "generator": cfg.generator,
        "config": cfg.to_dict(),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        **extra,
    }
    if stage is not None:
        record["stage"] = stage
        record["stage_hash"] = cfg.stage_hash(stage)
    if with_time:
        record["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record
