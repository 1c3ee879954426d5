"""Figures a reviewer can put in a paper: each function builds one and returns it, unsaved.

`outputs.save_figure` writes it as PNG + PDF with its provenance.
"""

from __future__ import annotations

import datasets
import matplotlib.pyplot as plt  # headless runs fall back to Agg; notebooks keep inline display
import numpy as np
import pandas as pd

from slm4offer.domains import Domain
from slm4offer.experiments import metrics
from slm4offer.experiments.systems import SYSTEMS

plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "font.size": 9,
                     "axes.spines.top": False, "axes.spines.right": False})


def attribute_distributions(dd: datasets.DatasetDict, domain: Domain) -> plt.Figure:
    """One panel per persona attribute: histogram (integers) or shares of personas (others)."""
    df = pd.concat([dd[s].to_pandas() for s in dd], ignore_index=True)
    names = list(domain.attributes)
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        attr = domain.attributes[name]
        if attr.type == "integer":
            ax.hist(df[name], bins=30, color="#4c72b0")
            for low, _ in list(attr.segments.values())[1:]:
                ax.axvline(low, color="0.3", lw=0.8, ls="--")
            ax.set_ylabel("personas")
        else:
            values = df[name].explode() if attr.type == "multi" else df[name]
            shares = values.value_counts().reindex(list(attr.values), fill_value=0) / len(df)
            ax.barh(shares.index, shares.values, color="#55a868")
            ax.invert_yaxis()
            ax.set_xlabel("share of personas")
        ax.set_title(name.replace("_", " "))
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Persona attributes ({domain.name}, n={len(df)}; dashed lines: segment bounds)")
    fig.tight_layout()
    return fig


def acceptance_by_segment(table: pd.DataFrame, base_rate: float, domain: Domain) -> plt.Figure:
    """Campaign acceptance per attribute level, Wilson 95% CIs, overall rate as a line."""
    attrs = list(dict.fromkeys(table["attribute"]))
    heights = [max(1.2, 0.28 * (table["attribute"] == a).sum()) for a in attrs]
    fig, axes = plt.subplots(len(attrs), 1, figsize=(6.0, sum(heights) + 0.8),
                             gridspec_kw={"height_ratios": heights}, sharex=True)
    for ax, attr in zip(axes, attrs, strict=True):
        t = table[table["attribute"] == attr]
        err = [t["rate"] - t["ci_low"], t["ci_high"] - t["rate"]]
        ax.barh(t["level"], t["rate"], xerr=err, color="#4c72b0", ecolor="0.25", capsize=2)
        ax.axvline(base_rate, color="#c44e52", lw=1, ls="--")
        ax.invert_yaxis()
        ax.set_ylabel(attr.replace("_", " "), rotation=0, ha="right", va="center")
    axes[-1].set_xlabel("acceptance rate of shown offers (Wilson 95% CI; dashed: overall)")
    fig.suptitle(f"Historical campaign: acceptance by persona segment ({domain.name})")
    fig.tight_layout()
    return fig


PARTS = (("loss", "total loss"), ("ce", "cross-entropy (generation)"), ("infonce", "InfoNCE (contrastive)"))


def learning_curves(runs: dict[str, list[dict]], title: str) -> plt.Figure:
    """Loss parts per epoch for each run, log scale: train per logging step (thin line), train
    epoch means (circles, mid-epoch) and validation (squares, epoch end). A part a run did not
    train on (SFT's InfoNCE) shows validation only."""
    fig, axes = plt.subplots(1, len(PARTS), figsize=(10.5, 3.0))
    for ax, (part, label) in zip(axes, PARTS, strict=True):
        for run, logs in runs.items():
            c = system_color(run)
            steps = [(log["epoch"], log[part]) for log in logs if part in log and "eval_loss" not in log
                     and "train_runtime" not in log]
            if steps:
                ax.plot(*zip(*steps, strict=True), color=c, lw=0.7, alpha=0.45)
            epoch = [(log["epoch"] - 0.5, log[f"train_epoch_{part}"]) for log in logs
                     if f"train_epoch_{part}" in log]
            if epoch:
                ax.plot(*zip(*epoch, strict=True), "o-", color=c, ms=3, lw=1.2, label=f"{run} train")
            val = [(log["epoch"], log[f"eval_{part}"]) for log in logs if f"eval_{part}" in log]
            if val:
                ax.plot(*zip(*val, strict=True), "s--", color=c, ms=3, lw=1.2, label=f"{run} validation")
        ax.set_title(label)
    return _finish_loss_panels(fig, axes, title)


def _finish_loss_panels(fig: plt.Figure, axes, title: str) -> plt.Figure:
    """Shared by the loss figures: log-scale epoch axes, one legend below, the title."""
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        plain_log_ticks(ax)
    axes[0].set_ylabel("loss (log scale)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(1, len(labels)), frameon=False,
               bbox_to_anchor=(0.5, -0.08))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plain_log_ticks(ax: plt.Axes) -> None:
    """Tick labels like 0.3 and 20 on a log axis (instead of 3x10^-1), only at 1, 2, 3 and 5
    times a power of ten so that they do not crowd."""
    from matplotlib.ticker import FuncFormatter

    def label(x, _):
        lead = round(x / 10 ** np.floor(np.log10(x))) if x > 0 else 0
        return f"{x:g}" if lead in (1, 2, 3, 5) else ""

    ax.yaxis.set_major_formatter(FuncFormatter(label))
    ax.yaxis.set_minor_formatter(FuncFormatter(label))


def similarity_histograms(scores: dict[str, pd.DataFrame], title: str) -> plt.Figure:
    """Persona–offer cosine of accepted vs rejected offers, one panel per model state.

    Each frame has columns `accepted` (bool) and `similarity`; the panel title gives the AUC of
    telling accepted from rejected by similarity (0.5 = no signal).
    """
    from sklearn.metrics import roc_auc_score

    fig, axes = plt.subplots(1, len(scores), figsize=(4.2 * len(scores), 3.0), sharey=True, squeeze=False)
    for ax, (name, df) in zip(axes[0], scores.items(), strict=True):
        bins = np.linspace(df["similarity"].min(), df["similarity"].max(), 40)
        for accepted, color, label in ((True, "#55a868", "accepted"), (False, "#c44e52", "rejected")):
            ax.hist(df.loc[df["accepted"] == accepted, "similarity"], bins=bins, color=color, alpha=0.55,
                    density=True, label=f"{label} (n={int((df['accepted'] == accepted).sum())})")
        auc = roc_auc_score(df["accepted"], df["similarity"])
        ax.set_title(f"{name}: AUC {auc:.3f}")
        ax.set_xlabel("cosine similarity (persona, offer)")
    axes[0, 0].set_ylabel("density")
    axes[0, -1].legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# One colour per system in every figure (loss curves, layers, acceptance, sweeps), from the
# systems' registry; judges are told apart by hatching. Ablation variants other than the main
# recipe and λ = 0 are grey.
OTHER_COLORS = {"initial": "#999999", "main recipe": SYSTEMS["contrastive"].color,
                "λ = 0 (sft)": SYSTEMS["sft"].color}
OTHER_COLOR = "#7f7f7f"
JUDGE_HATCHES = {"simulated": "", "learned": "////", "llm": "...."}


def system_color(name: str) -> str:
    name = str(name).lower()
    return SYSTEMS[name].color if name in SYSTEMS else OTHER_COLORS.get(name, OTHER_COLOR)


def acceptance_bars(table: pd.DataFrame, decisions: pd.DataFrame, paper: dict[str, float],
                    caption: str) -> plt.Figure:
    """Acceptance per system and judge: bars = mean over seeds in the system's colour (hatched per
    judge), whiskers = the table's 95% CI, dots = single seeds, black diamonds = the paper's
    numbers (its own LLM judge)."""
    from matplotlib.patches import Patch

    systems = list(table["system"].cat.categories)
    judges = sorted(set(table["judge"]), key=lambda j: list(JUDGE_HATCHES).index(j) if j in JUDGE_HATCHES else 9)
    width = 0.8 / len(judges)
    fig, ax = plt.subplots(figsize=(max(7.2, 0.9 * len(systems)), 3.6))
    colors = [system_color(s) for s in systems]
    for i, judge in enumerate(judges):
        rows = table[table["judge"] == judge].set_index("system").reindex(systems)
        x = np.arange(len(systems)) - 0.4 + width * (i + 0.5)
        ax.bar(x, 100 * rows["mean"], width * 0.9, color=colors, edgecolor="black", linewidth=0.4,
               hatch=JUDGE_HATCHES.get(judge, "xx"))
        ax.errorbar(x, 100 * rows["mean"], yerr=[100 * (rows["mean"] - rows["ci_low"]),
                                                 100 * (rows["ci_high"] - rows["mean"])],
                    fmt="none", ecolor="black", elinewidth=0.9, capsize=2.5)
        judged = decisions[(decisions["judge"] == judge) & decisions["error"].isna()]
        per_seed = judged.groupby(["system", "seed"], observed=True)["accept"].mean().reset_index()
        for j, system in enumerate(systems):
            values = per_seed.loc[per_seed["system"] == system, "accept"]
            if len(values) > 1:
                ax.plot(np.full(len(values), x[j]), 100 * values, "o", ms=2.5, color="black", alpha=0.6)
    handles: list = [Patch(facecolor="white", edgecolor="black", hatch=JUDGE_HATCHES.get(j, "xx"), label=f"{j} judge")
               for j in judges]
    shown = [s for s in systems if s in paper]
    for system in shown:
        ax.plot(systems.index(system), 100 * paper[system], "D", color="black", ms=6, zorder=5)
    if shown:
        handles.append(plt.Line2D([], [], marker="D", color="black", ls="none", label="paper (LLM judge)"))
    crowded = len(systems) > 5
    ax.set_xticks(np.arange(len(systems)), systems, rotation=25 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel("offers accepted (%)")
    ax.set_ylim(0, 105)
    ax.legend(handles=handles, frameon=False, ncol=len(handles), loc="upper left", fontsize=8)
    fig.text(0.01, -0.02, caption, ha="left", va="top", wrap=True, fontsize=7)
    fig.tight_layout()
    return fig


def threshold_sweep(sweep: pd.DataFrame, threshold: float, caption: str) -> plt.Figure:
    """The thresholded rate of every system as the judge's threshold moves (one panel per judge);
    the dotted line is the threshold the tables use."""
    judges = list(dict.fromkeys(sweep["judge"]))
    fig, axes = plt.subplots(1, len(judges), figsize=(4.2 * len(judges), 3.2), sharey=True, squeeze=False)
    for ax, judge in zip(axes[0], judges, strict=True):
        for system, group in sweep[sweep["judge"] == judge].groupby("system", sort=False, observed=True):
            style = "--" if "+" in str(system) or system == "catalog by similarity" else "-"
            ax.plot(group["threshold"], 100 * group["rate"], style, marker="o", ms=2.5, lw=1.3,
                    color=system_color(system), label=str(system))
        ax.axvline(threshold, color="black", ls=":", lw=0.9)
        ax.set_title(f"{judge} judge")
        ax.set_xlabel("accept when P(accept) ≥ threshold")
    axes[0, 0].set_ylabel("offers accepted (%)")
    axes[0, -1].legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.text(0.01, -0.02, caption, ha="left", va="top", wrap=True, fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrix(table: np.ndarray, reference: str, judge: str, title: str) -> plt.Figure:
    """The 2x2 counts (rows: reference label, columns: the judge), with row percentages."""
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    shares = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (r, c), n in np.ndenumerate(table):
        ax.text(c, r, f"{n}\n({100 * shares[r, c]:.0f}% of row)", ha="center", va="center",
                color="white" if shares[r, c] > 0.6 else "black")
    ax.set_xticks([0, 1], ["accept", "reject"])
    ax.set_yticks([0, 1], ["accept", "reject"])
    ax.set_xlabel(f"{judge} judge")
    ax.set_ylabel(f"reference: {reference}")
    ax.set_title(title)
    fig.tight_layout()
    return fig


STATE_MARKERS = {"initial": "o", "sft": "s", "contrastive": "D"}


def layer_alpha(alphas: pd.DataFrame, threshold: float, title: str) -> plt.Figure:
    """Power-law alpha of every layer (x: the model's layers in order) per model state; the
    dashed line is the under-fitting threshold."""
    order = list(dict.fromkeys(alphas["layer"]))
    fig, ax = plt.subplots(figsize=(10.5, 3.6))
    for state, group in alphas.groupby("state", sort=False):
        color, marker = system_color(state), STATE_MARKERS.get(state, "^")
        x = [order.index(layer) for layer in group["layer"]]
        ax.plot(x, group["alpha"], marker, color=color, ms=4, alpha=0.85,
                label=f"{state}: {int(group['under_fitted'].sum())} of {len(group)} layers > {threshold:g}")
    ax.axhline(threshold, color="black", ls="--", lw=0.8)
    ax.set_xticks(range(len(order)), [name.replace("layer.", "").replace("block.", "b") for name in order],
                  rotation=90, fontsize=6)
    ax.set_ylabel("power-law alpha (log scale)")
    ax.set_yscale("log")
    plain_log_ticks(ax)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def epoch_curves(tables: dict[str, pd.DataFrame], stable: dict[str, int | None], title: str) -> plt.Figure:
    """The paper's Figure 6 layout: total, CE and InfoNCE loss per epoch, train (solid) and
    validation (dashed) per model; a dotted line where a model's validation loss settles."""
    fig, axes = plt.subplots(1, len(PARTS), figsize=(10.5, 3.0))
    for ax, (part, label) in zip(axes, PARTS, strict=True):
        for model, table in tables.items():
            for prefix, style, kind in (("train_epoch_", "o-", "train"), ("eval_", "s--", "validation")):
                if f"{prefix}{part}" in table:
                    ax.plot(table.index, table[f"{prefix}{part}"], style, color=system_color(model), ms=3, lw=1.2,
                            label=f"{model} {kind}")
            if stable.get(model) is not None:
                ax.axvline(stable[model], color=system_color(model), ls=":", lw=1)
        ax.set_title(label)
    return _finish_loss_panels(fig, axes, title)


def size_figure(table: pd.DataFrame, caption: str) -> plt.Figure:
    """Left: thresholded acceptance of SFT and contrastive against parameters (log scale), per judge,
    whiskers = seed std; right: the gain with its 95% CI, per judge."""
    t = table[table["metric"] == metrics.METRICS["rate"].label]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    markers = {"simulated": "o", "learned": "s", "llm": "^"}
    for judge, rows in t.groupby("judge"):
        marker = markers.get(judge, "o")
        for kind, color in (("sft", "tab:gray"), ("contrastive", "tab:blue")):
            left.errorbar(rows["parameters"], 100 * rows[kind], yerr=100 * rows[f"{kind}_std"], marker=marker,
                          color=color, capsize=3, linestyle="-" if judge == "simulated" else "--",
                          label=f"{kind}, {judge} judge")
        right.errorbar(rows["parameters"], rows["gain_points"],
                       yerr=[rows["gain_points"] - rows["gain_ci_low"], rows["gain_ci_high"] - rows["gain_points"]],
                       marker=marker, capsize=3, label=f"{judge} judge")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(sorted(t["parameters"].unique()))
        ax.set_xticklabels([f"{p / 1e6:.2g}M\n(d_model {w})" for p, w in
                            sorted(set(zip(t["parameters"], t["d_model"], strict=True)))])
        ax.minorticks_off()
        ax.set_xlabel("parameters")
    right.axhline(0, color="black", linewidth=0.8)
    left.set_ylabel("thresholded acceptance (%)")
    right.set_ylabel("contrastive − SFT (points, 95% CI)")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    left.set_title("Acceptance (mean ± std over seeds)", fontsize=9)
    right.set_title("Contrastive gain, paired on seeds and personas", fontsize=9)
    fig.suptitle(caption, fontsize=7, wrap=True, y=-0.02, va="top")
    fig.tight_layout()
    return fig
