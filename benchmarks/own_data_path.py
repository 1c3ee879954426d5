"""The README's own-data path, timed: each command run from a cold cache on the smoke profile.

A raw campaign log is made from the smoke world's campaign as it would come from a CRM: attribute
columns and no persona text, plus customers who were shown offers and accepted nothing. Each
command of README's "Your own data" section then runs as a separate process in a fresh project
folder (nothing cached), and its wall time goes to `results/own_data_path.json` and into the
README's block between the `own-data-path` markers.

    .venv/bin/python benchmarks/own_data_path.py        # about 3 minutes on 2 cores
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from readme_blocks import ROOT, write_result

RESULTS = ROOT / "results" / "own_data_path.json"
NAME, SCRIPT = "own-data-path", "benchmarks/own_data_path.py"
TEMPLATE = ("Customer aged {age}, occupation: {occupation}, annual income ${income}, credit score {credit_score}, "
            "interested in {interests}, describes themselves as a {spending}.")
COMMANDS = (
    ("validate", "slm4offer validate-data log.csv --offers offers.csv --persona-template \"$T\" --out my_dataset"),
    ("train SFT", "slm4offer train --kind sft --profile smoke --data my_dataset"),
    ("train contrastive, export", "slm4offer train --kind contrastive --profile smoke --data my_dataset "
                                  "--output-dir my_model"),
    ("evaluate", "slm4offer evaluate --profile smoke --data my_dataset --judge learned"),
    ("card with the results", "slm4offer release --profile smoke --data my_dataset --output-dir my_model"),
    ("rank the catalogue", "slm4offer offers --model my_model --personas new.csv --persona-template \"$T\" "
                           "--catalog offers.csv --top-k 3 --out ranked.csv"),
    ("generate", "slm4offer offers --model my_model --personas new.csv --persona-template \"$T\" "
                 "--out generated.csv"),
)


def raw_campaign_log(folder: Path, personas: int | None = None,
                     refusers: int = 5) -> tuple[Path, Path, pd.DataFrame]:
    """A smoke-world campaign as a CRM would export it: `log.csv` with attribute columns and no persona
    text, plus `refusers` customers shown offers who accepted none, and the catalogue `offers.csv`.
    Returns both files and the world's own log (persona texts included)."""
    from slm4offer.config import load_config
    from slm4offer.data.userdata import export_campaign_log

    world_log, offers = export_campaign_log(load_config("smoke"), folder, personas=personas)
    table = pd.read_csv(world_log)
    attributes = table.drop(columns=["persona_id", "persona", "offer_id", "accepted"]).iloc[0]
    extra = pd.DataFrame([{"persona_id": f"refuser{i}", "offer_id": table["offer_id"].iloc[i], "accepted": 0,
                           **attributes} for i in range(refusers)])
    pd.concat([table.drop(columns="persona"), extra], ignore_index=True).to_csv(folder / "log.csv", index=False)
    return folder / "log.csv", offers, table


def raw_log(folder: Path) -> None:
    """log.csv and offers.csv (`raw_campaign_log`), and new.csv: 100 customers' attributes."""
    _, _, table = raw_campaign_log(folder)
    people = table.drop_duplicates("persona_id").drop(columns=["persona", "offer_id", "accepted"]).head(100)
    people.to_csv(folder / "new.csv", index=False)


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        raw_log(folder)
        env = {**os.environ, "SLM4OFFER_ROOT": str(folder)}  # a cold cache: nothing trained yet
        bin_dir = Path(sys.executable).parent
        rows = []
        for step, command in COMMANDS:
            start = time.perf_counter()
            argv = shlex.split(command.replace('"$T"', shlex.quote(TEMPLATE)))
            done = subprocess.run([str(bin_dir / "slm4offer"), *argv[1:]], cwd=folder, env=env,
                                  capture_output=True, text=True)
            seconds = round(time.perf_counter() - start, 1)
            if done.returncode:
                raise SystemExit(f"{command}\n{done.stderr[-3000:]}")
            rows.append({"step": step, "command": command, "seconds": seconds})
            print(f"{seconds:7.1f} s  {step}", flush=True)
        import torch

        from slm4offer.provenance import git_commit
        customers = int(pd.read_csv(folder / "log.csv")["persona_id"].nunique())
        return {"template": TEMPLATE, "rows": rows, "personas_in_log": customers,
                "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "git_commit": git_commit()}


def readme_block(record: dict) -> str:
    """The README's block: the commands, each with its time."""
    lines = ["", "```bash", f"T={shlex.quote(record['template'])}"]
    for row in record["rows"]:
        lines.append(f"{row['command']}   # {row['seconds']:.0f} s")
    lines += ["```", "",
              f"_Measured by `benchmarks/own_data_path.py` on the smoke profile from a cold cache: a log of "
              f"{record['personas_in_log']} customers, {record['cpus']} cores, commit "
              f"`{record['git_commit'][:12]}` (`results/own_data_path.json`). `evaluate` trains the second "
              "training seed's models first, and says so._", ""]
    return "\n".join(lines)




if __name__ == "__main__":
    record = run()
    write_result(record, RESULTS, readme_block(record), NAME, SCRIPT)
