"""Where a result came from: config, seeds, package versions, git commit, machine, numerics.

Every table, figure and cached artifact carries this, so a number can always be traced to the
run that produced it. Nothing here is time-dependent unless asked (`with_time=True`), which
keeps cached datasets byte-identical across runs of the same commit.

Two things say how far a rerun elsewhere can move a number: `numerics` (what decides
floating-point results in training: torch version, threads, the CPU instruction set torch uses,
device), and `dataset_sha256`, a hash of the dataset's content, which is the same on every
machine with the pinned packages: synthesis draws from integer-seeded generators in one thread, and
a float64 rounding difference between CPUs could flip a draw only if it landed within a rounding
error of its probability (checked on a second CPU; a test pins the smoke world's hash).
"""

from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata

from slm4offer.cache import dataset_fingerprint, stage_hash
from slm4offer.config import Config, data_name, repo_root

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


def numerics(device: str = "auto") -> dict:
    """What decides floating-point results on this machine (training is not bit-exact across these),
    for models run on `device` (the config's; 'auto' is a GPU when there is one)."""
    import torch

    cuda = device != "cpu" and torch.cuda.is_available()
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "processor": platform.processor() or "",
            "device": torch.cuda.get_device_name("cuda" if device == "auto" else device) if cuda else "cpu",
            "cuda": torch.version.cuda if cuda else None}


def collect(cfg: Config, stage: str | None = None, with_time: bool = False, **extra) -> dict:
    """The provenance record of `cfg` (and of `stage`'s cached output, when given)."""
    record = {
        "profile": cfg.profile,
        "seed": cfg.seed,
        "domain": None if cfg.data else cfg.domain,  # your own data has no synthetic domain
        "data": data_name(cfg) if cfg.data else None,
        "generator": cfg.generator,
        "config": cfg.to_dict(),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "numerics": numerics(cfg.device),
        **extra,
    }
    if stage is not None:
        record["stage"] = stage
        record["stage_hash"] = stage_hash(cfg, stage)
    if stage == "dataset" and (cfg.dataset_dir / "dataset_dict.json").is_file():
        record["dataset_sha256"] = dataset_fingerprint(cfg.dataset_dir)
    if with_time:
        record["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return record
