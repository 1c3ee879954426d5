"""The "our number" side of REPRODUCE.md, written from `results/` so that no number is typed.

Each number is given with the tolerance a rerun is held to (`check.py` derives it from the
measured seed spread) and at the precision that tolerance supports.

`slm4offer reproduce` (run by `make all`) rewrites the block between the markers in
REPRODUCE.md only when a conclusion changed against the committed results (a rerun on another
machine moves numbers within their tolerances: `make check` shows them). `--write` rewrites it
always: run it when new results are to be committed. A test fails when the committed block and
the committed results disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from slm4offer import paper
from slm4offer.cache import stage_hash
from slm4offer.config import Config
from slm4offer.errors import InvalidValue
from slm4offer.experiments import metrics, size_study
from slm4offer.files import write_text
from slm4offer.report import check, findings

START, END = "<!-- numbers:start (written by slm4offer reproduce) -->", "<!-- numbers:end -->"


def _decimals(tolerance: float) -> int:
    """Digits after the point that a number moving by up to `tolerance` (display units) supports."""
    return 0 if tolerance >= 2 else 1 if tolerance >= 0.2 else 2


def _with_tolerance(x: float, tolerance: float, scale: float = 100, unit: str = "%", sign: bool = False,
                    note: str = "") -> str:
    """`x` rounded to what its rerun tolerance supports, followed by that tolerance (and `note`)."""
    tol, fmt = tolerance * scale, "+" if sign else ""
    note = f"; {note}" if note else ""
    if tol == 0:
        return f"{x * scale:{fmt}.1f}{unit} (exact{note})"
    d = _decimals(tol)
    return f"{x * scale:{fmt}.{d}f}{unit} (±{tol:.{d}f}{note})"


def tolerances(results: Path) -> dict[tuple, float]:
    """Each checked number's rerun tolerance, by its key in `check` (from these results alone)."""
    return {n.key: n.tolerance for n in check.compare(results, results).numbers}


def headline_rows(results: Path, tol: dict[tuple, float]) -> list[str]:
    table = pd.read_csv(results / "acceptance.csv").set_index(["judge", "system"])
    tests = pd.read_csv(results / "acceptance_paired.csv")
    gain = pd.read_csv(results / "acceptance_gain.csv")
    rows = []
    for judge in sorted({j for j, _ in table.index}):
        sft, con = table.loc[(judge, "sft")], table.loc[(judge, "contrastive")]
        t = tests[tests["judge"] == judge]
        diff = con["mean"] - sft["mean"]
        rows.append(
            f"| acceptance, {judge} judge | {paper.ACCEPTANCE['sft']:.0%} → {paper.ACCEPTANCE['contrastive']:.0%} "
            f"(LLM judge) | mean of {int(sft['seeds'])} seeds: SFT "
            f"{_with_tolerance(sft['mean'], tol['acceptance', 'rate', 'sft', judge])}, contrastive "
            f"{_with_tolerance(con['mean'], tol['acceptance', 'rate', 'contrastive', judge])}; gain "
            f"{_with_tolerance(diff, tol['gain', judge], unit=' points', sign=True)} (paper "
            f"{100 * (paper.ACCEPTANCE['contrastive'] - paper.ACCEPTANCE['sft']):+.0f} points); contrastive higher in "
            f"{int((t['contrastive_rate'] > t['sft_rate']).sum())} of {len(t)} seeds, McNemar p < 0.05 in "
            f"{int((t['mcnemar_p'] < 0.05).sum())} | `results/acceptance.md` |")
        g = gain[(gain["judge"] == judge) & (gain["a"] == "sft") & (gain["b"] == "contrastive")]
        cells = "; ".join(f"{r.metric}: SFT {100 * r.a_value:.1f}%, contrastive {100 * r.b_value:.1f}%, "
                          f"{r.points:+.1f} points [{r.ci_low:+.1f}, {r.ci_high:+.1f}]" for r in g.itertuples())
        rows.append(f"| gain under every metric, {judge} judge | one metric (LLM verdicts) | {cells} (95% CI, "
                    f"bootstrap over seeds and personas) | `results/acceptance_gain.csv` |")
        if (judge, "best") in table.index and (judge, "random") in table.index:
            cells = ", ".join(f"{label} "
                              f"{_with_tolerance(table.loc[(judge, s), 'mean'], tol['acceptance', 'rate', s, judge])}"
                              for s, label in (("random", "random offer"), ("popular", "most popular"),
                                               ("best", "each persona's best offer")))
            others = ", ".join(f"{s} {100 * r['mean']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"
                               for s in ("sft+rerank", "contrastive+rerank", "catalog by similarity")
                               if (judge, s) in table.index for r in [table.loc[(judge, s)]])
            rows.append(f"| baselines, {judge} judge | not reported | {cells}" + (f"; {others}" if others else "")
                        + " | `results/acceptance.md` |")
    return rows


def validation_rows(results: Path, tol: dict[tuple, float]) -> list[str]:
    v = json.loads((results / "judge_validation.json").read_text())
    kappa = _with_tolerance(v["kappa"], tol["kappa",], scale=1, unit="")
    pool = v.get("pool")
    over_all = (f"; over all {pool['n']:,} judged pairs of the acceptance table: {100 * pool['raw_agreement']:.1f}% "
                f"agreement, κ = {pool['kappa']:.2f} [{pool['kappa_low']:.2f}, {pool['kappa_high']:.2f}]"
                if pool else "")
    return [f"| judge validation | LLM vs humans: {paper.JUDGE_AGREEMENT:.0%} agreement on {paper.JUDGE_SAMPLES}, "
            f"χ² p {paper.JUDGE_CHI2_P} | {v['judge']} judge vs {v['reference']}: "
            f"{_with_tolerance(v['raw_agreement'], tol['judge agreement',])} agreement on {v['n']}, χ² = "
            f"{v['chi2']:.0f} (p = {v['chi2_pvalue']:.0e}), Cohen's κ = {kappa} "
            f"[{v['kappa_low']:.2f}, {v['kappa_high']:.2f}]{over_all} | `results/judge_validation.md` |"]


def layer_rows(results: Path, tol: dict[tuple, float]) -> list[str]:
    t = pd.read_csv(results / "table1_layers.csv").set_index("model")
    cells = []
    for m, r in t.iterrows():
        tolerance, note = tol["layers", m], f"seed sd {r['under-fitted (std)']:.1f}"
        cells.append(f"{m} {_with_tolerance(r['under-fitted (mean)'], tolerance, scale=1, unit='', note=note)}")
    ours = ", ".join(cells)
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


def made_by_this_code(record: dict) -> bool:
    """Whether a manifest record's output came from this package's code: its settings, hashed with
    the code as it is now, give the stage hash it was recorded with."""
    try:
        return stage_hash(Config(**record["config"]), record["stage"]) == record["stage_hash"]
    except (KeyError, TypeError, ValueError):  # a record from before a field was added or removed
        return False


def other_code_notes(results: Path, names: tuple[str, ...]) -> dict[str, str]:
    """For each of `names` (files in `results/`) made by other training or generation code than the
    headline, a note saying so: an opt-in result not rerun since the method changed. Where this code
    made the headline, a result's own record says whether this code made it too; where it did not
    (the code moved on since), the two records' commits are all that tells their code apart."""
    made = json.loads((results / "manifest.json").read_text())["artifacts"] if (results / "manifest.json").is_file() \
        else {}
    headline = made.get("results/acceptance.csv")
    if not headline:
        return {}
    headline_current = made_by_this_code(headline)
    notes = {}
    for name in names:
        this = made.get(f"results/{name}")
        if not this:
            continue
        other = (not made_by_this_code(this) if headline_current
                 else this.get("git_commit") != headline.get("git_commit"))
        if other:
            notes[name] = (f" (other code than the headline's: commit {this.get('git_commit', '?')[:7]}, "
                           "not rerun since)")
    return notes


def domain_rows(results: Path, tol: dict[tuple, float], notes: dict[str, str]) -> list[str]:
    rows = []
    for domain, name in check.domain_tables(results).items():
        path = results / name
        t = pd.read_csv(path).set_index(["judge", "system"])
        judge = "simulated" if ("simulated", "sft") in t.index else t.index[0][0]
        cells = ", ".join(f"{s} {_with_tolerance(t.loc[(judge, s), 'mean'], tol[domain, 'rate', s, judge])}"
                          for s in check.ORDER if (judge, s) in t.index)
        rows.append(f"| new domain: {domain} | not run (future work) | {judge} judge, "
                    f"{int(t.loc[(judge, 'sft'), 'seeds'])} seed(s): {cells}{notes.get(name, '')} "
                    f"| `results/{path.stem}.md` |")
    return rows


def _shown_judge(every: pd.DataFrame) -> pd.DataFrame:
    """The rows of the judge a one-line summary shows: the simulated customer where it judged, else the first."""
    judges = list(every["judge"])
    return every[every["judge"] == ("simulated" if "simulated" in judges else judges[0])]


def ablation_rows(results: Path, tol: dict[tuple, float], notes: dict[str, str]) -> list[str]:
    path = results / "ablations.csv"
    if not path.is_file():
        return []
    every = pd.read_csv(path)
    t = _shown_judge(every)
    cells = ", ".join(f"{r.system} {_with_tolerance(r.mean, tol['ablation', 'rate', r.system, r.judge])}"
                      + (" *" if r.p_holm < 0.05 else "") for r in t.itertuples())
    return [f"| future work: ablations | λ ∈ {{0.2, 0.5, 0.8}}, no hard negatives: not run | {t['judge'].iloc[0]} "
            f"judge, {int(t['seeds'].max())} seed(s): {cells} (* = differs from the main recipe, a scorer row "
            f"from the main recipe's scorer of the same candidates, Holm-adjusted p < 0.05 over "
            f"{int(every['p_vs_main'].notna().sum())} tests){notes.get(path.name, '')} "
            f"| `results/ablations.md` |"]


def size_table(results: Path) -> pd.DataFrame | None:
    """The opt-in size study's table (`make size-study`), where it was run."""
    names = ("size_study.csv", "size_study_gain.csv", "size_study_models.csv")
    if not all((results / n).is_file() for n in names):
        return None
    return size_study.size_table(*(pd.read_csv(results / n) for n in names))


def size_rows(results: Path, notes: dict[str, str]) -> list[str]:
    """The gain at each width of the size study, where it was run."""
    every = size_table(results)
    if every is None:
        return []
    every = every[every["metric"] == metrics.METRICS["rate"].label]
    t = _shown_judge(every)
    cells = ", ".join(f"d_model {r.d_model} ({r.parameters / 1e6:.2g}M) {r.gain_points:+.1f} "
                      f"[{r.gain_ci_low:+.1f}, {r.gain_ci_high:+.1f}]" for r in t.sort_values("d_model").itertuples())
    return [f"| scale of the effect (not in the paper) | one size, T5-Small (60M) | {t['judge'].iloc[0]} judge, "
            f"contrastive − SFT in points with 95% CI, {int(t['seeds'].max())} seeds per width: {cells} "
            f"(opt-in: `make size-study`; CIs, not rerun tolerances){notes.get('size_study.csv', '')} "
            f"| `results/size_study.md` |"]


def findings_lines(results: Path, notes: dict[str, str]) -> list[str]:
    """What this run shows, in sentences written from the result files (`findings.py`)."""
    def csv(name: str) -> pd.DataFrame | None:
        return pd.read_csv(results / name) if (results / name).is_file() else None

    table, gain, tests = csv("acceptance.csv"), csv("acceptance_gain.csv"), csv("acceptance_paired.csv")
    out = ["", "### What this run shows", "",
           "Generated from the same files; every sentence with a number or a direction is written by "
           "`slm4offer/report/findings.py`.", "",
           "**The decision rule, the scorer and the variety controls** (seed-level intervals).", ""]
    out += [f"- {findings.decision(gain)}"]
    out += [f"- {line}" for line in findings.scorer_sentences(gain) + findings.control_sentences(gain)]
    out += ["", "**The headline under each metric.**", ""]
    out += [f"- {line}" for line in findings.headline(table, gain, tests).splitlines()]
    out += [f"- {line}" for line in findings.targeting_sentences(table, gain)]
    out += [f"- {findings.sweep_sentence(csv('acceptance_threshold_sweep.csv'))}"]
    tables = {"main table (finance)": table}
    domains = check.domain_tables(results)
    for domain, name in domains.items():
        tables[f"new domain ({domain})"] = csv(name)
    ablations = csv("ablations.csv")
    if ablations is not None:
        tables["ablations"] = ablations
    out += ["", "**Do the judges agree on the order of the systems?**", ""]
    out += [f"- {line}" for line in findings.judge_agreement(tables)]
    for domain, name in domains.items():
        out += ["", f"**The new domain ({domain}){notes.get(name, '')}.**", ""]
        out += [f"- {line}" for line in findings.domain_sentences(csv(name), csv(f"acceptance_{domain}_gain.csv"),
                                                                  domain)]
    if ablations is not None:
        out += ["", f"**Ablations{notes.get('ablations.csv', '')}.**", ""]
        out += [f"- {line}" for line in findings.ablation_sentences(ablations)]
    sizes = size_table(results)
    if sizes is not None:
        out += ["", f"**Model size (opt-in, `make size-study`){notes.get('size_study.csv', '')}.**", ""]
        out += [f"- {line}" for line in findings.size_sentences(sizes)]
    out += ["", "**Table 1 and Figure 6.**", ""]
    out += [f"- {line}" for line in findings.layer_sentences(csv("table1_layer_alphas.csv"))]
    out += [f"- {findings.curve_sentence(csv('loss_stabilisation.csv'))}"]
    return out


def numbers_block(results: Path) -> str:
    tol = tolerances(results)
    notes = other_code_notes(results, (*check.domain_tables(results).values(), "ablations.csv", "size_study.csv"))
    lines = ["| claim | paper | ours (default profile; (±x) = how far a rerun may move it, (exact) = not at all) "
             "| from |", "|---|---|---|---|"]
    lines += (headline_rows(results, tol) + validation_rows(results, tol) + layer_rows(results, tol)
              + curve_rows(results) + domain_rows(results, tol, notes) + ablation_rows(results, tol, notes)
              + size_rows(results, notes) + findings_lines(results, notes))
    return "\n".join([START, *lines, END])


def update(path: Path, results: Path, committed: Path | None = None) -> str:
    """Rewrite the block in `path` unless only numbers moved (within or beyond tolerance) and every
    conclusion of `committed` still holds in `results`; `committed=None` always rewrites.
    Returns what was done: 'unchanged', 'updated' or 'kept: ...'."""
    text = path.read_text()
    if START not in text or END not in text:
        raise InvalidValue(f"{path}: markers {START!r} … {END!r} not found")
    head, rest = text.split(START, 1)
    new = head + numbers_block(results) + rest.split(END, 1)[1]
    if new == text:
        return "unchanged"
    if committed is not None:
        changed = [c for c in check.compare(committed, results).conclusions if not c.ok]
        if not changed:
            return ("kept: this run's numbers differ from the committed ones but every conclusion holds "
                    "(`make check` compares each number with its tolerance)")
    write_text(path, new)
    return "updated" + ("" if committed is None else " (conclusions changed: " + "; ".join(
        f"{c.name}: {c.committed} -> {c.now}" for c in changed) + ")")
