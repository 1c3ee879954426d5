"""Everything the project writes into `figures/` and `results/`, each file recorded in the manifest.

`save_figure` writes PNG + PDF into `cfg.figures_dir` with the provenance in the files' metadata;
`save_results` writes result files into `cfg.results_dir`; both record what made each file in
`results_dir/manifest.json` (profile, seed, generator, dataset hash, commit). `record_stage` adds
a notebook's wall time there (`make all` calls it after each notebook).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib.pyplot as plt

from slm4offer import provenance
from slm4offer.config import Config, load_config
from slm4offer.files import locked, write_json, write_text


def save_figure(fig: plt.Figure, name: str, cfg: Config, stage: str = "dataset", **extra) -> list[Path]:
    """Save `fig` as `<figures_dir>/<name>.png` and `.pdf` and record it in the manifest.

    `extra` (e.g. the models a figure shows, pretrained or scratch) joins the provenance.
    """
    record = provenance.collect(cfg, stage=stage, with_time=True, **extra)
    summary = (f"slm4offer {name}: profile={cfg.profile} seed={cfg.seed} domain={cfg.domain} "
               f"generator={cfg.generator} {stage}_hash={record['stage_hash']} "
               + "".join(f"{k}={v} " for k, v in extra.items())
               + f"commit={record['git_commit']}")
    cfg.figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [cfg.figures_dir / f"{name}.png", cfg.figures_dir / f"{name}.pdf"]
    fig.savefig(paths[0], bbox_inches="tight", metadata={"Description": summary})
    fig.savefig(paths[1], bbox_inches="tight", metadata={"Subject": summary})
    record_artifact(cfg, f"figures/{name}", record)
    return paths


def update_manifest(cfg: Config, section: str, key: str, record: dict) -> Path:
    """Add or replace `section[key]` in `results_dir/manifest.json` (read, merge, atomic write)."""
    path = cfg.results_dir / "manifest.json"
    with locked(path):  # read, merge, write: a second run in between would lose the first's entry
        manifest = json.loads(path.read_text()) if path.is_file() else {"artifacts": {}}
        manifest.setdefault(section, {})[key] = record
        return write_json(path, manifest)


def record_artifact(cfg: Config, key: str, record: dict) -> Path:
    return update_manifest(cfg, "artifacts", key, record)


def save_results(cfg: Config, files: dict[str, str], record: dict) -> list[Path]:
    """Write each `name: text` (a path inside `results_dir`) there and record it, with `record`, in the
    manifest. Two runs saving into one results folder take turns, so a table set is never mixed."""
    with locked(cfg.results_dir / "manifest.json"):
        paths = [write_text(cfg.results_dir / name, text) for name, text in files.items()]
        for path in paths:
            record_artifact(cfg, f"results/{path.relative_to(cfg.results_dir).as_posix()}", record)
    return paths


def record_stage(notebook: str, seconds: float, profile: str | None = None) -> dict:
    """Record that `notebook` ran for `seconds` (on this commit) in the manifest's `stages`."""
    cfg = load_config(profile)
    entry = {"seconds": round(seconds, 1), "git_commit": provenance.git_commit(),
             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "profile": cfg.profile}
    update_manifest(cfg, "stages", notebook, entry)
    return entry
