"""Every result table the project writes: CSV, Markdown and LaTeX with a caption that says what ran.

The experiments return frames and write nothing; each `save_*` / `write_*` here turns one
experiment's frames into `results/` files (and figures where the table has one), each recorded
in the manifest with its provenance (`outputs.py`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from slm4offer import paper, provenance
from slm4offer.config import Config, dataset_label, result_name
from slm4offer.experiments import metrics, tuning
from slm4offer.experiments.ablations import ablation_gains
from slm4offer.experiments.acceptance import AcceptanceResults, AcceptanceRun
from slm4offer.experiments.judge_validation import (
    JudgeValidation,
    PoolAgreement,
    as_record,
    contingency_table,
    summary,
)
from slm4offer.experiments.layers import MIN_EVALS
from slm4offer.experiments.metrics import rate_cell
from slm4offer.experiments.size_study import size_gain_differences, size_gains, size_table
from slm4offer.files import json_text, latex_text
from slm4offer.model import tuned
from slm4offer.model.modeling import resolve_source
from slm4offer.model.selection import ABOUT
from slm4offer.report.figures import acceptance_bars, size_figure, threshold_sweep
from slm4offer.report.outputs import save_figure, save_results


def caption(cfg: Config, run: AcceptanceRun, commit: str, figure: bool = False) -> str:
    seeds = ", ".join(map(str, run.seeds))
    spread = ("Bars: mean over seeds; whiskers: 95% CI; dots: single seeds. " if figure
              else "Mean ± std over seeds, with the 95% CI in brackets. ")
    return (f"Acceptance of the offer each system gives the {run.n_personas} test personas "
            f"({dataset_label(cfg)}, profile {cfg.profile}" + ("" if cfg.data else f", world seed {cfg.seed}") + "; "
            f"T5 {run.model_source}, training seeds {seeds}; judges: "
            f"{', '.join(sorted(set(run.decisions['judge'])))}; accept when P(accept) ≥ {cfg.accept_threshold}; "
            f"rerankers: the contrastive model of the same seed, {cfg.baseline_candidates} beam candidates). "
            f"{spread}CIs: percentile bootstrap over training seeds and personas together "
            f"({metrics.N_RESAMPLES} resamples). {'' if cfg.data else 'Paper: pretrained T5-Small judged by an LLM. '}"
            f"Commit {commit}.")


def metric_legend(threshold: float) -> str:
    """What each metric counts, in one sentence per metric of the registry."""
    return "; ".join(f"{m.label}: {m.about.format(threshold=threshold)}" for m in metrics.METRICS.values()) + "."


def no_probability_note(table: pd.DataFrame) -> str:
    """A sentence for each judge that gave no probabilities, whose metrics other than its verdict are undefined."""
    others = [m for m in metrics.METRICS.values() if m.key != "rate"]
    judges = sorted(j for j, rows in table.groupby("judge") if all(rows[m.mean].isna().all() for m in others))
    return "".join(f" The {j} judge gave no probabilities: its {' and '.join(m.label for m in others)} are not "
                   f"defined ('—'); its comparisons use its verdicts only, and it has no threshold sweep."
                   for j in judges)


def formatted(table: pd.DataFrame, metric: str = "rate", with_paper: bool = True) -> pd.DataFrame:
    """Rows = systems, one column per judge ('46.2 ± 1.3 [43.9, 48.5]') under `metric`, and the paper
    (left out for your own data, which the paper never saw)."""
    cells: dict[str, dict[str, str]] = {}
    for _, r in table.iterrows():
        errors = f" ({r['errors']} errors)" if r["errors"] else ""
        cells.setdefault(r["system"], {})[f"{r['judge']} judge"] = rate_cell(r, metric) + errors
    out = pd.DataFrame.from_dict(cells, orient="index")
    if with_paper:
        out["paper"] = [f"{100 * paper.ACCEPTANCE[s]:.0f}" if s in paper.ACCEPTANCE else "—" for s in out.index]
    out.index.name = "system"
    return out


def offer_facts(table: pd.DataFrame) -> pd.DataFrame:
    """Per system: parse and in-catalogue rates and distinct catalog offers (judge-independent)."""
    first = table[table["judge"] == table["judge"].iloc[0]]
    return first.set_index("system")[["parsed", "in_catalogue", "distinct_offers"]]


def save_acceptance(cfg: Config, res: AcceptanceResults, name: str | None = None) -> list[plt.Figure]:
    """Write `results/<name>.{csv,md,tex}`, `<name>_gain.csv`, `<name>_paired.csv`,
    `<name>_threshold_sweep.csv`, `decisions/<name>.csv` and `figures/<name>{,_threshold_sweep}.{png,pdf}`
    (all recorded in the manifest). Both figures stay open, so a notebook shows them. `name` defaults
    to `config.result_name` ('acceptance' for the paper's domain, 'acceptance_<domain>' otherwise), so
    that one world's table never replaces another's."""
    name = name or result_name(cfg, "acceptance")
    extra = {"model_source": res.run.model_source, "training_seeds": res.run.seeds,
             "judges": sorted(set(res.run.decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    text = caption(cfg, res.run, record["git_commit"])
    with_paper = not cfg.data  # the paper's numbers describe its data, not yours
    table = res.table if with_paper else res.table.drop(columns="paper")
    wide = formatted(res.table, with_paper=with_paper)
    by_metric = pd.concat({m.label: formatted(res.table, m.key, with_paper=False)
                           for m in metrics.METRICS.values()}, axis=1)
    md = (f"# Acceptance rates\n\n{text}\n\n## Thresholded rate (the judge's verdict)\n\n{wide.to_markdown()}\n\n"
          f"## Every metric\n\n{metric_legend(cfg.accept_threshold)}{no_probability_note(res.table)}\n\n"
          f"{by_metric.to_markdown()}\n\n## The offers\n\nShare that parse as an offer of the domain, share in "
          f"the catalogue, and distinct catalog offers given (mean over seeds).\n\n"
          f"{offer_facts(res.table).to_markdown(floatfmt='.3f')}\n\n"
          f"## Comparisons (b − a, paired on seeds and personas)\n\nPoints with the bootstrap 95% CI and "
          f"two-sided p; relative as in the paper, (b − a) / a.\n\n"
          f"{res.gain.to_markdown(index=False, floatfmt='.3g')}\n\n"
          f"## Paired test per seed (exact McNemar, same test personas)\n\n"
          f"{res.tests.to_markdown(index=False, floatfmt='.4g')}\n")
    tex = wide.to_latex(caption=latex_text(text), label=f"tab:{name}", escape=True)
    save_results(cfg, {f"{name}.csv": table.to_csv(index=False), f"{name}.md": md, f"{name}.tex": tex,
                       f"{name}_gain.csv": res.gain.to_csv(index=False),
                       f"{name}_paired.csv": res.tests.to_csv(index=False),
                       f"{name}_threshold_sweep.csv": res.sweep.to_csv(index=False),
                       f"decisions/{name}.csv": metrics.to_wide(res.run.decisions).to_csv(index=False)}, record)
    fig = acceptance_bars(res.table, res.run.decisions, paper.ACCEPTANCE if with_paper else {},
                          caption(cfg, res.run, record["git_commit"], figure=True))
    save_figure(fig, name, cfg, stage="generate", **extra)
    if res.sweep.empty:  # no judge gave probabilities: there is no threshold to move
        return [fig]
    sweep = threshold_sweep(res.sweep, cfg.accept_threshold,
                            f"Acceptance against the judge's threshold ({dataset_label(cfg)}, profile "
                            f"{cfg.profile}, mean over training seeds {', '.join(map(str, res.run.seeds))}; "
                            f"commit {record['git_commit']}).")
    save_figure(sweep, f"{name}_threshold_sweep", cfg, stage="generate", **extra)
    return [fig, sweep]


def save_ablations(cfg: Config, table: pd.DataFrame, decisions: pd.DataFrame, seeds: list[int]) -> plt.Figure:
    """`results/ablations.{csv,md,tex}`, `ablations_gain.csv` (every metric against the main recipe or,
    for a scorer row, the main recipe's scorer), `decisions/ablations.csv` and
    `figures/ablations.{png,pdf}`, recorded in the manifest."""
    extra = {"model_source": resolve_source(cfg).kind, "training_seeds": seeds,
             "judges": sorted(set(decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    caption = (f"Ablations of the contrastive recipe (λ = {cfg.lam:g}, negatives {cfg.negatives}, τ = {cfg.tau:g}): "
               f"acceptance of the offers for the {decisions['persona_id'].nunique()} test personas "
               f"({cfg.domain} world, profile {cfg.profile}, T5 {extra['model_source']}, training seeds "
               f"{', '.join(map(str, seeds))}); mean ± std over seeds and 95% CIs from a bootstrap over seeds and "
               f"personas (with one seed: over personas only, so training noise is not in them); difference from the "
               f"main recipe (a scorer row: from the main recipe's scorer of the same candidates) on the same seeds "
               f"and personas, its p and the Holm-adjusted p over all "
               f"{int(table['p_vs_main'].notna().sum())} "
               f"tests. Commit {record['git_commit']}.")
    shown = table.assign(
        acceptance=[rate_cell(r) for _, r in table.iterrows()],
        expected=(100 * table["expected"]).round(1), in_catalogue=(100 * table["in_catalogue"]).round(1),
        vs_main=["—" if pd.isna(d) else f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                 for d, lo, hi in zip(table["points_vs_main"], table["points_ci_low"], table["points_ci_high"],
                                      strict=True)])
    shown = shown[["system", "changes", "judge", "acceptance", "expected", "in_catalogue", "vs_main", "p_vs_main",
                   "p_holm", "errors"]]
    save_results(cfg, {"ablations.csv": table.to_csv(index=False),
                       "ablations.md": f"# Ablations\n\n{caption}\n\n"
                                       f"{shown.to_markdown(index=False, floatfmt='.3g')}\n",
                       "ablations.tex": shown.to_latex(index=False, caption=latex_text(caption),
                                                       label="tab:ablations", float_format="%.3g"),
                       "ablations_gain.csv": ablation_gains(decisions).to_csv(index=False),
                       "decisions/ablations.csv": metrics.to_wide(decisions).to_csv(index=False)}, record)
    fig = acceptance_bars(table, decisions, {}, caption)
    save_figure(fig, "ablations", cfg, stage="generate", **extra)
    return fig


def save_size_study(cfg: Config, decisions: pd.DataFrame, models: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """`results/size_study.csv` (the acceptance table of every kind and width), `size_study_gain.csv`
    (contrastive − SFT per width), `size_study_gain_differences.csv` (how the gain changes between
    widths, Holm over the pairs), `size_study_models.csv` (parameters and training seconds of every
    model), `size_study.{md,tex}` (the study's table), `decisions/size_study.csv` and
    `figures/size_study.{png,pdf}`, recorded in the manifest. Returns the study's table."""
    extra = {"model_source": resolve_source(cfg).kind, "training_seeds": seeds,
             "judges": sorted(set(decisions["judge"]))}
    record = provenance.collect(cfg, stage="generate", with_time=True, **extra)
    acceptance, gains = metrics.acceptance_table(decisions), size_gains(decisions)
    table = size_table(acceptance, gains, models)
    differences = size_gain_differences(decisions)
    widths = sorted(table["d_model"].unique())
    caption = (f"Contrastive gain against model size: SFT and contrastive (λ = {cfg.lam:g}) at d_model "
               f"{', '.join(map(str, widths))} (d_ff = {cfg.d_ff / cfg.d_model:g}·d_model, "
               f"{cfg.num_layers}+{cfg.num_layers} layers, "
               f"{cfg.epochs} epochs; T5 {extra['model_source']}), {decisions['persona_id'].nunique()} test personas "
               f"({cfg.domain} world, profile {cfg.profile}), training seeds {', '.join(map(str, seeds))}; mean ± std "
               f"over seeds, 95% CIs from a bootstrap over seeds and personas, the gain paired on both. "
               f"Commit {record['git_commit']}.")
    shown = table.assign(gain=[f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]" for d, lo, hi in
                               zip(table["gain_points"], table["gain_ci_low"], table["gain_ci_high"], strict=True)])
    shown = shown[["metric", "judge", "d_model", "parameters", "sft_cell", "contrastive_cell", "gain", "p"]].rename(
        columns={"sft_cell": "SFT", "contrastive_cell": "contrastive", "gain": "contrastive − SFT (points)"})
    between = differences.assign(
        difference=[f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]; seeds [{slo:+.1f}, {shi:+.1f}]" for d, lo, hi, slo, shi in
                    zip(differences["points"], differences["ci_low"], differences["ci_high"],
                        differences["seed_ci_low"], differences["seed_ci_high"], strict=True)])
    between = between[["metric", "judge", "second", "first", "difference", "p", "p_holm"]].rename(
        columns={"second": "gain at", "first": "minus gain at", "difference": "points (bootstrap; seed-level 95% CI)"})
    save_results(cfg, {"size_study.csv": acceptance.to_csv(index=False),
                       "size_study_gain.csv": gains.to_csv(index=False),
                       "size_study_gain_differences.csv": differences.to_csv(index=False),
                       "size_study_models.csv": models.to_csv(index=False),
                       "size_study.md": f"# Contrastive gain against model size\n\n{caption}\n\n"
                                        f"{shown.to_markdown(index=False, floatfmt='.3g')}\n\n"
                                        f"## How the gain changes with width\n\nEach pair of widths: the wider's gain "
                                        f"minus the narrower's, paired on seeds and personas; p Holm-adjusted over the "
                                        f"pairs of widths, per judge and metric.\n\n"
                                        f"{between.to_markdown(index=False, floatfmt='.3g')}\n",
                       "size_study.tex": shown.to_latex(index=False, caption=latex_text(caption),
                                                        label="tab:size_study", float_format="%.3g"),
                       "decisions/size_study.csv": metrics.to_wide(decisions).to_csv(index=False)}, record)
    save_figure(size_figure(table, caption), "size_study", cfg, stage="generate", **extra)
    return table


def save_table1(cfg: Config, summary: pd.DataFrame, alphas: pd.DataFrame, threshold: float) -> list[Path]:
    """`results/table1_layers.{csv,md,tex}` (the summary) and `table1_layer_alphas.csv` (every
    layer, state and seed), recorded in the manifest."""
    seeds = sorted(set(alphas["seed"]))
    record = provenance.collect(cfg, stage="train", with_time=True, training_seeds=seeds, threshold=threshold,
                                model_source=resolve_source(cfg).kind)
    caption = (f"Under-fitted layers (WeightWatcher power-law alpha > {threshold:g}) of the untrained, SFT and "
               f"contrastive T5 ({resolve_source(cfg).kind}, profile {cfg.profile}, training seeds "
               f"{', '.join(map(str, seeds))}; mean and std over seeds; the tied embedding counted once, "
               f"matrices with fewer than {MIN_EVALS} eigenvalues left out). Paper: pretrained T5-Small, "
               f"one run. Commit {record['git_commit']}.")
    shown = summary.round(3)
    return save_results(cfg, {
        "table1_layers.csv": summary.to_csv(),
        "table1_layers.md": f"# Table 1: under-fitted layers\n\n{caption}\n\n{shown.to_markdown()}\n",
        "table1_layers.tex": shown.to_latex(caption=latex_text(caption), label="tab:layers"),
        "table1_layer_alphas.csv": alphas.to_csv(index=False)}, record)


def save_stabilisation(cfg: Config, table: pd.DataFrame, tol: float, window: int) -> list[Path]:
    """`results/loss_stabilisation.{csv,md}`, recorded in the manifest."""
    record = provenance.collect(cfg, stage="train", with_time=True, tol=tol, window=window)
    caption = (f"Epoch from which each validation loss stays within {tol:.0%} of its value for at least {window} "
               f"more epochs and to the end (profile {cfg.profile}, {cfg.epochs} epochs, training seed "
               f"{cfg.train_seed}). Paper (Figure 6): curves settle by about epoch {paper.STABLE_EPOCH} of "
               f"T5-Small fine-tuning. Commit {record['git_commit']}.")
    return save_results(cfg, _csv_and_md("loss_stabilisation", "Loss curves: where they settle", caption, table),
                        record)


def save_selection(cfg: Config, table: pd.DataFrame) -> list[Path]:
    """`results/selection.{csv,md}`: the epoch each model of the acceptance table kept, recorded in the manifest."""
    record = provenance.collect(cfg, stage="train", with_time=True, training_seeds=sorted(set(table["seed"])))
    at_cap = table[table["kept epoch"] >= table["cap"]]
    caption = (f"The epoch each model kept: the best of its epochs on the validation criterion ({ABOUT}), "
               f"training stopped after {cfg.early_stopping_patience} epochs without a gain or at the cap of "
               f"{cfg.epochs} (profile {cfg.profile}). {len(at_cap)} of {len(table)} models kept the cap's last "
               f"epoch, so they were still improving when stopped. Commit {record['git_commit']}.")
    return save_results(cfg, _csv_and_md("selection", "Which epoch each model kept", caption, table), record)


def _csv_and_md(name: str, title: str, caption: str, table: pd.DataFrame) -> dict[str, str]:
    """A table as `<name>.csv`, and as `<name>.md` under its title and caption, for `save_results`."""
    return {f"{name}.csv": table.to_csv(index=False),
            f"{name}.md": f"# {title}\n\n{caption}\n\n{table.to_markdown(index=False, floatfmt='.4g')}\n"}


def write_validation(cfg: Config, v: JudgeValidation, pool: PoolAgreement | None = None) -> list[Path]:
    """`results/judge_validation.{md,json}` and a blind labelling sheet of the same pairs
    (persona_id, persona, offer, empty label) for human annotators to fill in; with `pool`, the
    agreement over every pair of the acceptance run beside the sample's."""
    record = provenance.collect(cfg, stage="dataset", with_time=True, judge=v.judge, reference=v.reference)
    table = contingency_table(v)
    md = (f"# Judge validation: {v.judge} judge vs {v.reference}\n\n{summary(v).to_markdown()}\n\n"
          f"Contingency table:\n\n{table.to_markdown()}\n\nChi-square shows that the judge's labels are "
          "associated with the reference; Cohen's kappa measures how far they agree beyond chance.\n\n")
    extra = {}
    if pool is not None:
        r = pool.result
        md += (f"## Over every judged pair of the acceptance table\n\n{pool.judge} judge vs {pool.reference} on all "
               f"{r.n:,} (system, seed, persona) pairs both judged: raw agreement {100 * r.raw_agreement:.1f}%, "
               f"Cohen's kappa {r.kappa:.3f} [{r.kappa_low:.3f}, {r.kappa_high:.3f}] (the sample above: "
               f"{100 * v.result.raw_agreement:.1f}%, {v.result.kappa:.3f}). Per system (sensitivity: share of the "
               f"reference's accepts the judge accepts; specificity: of its rejects, the share it rejects):\n\n"
               f"{pool.by_system.to_markdown(index=False, floatfmt='.3f')}\n\n")
        extra = {"pool": {**{k: (val.tolist() if isinstance(val, np.ndarray) else val)
                             for k, val in dataclasses.asdict(r).items()},
                          "reference": pool.reference, "by_system": pool.by_system.to_dict(orient="records")}}
    md += f"_Provenance: profile `{cfg.profile}`, seed {cfg.seed}, commit `{record['git_commit']}`._\n"
    sheet = v.sample[["persona_id", "persona", "offer"]].assign(label="")
    return save_results(cfg, {"judge_validation.md": md,
                              "judge_validation.json": json_text({**as_record(v), **extra, "provenance": record}),
                              "judge_labelling_sheet.csv": sheet.to_csv(index=False)}, record)


def tuning_markdown(table: pd.DataFrame, rec: dict) -> str:
    """The search's table for readers: every grid point's criterion, epochs and time; chosen in bold."""
    grid = "; ".join(f"{name} ∈ {{{', '.join(f'{v:g}' for v in values)}}}" for name, values in rec["grid"].items())
    lines = ["# Tuning: the same grid for both methods, chosen on validation", "",
             f"Grid: {grid}; "
             f"epoch cap {rec['epoch_cap']}, early stopping after {rec['early_stopping_patience']} epochs without a "
             f"gain; tuning seed {rec['tuning_seed']} (not an evaluation seed). Criterion: {rec['criterion']}. "
             f"Written by `slm4offer tune` (`make tune`); test personas are not read.", "",
             "| d_model | kind | " + " | ".join(tuning.GRID) + " | criterion (%) | best epoch | epochs run | cap | "
             "train seconds | s/epoch |", "|---|---|" + "---|" * len(tuning.GRID) + "---|---|---|---|---|---|"]
    for row in table.sort_values(["d_model", "kind"], kind="stable").itertuples():
        cells = [f"{getattr(row, name):g}" for name in tuning.GRID]
        value = f"{100 * row.criterion:.1f}"
        lines.append(f"| {row.d_model} | {row.kind} | {' | '.join(cells)} | "
                     f"{f'**{value}**' if row.chosen else value} | {row.best_epoch:g} | {row.epochs_run:g} | "
                     f"{row.epoch_cap} | {row.train_seconds:.0f} | {row.seconds_per_epoch:.0f} |")
    lines += ["", f"Bold: the chosen point of each kind and width, which `make all` trains (`{tuned.RECORD_FILE}`). "
              f"'{tuning.EQUAL_COMPUTE}': SFT given the contrastive cap's training FLOPs (a control; not used by "
              "make all)"]
    if "flop_ratio" in table:
        ratios = table.dropna(subset=["flop_ratio"]).groupby("d_model")["flop_ratio"].first()
        costs = ", ".join(f"{r:.2f}x an SFT one at d_model {w}" for w, r in ratios.items())
        lines[-1] += (f": a contrastive training batch costs {costs} (FlopCounterMode), so its cap is the contrastive "
                      "cap times that, rounded up")
    lines[-1] += ". Train seconds are wall time on the machine that ran it, whatever else ran beside it."
    return "\n".join(lines) + "\n"


def save_tuning(cfg: Config, table: pd.DataFrame) -> dict:
    """`results/tuning.{csv,md,json}` (the profile's results folder; the json is the record training
    reads), recorded in the manifest; rows of widths this search did not run are kept."""
    rec = tuning.record(cfg, table)
    path = cfg.results_dir / "tuning.csv"
    if path.is_file():
        earlier = pd.read_csv(path)
        table = pd.concat([earlier[~earlier["d_model"].isin(set(table["d_model"]))], table], ignore_index=True)
    save_results(cfg, {"tuning.csv": table.to_csv(index=False), "tuning.md": tuning_markdown(table, rec),
                       tuned.RECORD_FILE: json_text(rec)}, rec["provenance"])
    return rec
