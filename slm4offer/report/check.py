"""`make check`: does this run's `results/` reproduce the committed ones, within stated tolerances?

Floating-point training is not bit-exact across CPUs, thread counts and GPUs, and small
differences grow through training: a rerun elsewhere is, in effect, a new draw of the training
noise. So each number's tolerance comes from the spread the project already measures, never
from a guess:

- a mean over n training seeds with seed standard deviation s (thresholded, expected or sampled
  acceptance alike): a rerun's mean may move by
  K * s * sqrt(2 / n) (K = 3 standard errors of the difference of two such means). s is never
  taken below the binomial spread of one seed's rate, sqrt(p (1 - p) / N) for N personas,
  because three seeds can understate it badly;
- a paired gain (contrastive minus SFT, on the same personas): the same rule on the per-seed
  differences, floored at the spread of one seed's paired difference, sqrt(discordant) / N;
- a system that involves no training (random, most popular, best offer): the data are
  identical on every machine (`dataset_sha256`), so the simulated judge must give the same
  number; the learned judge may flip a persona or two near its threshold (2 personas or 1%);
- a statistic of one sample (judge agreement, kappa): K * sqrt(2) * its standard error;
- a table trained with one seed (an ablation or a new domain run that way): s is the main table's
  seed spread of the contrastive recipe under the same judge (the same floor applies); with
  several seeds, its own spread, as above.

Conclusions are checked as conclusions: under each judge, whether contrastive is above, below or
not distinguishable from SFT at the seed level, and the order of random, popular, SFT, contrastive
and best (SFT and contrastive tied where not distinguishable); trained models have fewer
under-fitted layers than the untrained one; whether each loss curve settled; the sign of every
ablation the committed run found significant (Holm-adjusted p < 0.05). A conclusion that flips
fails the check even when every number is in tolerance, and so does a dataset whose content hash
differs from the committed one.

`slm4offer check [--committed REF]` compares `results/` with the committed files of git
REF (default HEAD), read from git, never from the working tree.
"""

from __future__ import annotations

import atexit
import io
import json
import math
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slm4offer.config import repo_root
from slm4offer.errors import CannotRun
from slm4offer.experiments.ablations import counterpart
from slm4offer.experiments.metrics import (
    METRICS,
    Metric,
    acceptance_table,
    comparisons,
    paper_gain,
    read_decisions,
    with_holm,
)
from slm4offer.experiments.systems import SYSTEMS
from slm4offer.report.findings import direction

K = 3.0  # standard errors of a difference allowed between a rerun and the committed run
ORDER = tuple(name for name, system in SYSTEMS.items() if system.ranked)
CHECKED = ("acceptance.csv", "acceptance_paired.csv", "acceptance_gain.csv", "judge_validation.json",
           "table1_layers.csv", "loss_stabilisation.csv", "ablations.csv")


def opt_in_targets(committed: Path) -> dict[str, str]:
    """Committed result files that `make all` does not write, each with the target that does: a
    rerun without them skips them. The ablations, and every domain table but the main one
    (`acceptance.csv`), with its data card."""
    return {"ablations.csv": "make ablations",
            **{f"{stem}_{d}.{ext}": "make new-domain" for d in domain_tables(committed)
               for stem, ext in (("acceptance", "csv"), ("data_card", "json"))}}


@dataclass(frozen=True)
class Number:
    """One number: the committed value, this run's, and how far it may move."""

    name: str
    key: tuple          # what it is, for other modules to look it up: ("acceptance", "rate", system, judge), ...
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
    missing: list[str]      # committed result files this run lacks
    partial: bool = False   # True: a partial rerun, missing files are skipped rather than failed
    skipped: list[str] = field(default_factory=list)  # opt-in results this run did not make

    @property
    def ok(self) -> bool:
        return not self.failures()

    def failures(self) -> list[str]:
        out = [] if self.partial else [f"missing in this run: results/{m} (run make all)" for m in self.missing]
        out += [f"conclusion changed: {c.name}: committed '{c.committed}', now '{c.now}'"
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

def _get(table: pd.DataFrame, key, column: str = "mean") -> float:
    """A value of this run's table, NaN where the run lacks the row (a failure unless partial)."""
    return float(table.loc[key, column]) if key in table.index else math.nan


def rerun_tolerance(spread: float, seeds: int) -> float:
    """K standard errors of the difference of two means over `seeds` draws with this `spread` each."""
    return K * spread * math.sqrt(2 / seeds)


def seed_tolerance(std: float, seeds: int, p: float, n_personas: int) -> float:
    """A rate's rerun tolerance, its seed spread floored at one seed's binomial spread (module docstring)."""
    floor = math.sqrt(max(p * (1 - p), 0) / n_personas) if n_personas else 0.0
    return rerun_tolerance(max(std, floor), seeds)


def fixed_tolerance(judge: str, n_personas: int) -> float:
    """No training involved: exact for the simulated customer, a persona or two for the learned judge."""
    return 0.0 if judge == "simulated" else max(2 / n_personas, 0.01)


def check_name(label: str, metric: Metric, system: str, judge: str) -> str:
    """A checked number's name: the thresholded rate keeps the table's own name ("acceptance: sft,
    simulated judge"), another metric says which ("acceptance (expected): sft, simulated judge")."""
    suffix = "" if metric.key == "rate" else f" ({metric.key})"
    return f"{label}{suffix}: {system}, {judge} judge"


def acceptance_numbers(committed: pd.DataFrame, now: pd.DataFrame, label: str,
                       reference: pd.DataFrame | None = None) -> list[Number]:
    """Each (judge, system) mean of an acceptance table under every metric it has; `reference`
    lends its seed spread to 1-seed tables."""
    c, n = committed.set_index(["judge", "system"]), now.set_index(["judge", "system"])
    ref = reference.set_index(["judge", "system"]) if reference is not None else None
    out = []
    for metric in METRICS.values():
        mean, spread = metric.mean, metric.std
        if mean not in c.columns:
            continue
        for (judge, system), row in c.iterrows():
            if pd.isna(row[mean]):  # a judge that gave no probabilities
                continue
            personas = int(row["judged"] // row["seeds"])
            if system not in SYSTEMS or SYSTEMS[system].trained:  # an ablation variant is a trained model
                std, basis = row[spread], f"{int(row['seeds'])} seeds' spread"
                if row["seeds"] < 2 and ref is not None:
                    std, basis = ref.loc[(judge, "contrastive"), spread], "main table's contrastive seed spread"
                tol = seed_tolerance(std, int(row["seeds"]), row[mean], personas)
            else:
                tol, basis = fixed_tolerance(judge, personas), "no training: same data, same verdicts"
            out.append(Number(check_name(label, metric, system, judge), (label, metric.key, system, judge),
                              row[mean], _get(n, (judge, system), mean), tol, basis))
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
        tol = rerun_tolerance(max(std, floor), len(d))
        basis = f"{len(d)} seeds' paired spread"
        gain_c = c.loc[(judge, "contrastive"), "mean"] - c.loc[(judge, "sft"), "mean"]
        gain_n = _get(n, (judge, "contrastive")) - _get(n, (judge, "sft"))
        out.append(Number(f"gain in points, {judge} judge", ("gain", judge), gain_c, gain_n, tol, basis))
        sft_c, sft_n = c.loc[(judge, "sft"), "mean"], _get(n, (judge, "sft"))
        out.append(Number(f"relative gain, {judge} judge", ("relative gain", judge), gain_c / sft_c, gain_n / sft_n,
                          tol / sft_c, basis + " / SFT rate"))
    return out


def validation_numbers(committed: dict, now: dict) -> list[Number]:
    a = committed["raw_agreement"]
    se_agreement = math.sqrt(a * (1 - a) / committed["n"])
    se_kappa = (committed["kappa_high"] - committed["kappa_low"]) / (2 * 1.96)
    return [Number("judge agreement", ("judge agreement",), a, now["raw_agreement"], rerun_tolerance(se_agreement, 1),
                   f"binomial SE on {committed['n']} samples"),
            Number("Cohen's kappa", ("kappa",), committed["kappa"], now["kappa"], rerun_tolerance(se_kappa, 1),
                   "bootstrap 95% CI width", scale=1)]


def layer_numbers(committed: pd.DataFrame, now: pd.DataFrame) -> list[Number]:
    c, n = committed.set_index("model"), now.set_index("model")
    return [Number(f"Table 1 under-fitted layers: {m}", ("layers", m), r["under-fitted (mean)"],
                   _get(n, m, "under-fitted (mean)"),
                   rerun_tolerance(max(r["under-fitted (std)"], 1.0), int(r["seeds"])),
                   f"{int(r['seeds'])} seeds' spread (at least 1 layer)", scale=1)
            for m, r in c.iterrows()]


# --- conclusions ----------------------------------------------------------------------------------

def acceptance_conclusions(table: pd.DataFrame, gain: pd.DataFrame) -> dict[str, str]:
    """Contrastive against SFT, and the order of the systems, under each judge.

    Contrastive against SFT is the direction of the thresholded rate's seed-level interval (higher,
    lower, not distinguishable), not a comparison of two means: a difference inside the seed noise
    would flip on any rerun. For the same reason the order shows the two as a tie (`≈`) then."""
    out, t = {}, table.set_index(["judge", "system"])
    rate = METRICS["rate"].label
    for judge in sorted({j for j, _ in t.index}):
        rates = {s: t.loc[(judge, s), "mean"] for s in ORDER if (judge, s) in t.index}
        row = gain[(gain["judge"] == judge) & (gain["a"] == "sft") & (gain["b"] == "contrastive")
                   & (gain["metric"] == rate)]
        said = direction(row.iloc[0], "seed_" if "seed_ci_low" in row else "") if len(row) else "missing"
        out[f"contrastive vs SFT (95% interval over seeds), {judge} judge"] = said
        order = sorted(rates, key=lambda s: rates[s])
        if said == "not distinguishable" and {"sft", "contrastive"} <= set(order):
            at = min(order.index("sft"), order.index("contrastive"))
            order = [s for s in order if s not in ("sft", "contrastive")]
            order.insert(at, "contrastive ≈ sft")
        out[f"order of the systems, {judge} judge"] = " < ".join(order)
    return out


def layer_conclusions(table: pd.DataFrame) -> dict[str, str]:
    layers = table.set_index("model")["under-fitted (mean)"]
    return {"trained models have fewer under-fitted layers than the untrained one": str(
        bool(layers["sft"] < layers["initial"] and layers["contrastive"] < layers["initial"]))}


def curve_conclusions(curves: pd.DataFrame) -> dict[str, str]:
    out = {}
    for _, r in curves[curves["curve"] == "eval_loss"].iterrows():
        settled = r["stable from epoch"]
        out[f"{r['model']} validation loss settled"] = "no" if pd.isna(settled) else f"from epoch {int(settled)}"
    return out


def ablation_signs(committed: Path, now: Path) -> list[Conclusion]:
    """Signs of the ablations the committed run found significant, read in this run whatever its p,
    each against its counterpart (the main recipe, or for a scorer row the main recipe's scorer)."""
    c, n = pd.read_csv(committed / "ablations.csv"), pd.read_csv(now / "ablations.csv")
    out = []
    for r in c[c["p_holm"] < 0.05].itertuples():
        ref = counterpart(r.system)

        def sign(t, judge=r.judge, system=r.system, ref=ref):
            rows = t[t["judge"] == judge].set_index("system")["mean"]
            if system not in rows.index or ref not in rows.index:
                return "missing"
            return "worse" if rows[system] < rows[ref] else "better"
        out.append(Conclusion(f"ablation '{r.system}' vs {ref}, {r.judge} judge", sign(c), sign(n)))
    return out


# --- comparison -----------------------------------------------------------------------------------

def compare(committed: Path, now: Path, partial: bool = False) -> Report:
    """Every checked number and conclusion of `now` against `committed` (two results folders).

    A result file `now` lacks is a failure, or with `partial` (a rerun of some stages only) skipped.
    """
    def both(name: str) -> bool:
        return (committed / name).is_file() and (now / name).is_file()

    def read(name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        return pd.read_csv(committed / name), pd.read_csv(now / name)

    domains = domain_tables(committed)
    names = list(dict.fromkeys([n for n in CHECKED if (committed / n).is_file()] + list(domains.values())
                               + sorted(p.name for p in committed.glob("data_card_*.json"))))
    absent = [n for n in names if not (now / n).is_file()]
    opt_in = opt_in_targets(committed)
    missing = [n for n in absent if n not in opt_in]
    skipped = [f"{n} ({opt_in[n]})" for n in absent if n in opt_in]
    numbers: list[Number] = []
    claims: dict[str, tuple[str, str]] = {}
    main_c = pd.read_csv(committed / "acceptance.csv")  # its seed spread also serves the 1-seed tables
    if both("acceptance.csv"):
        main_n = pd.read_csv(now / "acceptance.csv")
        numbers += acceptance_numbers(main_c, main_n, "acceptance")
        numbers += gain_numbers(pd.read_csv(committed / "acceptance_paired.csv"), main_c, main_n)
        gain_c, gain_n = (pd.read_csv(d / "acceptance_gain.csv") if (d / "acceptance_gain.csv").is_file()
                          else pd.DataFrame(columns=["judge", "a", "b", "metric"]) for d in (committed, now))
        claims |= _pairs(acceptance_conclusions(main_c, gain_c), acceptance_conclusions(main_n, gain_n))
    if both("judge_validation.json"):
        numbers += validation_numbers(*(json.loads((d / "judge_validation.json").read_text())
                                        for d in (committed, now)))
    if both("table1_layers.csv"):
        c, n = read("table1_layers.csv")
        numbers += layer_numbers(c, n)
        claims |= _pairs(layer_conclusions(c), layer_conclusions(n))
    if both("loss_stabilisation.csv"):
        claims |= _pairs(*(curve_conclusions(t) for t in read("loss_stabilisation.csv")))
    for domain, name in domains.items():
        if both(name):
            numbers += acceptance_numbers(*read(name), domain, main_c)
    if both("ablations.csv"):
        numbers += acceptance_numbers(*read("ablations.csv"), "ablation", main_c)
    conclusions = [Conclusion(k, c, n) for k, (c, n) in claims.items()] + dataset_hashes(committed, now)
    if both("ablations.csv"):
        conclusions += ablation_signs(committed, now)
    if partial:  # rows this run lacks (a judge not run, say) are skipped like its missing files
        numbers = [x for x in numbers if not math.isnan(x.now)]
        conclusions = [x for x in conclusions if x.now != "missing"]
    return Report(numbers, conclusions, missing, partial, skipped)


def domain_tables(results: Path) -> dict[str, str]:
    """Domain -> its acceptance table (`acceptance_<domain>.csv`), other than the main one."""
    tables = {}
    for path in sorted(results.glob("acceptance_*.csv")):
        if not path.stem.endswith(("_paired", "_gain", "_threshold_sweep")):
            tables[path.stem.removeprefix("acceptance_")] = path.name
    return tables


def _pairs(committed: dict[str, str], now: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {k: (v, now.get(k, "missing")) for k, v in committed.items()}


def dataset_hashes(committed: Path, now: Path) -> list[Conclusion]:
    """Each data card's content hash (first 16 hex digits shown): must be the same on every machine."""
    out = []
    for path in sorted(committed.glob("data_card_*.json")):
        digest = json.loads(path.read_text()).get("provenance", {}).get("dataset_sha256")
        if digest and (now / path.name).is_file():
            current = json.loads((now / path.name).read_text()).get("provenance", {}).get("dataset_sha256")
            out.append(Conclusion(f"dataset content hash, {path.stem.removeprefix('data_card_')}", digest[:16],
                                  (current or "missing")[:16]))
    return out


def committed_results(ref: str = "HEAD", root: Path | None = None) -> Path:
    """`results/` as committed at git `ref`, unpacked into a temp folder removed when the process ends."""
    root = root or repo_root()
    try:
        blob = subprocess.run(["git", "archive", "--format=tar", ref, "results"], cwd=root, capture_output=True,
                              check=True, timeout=60).stdout
    except subprocess.CalledProcessError as exc:
        raise CannotRun(f"cannot read results/ at git ref {ref!r}: {exc.stderr.decode().strip()}") from exc
    except OSError as exc:  # no git on this machine
        raise CannotRun(f"cannot read results/ at git ref {ref!r}: {exc}") from exc
    folder = Path(tempfile.mkdtemp(prefix="slm4offer-committed-"))
    atexit.register(shutil.rmtree, folder, True)  # a copy for this process only
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "results"


def markdown(report: Report, committed: str, results: Path, provenance: dict | None = None) -> str:
    """The report as Markdown, with what was compared and (when given) the rerun's provenance."""
    try:
        shown = results.resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        shown = results.name  # outside the repository: no machine-specific path in the report
    lines = ["# make check: a rerun against the committed results", "",
             f"Committed: `results/` at git `{committed}` ({_commit(committed)}). This run: `{shown}`"
             + (" (partial rerun: files it lacks are skipped)." if report.partial else "."), ""]
    if provenance:
        lines += ["This run's provenance:", "", "```json", json.dumps(provenance, indent=1, sort_keys=True), "```", ""]
    lines += [report.table().to_markdown(index=False), ""]
    failures = report.failures()
    if failures:
        lines += [f"**FAILED** ({len(failures)} of {len(report.numbers) + len(report.conclusions)}):", "",
                  *("- " + f for f in failures)]
    else:
        lines.append(f"**Passed**: {len(report.numbers)} numbers within tolerance, "
                     f"{len(report.conclusions)} conclusions unchanged.")
    if report.partial and report.missing:
        lines += ["", "Not in this run (skipped): " + ", ".join(report.missing) + "."]
    if report.skipped:
        lines += ["", "Opt-in results this run did not make (skipped): " + ", ".join(report.skipped) + "."]
    return "\n".join(lines) + "\n"


def _commit(ref: str) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", ref], cwd=repo_root(), capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"


# --- recomputing the committed tables from their decisions -------------------------------------

def _differences(saved: pd.DataFrame, now: pd.DataFrame, keys: list[str], what: str) -> list[str]:
    saved, now = saved.set_index(keys), now.set_index(keys)
    out = [f"{what}: rows {sorted(set(saved.index) ^ set(now.index))} are in only one of them"] \
        if set(saved.index) != set(now.index) else []
    for column in saved.columns.intersection(now.columns):
        a, b = saved[column], now[column].reindex(saved.index)
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            bad = ~(np.isclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-12, equal_nan=True))
        else:
            bad = a.astype(str) != b.astype(str)
        out += [f"{what} {key}, {column}: saved {a[key]}, recomputed {b[key]}" for key in a.index[bad]]
    return out


def recompute(results: Path, name: str = "acceptance") -> list[str]:
    """Recompute `results/<name>.csv` and `<name>_gain.csv` from `results/decisions/<name>.csv`;
    returns every difference (none: the committed tables follow from the committed decisions)."""
    decisions = read_decisions(results / "decisions" / f"{name}.csv")
    table = acceptance_table(decisions)
    saved = pd.read_csv(results / f"{name}.csv")
    out = _differences(saved, table.astype({"system": str}), ["system", "judge"], name)
    gain_file = results / f"{name}_gain.csv"
    if gain_file.is_file():
        gain = pd.read_csv(gain_file)
        ours = gain[gain["judge"] != paper_gain()["judge"]]
        now = comparisons(decisions, list(dict.fromkeys(zip(ours["a"], ours["b"], strict=True))))
        if "p_holm" in ours:
            now = with_holm(now)
        out += _differences(ours, now, ["judge", "metric", "a", "b"], f"{name}_gain")
    return out
