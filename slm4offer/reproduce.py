"""The "our number" side of REPRODUCE.md, written from `results/` so that no number is typed.

`python -m slm4offer.reproduce` (run by `make all`) rewrites the block between the markers in
REPRODUCE.md from the committed results; a test fails when the block and the results disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from slm4offer import paper
from slm4offer.config import repo_root
from slm4offer.files import write_text

START, END = "<!-- numbers:start (written by python -m slm4offer.reproduce) -->", "<!-- numbers:end -->"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def headline_rows(results: Path) -> list[str]:
    table = pd.read_csv(results / "acceptance.csv").set_index(["judge", "system"])
    tests = pd.read_csv(results / "acceptance_paired.csv")
    rows = []
    for judge in sorted({j for j, _ in table.index}):
        sft, con = table.loc[(judge, "sft")], table.loc[(judge, "contrastive")]
        t = tests[tests["judge"] == judge]
        points = 100 * (con["mean"] - sft["mean"])
        rows.append(
            f"| acceptance, {judge} judge | {paper.ACCEPTANCE['sft']:.0%} → {paper.ACCEPTANCE['contrastive']:.0%} "
            f"(LLM judge) | SFT {_pct(sft['mean'])} ± {100 * sft['std']:.1f}, contrastive {_pct(con['mean'])} ± "
            f"{100 * con['std']:.1f} over {int(sft['seeds'])} seeds; {points:+.1f} points, "
            f"{(con['mean'] - sft['mean']) / sft['mean']:+.1%} relative (paper "
            f"{paper.ACCEPTANCE['contrastive'] / paper.ACCEPTANCE['sft'] - 1:+.1%}); McNemar p < 0.05 in "
            f"{int((t['mcnemar_p'] < 0.05).sum())} of {len(t)} seeds | `results/acceptance.md` |")
        if (judge, "best") in table.index and (judge, "random") in table.index:
            rows.append(f"| baselines, {judge} judge | not reported | random offer "
                        f"{_pct(table.loc[(judge, 'random'), 'mean'])}, most popular "
                        f"{_pct(table.loc[(judge, 'popular'), 'mean'])}, each persona's best offer "
                        f"{_pct(table.loc[(judge, 'best'), 'mean'])} | `results/acceptance.md` |")
    return rows


def validation_rows(results: Path) -> list[str]:
    v = json.loads((results / "judge_validation.json").read_text())
    return [f"| judge validation | LLM vs humans: {paper.JUDGE_AGREEMENT:.0%} agreement on {paper.JUDGE_SAMPLES}, "
            f"χ² p {paper.JUDGE_CHI2_P} | {v['judge']} judge vs {v['reference']}: {_pct(v['raw_agreement'])} "
            f"agreement on {v['n']}, χ² = {v['chi2']:.1f} (p = {v['chi2_pvalue']:.1g}), Cohen's κ = "
            f"{v['kappa']:.2f} [{v['kappa_low']:.2f}, {v['kappa_high']:.2f}] | `results/judge_validation.md` |"]


def layer_rows(results: Path) -> list[str]:
    t = pd.read_csv(results / "table1_layers.csv").set_index("model")
    ours = ", ".join(f"{m} {t.loc[m, 'under-fitted (mean)']:.1f} ± {t.loc[m, 'under-fitted (std)']:.1f} "
                     f"({t.loc[m, 'share under-fitted']:.0%})" for m in t.index)
    layers, seeds = int(t["layers analysed"].iloc[0]), int(t["seeds"].iloc[0])
    return [f"| Table 1, under-fitted layers (alpha > 6) | SFT {paper.UNDERFIT_LAYERS['sft']}, contrastive "
            f"{paper.UNDERFIT_LAYERS['contrastive']} (T5-Small, one run) | of {layers} layers, over {seeds} seeds: "
            f"{ours} | `results/table1_layers.md` |"]


def curve_rows(results: Path) -> list[str]:
    t = pd.read_csv(results / "loss_stabilisation.csv")
    total = t[t["curve"] == "eval_loss"].set_index("model")
    ours = "; ".join(
        f"{m}: " + (f"settles at epoch {int(r['stable from epoch'])}" if pd.notna(r["stable from epoch"])
                    else f"not settled after {int(r['epochs'])} epochs (last change {r['last change']:+.1%})")
        for m, r in total.iterrows())
    return [f"| Figure 6, loss curves | settle by about epoch {paper.STABLE_EPOCH} | validation total loss, {ours} "
            f"| `results/loss_stabilisation.md` |"]


def domain_rows(results: Path) -> list[str]:
    rows = []
    for path in sorted(results.glob("acceptance_*.csv")):
        if path.stem.endswith("_paired"):
            continue
        domain = path.stem.removeprefix("acceptance_")
        t = pd.read_csv(path).set_index(["judge", "system"])
        judge = "simulated" if ("simulated", "sft") in t.index else t.index[0][0]
        sft, con = t.loc[(judge, "sft"), "mean"], t.loc[(judge, "contrastive"), "mean"]
        rows.append(f"| new domain: {domain} | not run (future work) | {judge} judge, "
                    f"{int(t.loc[(judge, 'sft'), 'seeds'])} seed(s): SFT {_pct(sft)}, contrastive {_pct(con)} "
                    f"({100 * (con - sft):+.1f} points); random {_pct(t.loc[(judge, 'random'), 'mean'])}, popular "
                    f"{_pct(t.loc[(judge, 'popular'), 'mean'])}, best {_pct(t.loc[(judge, 'best'), 'mean'])} "
                    f"| `results/{path.stem}.md` |")
    return rows


def ablation_rows(results: Path) -> list[str]:
    path = results / "ablations.csv"
    if not path.is_file():
        return []
    t = pd.read_csv(path)
    t = t[t["judge"] == "simulated"] if "simulated" in set(t["judge"]) else t[t["judge"] == t["judge"].iloc[0]]
    cells = ", ".join(f"{r.system} {_pct(r.mean)}" + (" *" if r.mcnemar_p_vs_main < 0.05 else "")
                      for r in t.itertuples())
    return [f"| future work: ablations | λ ∈ {{0.2, 0.5, 0.8}}, no hard negatives: not run | {t['judge'].iloc[0]} "
            f"judge, {int(t['seeds'].max())} seed(s): {cells} (* = McNemar p < 0.05 against the main recipe) "
            f"| `results/ablations.md` |"]


def numbers_block(results: Path) -> str:
    lines = ["| claim | paper | ours (default profile) | from |", "|---|---|---|---|"]
    lines += (headline_rows(results) + validation_rows(results) + layer_rows(results) + curve_rows(results)
              + domain_rows(results) + ablation_rows(results))
    return "\n".join([START, *lines, END])


def update(path: Path, results: Path) -> bool:
    """Rewrite the block in `path`; True if it changed."""
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path}: markers {START!r} … {END!r} not found")
    head, rest = text.split(START, 1)
    new = head + numbers_block(results) + rest.split(END, 1)[1]
    if new != text:
        write_text(path, new)
    return new != text


if __name__ == "__main__":
    root = repo_root()
    changed = update(root / "REPRODUCE.md", root / "results")
    print("REPRODUCE.md", "updated" if changed else "unchanged")
    sys.exit(0)
