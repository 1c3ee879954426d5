"""`make check`: does this run's `results/` reproduce the committed ones, within stated tolerances?

Floating-point training is not bit-exact across CPUs, thread counts and GPUs, and small
differences grow through training: a rerun elsewhere is, in effect, a new draw of the training
noise. So each number's tolerance comes from the spread the project already measures, never
from a guess:

- a mean over n training seeds with seed standard deviation s: a rerun's mean may move by
  K * s * sqrt(2 / n) (K = 3 standard errors of the difference of two such means). s is never
  taken below the binomial spread of one seed's rate, sqrt(p (1 - p) / N) for N personas,
  because three seeds can understate it badly;
- a paired gain (contrastive minus SFT, on the same personas): the same rule on the per-seed
  differences, floored at the spread of one seed's paired difference, sqrt(discordant) / N;
- a system that involves no training (random, most popular, best offer): the data are
  identical on every machine (`dataset_sha256`), so the simulated judge must give the same
  number; the learned judge may flip a persona or two near its threshold (2 personas or 1%);
- a statistic of one sample (judge agreement, kappa): K * sqrt(2) * its standard error;
- one training seed (ablations, the new domain): s is the main table's seed spread of the
  contrastive recipe under the same judge (the same floor applies).

Conclusions are checked as conclusions: contrastive beats SFT under each judge; the order
random < popular < SFT < contrastive < best; trained models have fewer under-fitted layers than
the untrained one; whether each loss curve settled; the sign of every ablation the committed run
found significant. A conclusion that flips fails the check even when every number is in tolerance.

`python -m slm4offer.check [--committed REF]` compares `results/` with the committed files of git
REF (default HEAD), read from git, never from the working tree.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slm4offer.config import repo_root

K = 3.0  # standard errors of a difference allowed between a rerun and the committed run
ORDER = ("random", "popular", "sft", "contrastive", "best")
TRAINED = ("sft", "contrastive")


@dataclass(frozen=True)
class Number:
    """One number: the committed value, this run's, and how far it may move."""

    name: str
    committed: float
    now: float
    tolerance: float
    basis: str          # how the tolerance was derived
    scale: float = 100  # shown as committed * scale (100: percent or points)

    @property
    def ok(self) -> bool:
        return bool(abs(self.now - self.committed) <= self.tolerance + 1e-12)


@dataclass(frozen=True)
class Conclusion:
    name: str
    committed: str
    now: str

    @property
    def ok(self) -> bool:
        return self.committed == self.now


@dataclass(frozen=True)
class Report:
    numbers: list[Number]
    conclusions: list[Conclusion]

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.numbers) and all(c.ok for c in self.conclusions)

    def failures(self) -> list[str]:
        out = [f"conclusion changed: {c.name}: committed '{c.committed}', now '{c.now}'"
               for c in self.conclusions if not c.ok]
        out += [f"out of tolerance: {n.name}: committed {_show(n.committed, n.scale)}, now {_show(n.now, n.scale)}, "
                f"tolerance ±{_show(n.tolerance, n.scale)} ({n.basis})" for n in self.numbers if not n.ok]
        return out

    def table(self) -> pd.DataFrame:
        rows = [{"number": n.name, "committed": _show(n.committed, n.scale), "now": _show(n.now, n.scale),
                 "tolerance": "±" + _show(n.tolerance, n.scale), "result": "pass" if n.ok else "FAIL",
                 "tolerance from": n.basis} for n in self.numbers]
        rows += [{"number": "conclusion: " + c.name, "committed": c.committed, "now": c.now, "tolerance": "same",
                  "result": "pass" if c.ok else "FAIL", "tolerance from": "must not change"}
                 for c in self.conclusions]
        return pd.DataFrame(rows)


def _show(x: float, scale: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "—"
    return f"{x * scale:.1f}" if scale != 1 else f"{x:.3g}"


# --- tolerances -----------------------------------------------------------------------------------

def seed_tolerance(std: float, seeds: int, p: float, n_personas: int) -> float:
    """K standard errors of the difference of two means over `seeds` seeds (see the module docstring)."""
    floor = math.sqrt(max(p * (1 - p), 0) / n_personas) if n_personas else 0.0
    return K * max(std, floor) * math.sqrt(2 / seeds)


def fixed_tolerance(judge: str, n_personas: int) -> float:
    """No training involved: exact for the simulated customer, a persona or two for the learned judge."""
    return 0.0 if judge == "simulated" else max(2 / n_personas, 0.01)


def acceptance_numbers(committed: pd.DataFrame, now: pd.DataFrame, label: str,
                       reference: pd.DataFrame | None = None) -> list[Number]:
    """Each (judge, system) mean of an acceptance table; `reference` lends its seed spread to 1-seed tables."""
    c, n = committed.set_index(["judge", "system"]), now.set_index(["judge", "system"])
    out = []
    for (judge, system), row in c.iterrows():
        if (judge, system) not in n.index:
            continue
        personas = int(row["judged"] // row["seeds"])
        if system in TRAINED:
            std, basis = row["std"], f"{int(row['seeds'])} seeds' spread"
            if row["seeds"] < 2 and reference is not None:
                ref = reference.set_index(["judge", "system"])
                std, basis = ref.loc[(judge, "contrastive"), "std"], "main table's contrastive seed spread"
            tol = seed_tolerance(std, int(row["seeds"]), row["mean"], personas)
        else:
            tol, basis = fixed_tolerance(judge, personas), "no training: same data, same verdicts"
        out.append(Number(f"{label}: {system}, {judge} judge", row["mean"], n.loc[(judge, system), "mean"], tol, basis))
    return out


def gain_numbers(committed_tests: pd.DataFrame, committed_table: pd.DataFrame,
                 now_table: pd.DataFrame) -> list[Number]:
    """Contrastive minus SFT (points and relative) per judge, with the per-seed paired spread."""
    c, n = committed_table.set_index(["judge", "system"]), now_table.set_index(["judge", "system"])
    out = []
    for judge, tests in committed_tests.groupby("judge"):
        d = (tests["contrastive_rate"] - tests["sft_rate"]).to_numpy()
        personas = int(tests["personas"].iloc[0])
        floor = math.sqrt((tests["only_sft"] + tests["only_contrastive"]).mean()) / personas
        std = float(np.std(d, ddof=1)) if len(d) > 1 else 0.0
        tol = K * max(std, floor) * math.sqrt(2 / len(d))
        basis = f"{len(d)} seeds' paired spread"
        gain_c = c.loc[(judge, "contrastive"), "mean"] - c.loc[(judge, "sft"), "mean"]
        gain_n = n.loc[(judge, "contrastive"), "mean"] - n.loc[(judge, "sft"), "mean"]
        out.append(Number(f"gain in points, {judge} judge", gain_c, gain_n, tol, basis))
        sft_c, sft_n = c.loc[(judge, "sft"), "mean"], n.loc[(judge, "sft"), "mean"]
        out.append(Number(f"relative gain, {judge} judge", gain_c / sft_c, gain_n / sft_n, tol / sft_c,
                          basis + " / SFT rate"))
    return out


def validation_numbers(committed: dict, now: dict) -> list[Number]:
    a = committed["raw_agreement"]
    se_kappa = (committed["kappa_high"] - committed["kappa_low"]) / (2 * 1.96)
    return [Number("judge agreement", a, now["raw_agreement"], K * math.sqrt(2 * a * (1 - a) / committed["n"]),
                   f"binomial SE on {committed['n']} samples"),
            Number("Cohen's kappa", committed["kappa"], now["kappa"], K * math.sqrt(2) * se_kappa,
                   "bootstrap 95% CI width", scale=1)]


def layer_numbers(committed: pd.DataFrame, now: pd.DataFrame) -> list[Number]:
    c, n = committed.set_index("model"), now.set_index("model")
    return [Number(f"Table 1 under-fitted layers: {m}", r["under-fitted (mean)"], n.loc[m, "under-fitted (mean)"],
                   K * max(r["under-fitted (std)"], 1.0) * math.sqrt(2 / r["seeds"]),
                   f"{int(r['seeds'])} seeds' spread (at least 1 layer)", scale=1)
            for m, r in c.iterrows() if m in n.index]


def ablation_numbers(committed: pd.DataFrame, now: pd.DataFrame, main: pd.DataFrame) -> list[Number]:
    """Each variant's rate (one seed each) against the main table's contrastive seed spread."""
    n, spread = now.set_index(["judge", "system"]), main.set_index(["judge", "system"])["std"]
    return [Number(f"ablation: {r.system}, {r.judge} judge", r.mean, n.loc[(r.judge, r.system), "mean"],
                   seed_tolerance(spread[(r.judge, "contrastive")], int(r.seeds), r.mean, int(r.judged // r.seeds)),
                   "main table's contrastive seed spread")
            for r in committed.itertuples() if (r.judge, r.system) in n.index]


# --- conclusions ----------------------------------------------------------------------------------

def conclusions(results: Path) -> dict[str, str]:
    """The claims REPRODUCE.md makes, as values that must not change between runs."""
    out = {}
    table = pd.read_csv(results / "acceptance.csv").set_index(["judge", "system"])
    for judge in sorted({j for j, _ in table.index}):
        rates = {s: table.loc[(judge, s), "mean"] for s in ORDER if (judge, s) in table.index}
        out[f"contrastive beats SFT, {judge} judge"] = str(bool(rates["contrastive"] > rates["sft"]))
        out[f"order of the systems, {judge} judge"] = " < ".join(sorted(rates, key=rates.get))
    layers = pd.read_csv(results / "table1_layers.csv").set_index("model")["under-fitted (mean)"]
    out["trained models have fewer under-fitted layers than the untrained one"] = str(
        bool(layers["sft"] < layers["initial"] and layers["contrastive"] < layers["initial"]))
    curves = pd.read_csv(results / "loss_stabilisation.csv")
    for _, r in curves[curves["curve"] == "eval_loss"].iterrows():
        settled = r["stable from epoch"]
        out[f"{r['model']} validation loss settled"] = "no" if pd.isna(settled) else f"from epoch {int(settled)}"
    return out


def ablation_signs(committed: Path, now: Path) -> list[Conclusion]:
    """Signs of the ablations the committed run found significant, read in this run whatever its p."""
    c, n = pd.read_csv(committed / "ablations.csv"), pd.read_csv(now / "ablations.csv")
    out = []
    for r in c[c["mcnemar_p_vs_main"] < 0.05].itertuples():
        def sign(t, judge=r.judge, system=r.system):
            rows = t[t["judge"] == judge].set_index("system")["mean"]
            return "worse" if rows[system] < rows["main recipe"] else "better"
        out.append(Conclusion(f"ablation '{r.system}' vs main recipe, {r.judge} judge", sign(c), sign(n)))
    return out


# --- comparison -----------------------------------------------------------------------------------

def compare(committed: Path, now: Path) -> Report:
    """Every checked number and conclusion of `now` against `committed` (two results folders)."""
    main_c, main_n = (pd.read_csv(d / "acceptance.csv") for d in (committed, now))
    numbers = acceptance_numbers(main_c, main_n, "acceptance")
    numbers += gain_numbers(pd.read_csv(committed / "acceptance_paired.csv"), main_c, main_n)
    numbers += validation_numbers(*(json.loads((d / "judge_validation.json").read_text()) for d in (committed, now)))
    numbers += layer_numbers(*(pd.read_csv(d / "table1_layers.csv") for d in (committed, now)))
    for path in sorted(committed.glob("acceptance_*.csv")):
        if not path.stem.endswith("_paired") and (now / path.name).is_file():
            domain = path.stem.removeprefix("acceptance_")
            numbers += acceptance_numbers(pd.read_csv(path), pd.read_csv(now / path.name), domain, main_c)
    if (committed / "ablations.csv").is_file():
        numbers += ablation_numbers(pd.read_csv(committed / "ablations.csv"), pd.read_csv(now / "ablations.csv"),
                                    main_c)
    numbers += [Number(f"dataset content hash, {name}", 0.0, 0.0 if same else 1.0, 0.0, "must be identical", scale=1)
                for name, same in dataset_hashes(committed, now)]
    found_c, found_n = conclusions(committed), conclusions(now)
    claims = [Conclusion(k, v, found_n.get(k, "missing")) for k, v in found_c.items()]
    if (committed / "ablations.csv").is_file():
        claims += ablation_signs(committed, now)
    return Report(numbers, claims)


def dataset_hashes(committed: Path, now: Path) -> list[tuple[str, bool]]:
    out = []
    for path in sorted(committed.glob("data_card_*.json")):
        digest = json.loads(path.read_text()).get("provenance", {}).get("dataset_sha256")
        if digest and (now / path.name).is_file():
            current = json.loads((now / path.name).read_text()).get("provenance", {}).get("dataset_sha256")
            out.append((path.stem.removeprefix("data_card_"), digest == current))
    return out


def committed_results(ref: str = "HEAD", root: Path | None = None) -> Path:
    """`results/` as committed at git `ref`, unpacked into a temp folder (read-only by construction)."""
    root = root or repo_root()
    try:
        blob = subprocess.run(["git", "archive", "--format=tar", ref, "results"], cwd=root, capture_output=True,
                              check=True, timeout=60).stdout
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"cannot read results/ at git ref {ref!r}: {exc.stderr.decode().strip()}") from exc
    folder = Path(tempfile.mkdtemp(prefix="slm4offer-committed-"))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slm4offer.check", description=__doc__.splitlines()[0])
    parser.add_argument("--committed", default="HEAD", help="git ref whose results/ are the reference")
    parser.add_argument("--results", type=Path, default=None, help="results folder to check (default: results/)")
    args = parser.parse_args(argv)
    report = compare(committed_results(args.committed), args.results or repo_root() / "results")
    print(report.table().to_markdown(index=False))
    failures = report.failures()
    if failures:
        print(f"\nmake check: FAILED ({len(failures)} of {len(report.numbers) + len(report.conclusions)}):")
        print("\n".join("  - " + f for f in failures))
        return 1
    print(f"\nmake check: passed ({len(report.numbers)} numbers within tolerance, "
          f"{len(report.conclusions)} conclusions unchanged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
