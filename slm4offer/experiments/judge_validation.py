"""Can the judge be trusted? Its verdicts on sampled (persona, generated offer) pairs vs reference labels.

The paper validated its LLM judge on 200 samples against human annotators (94% agreement,
chi-square p < 0.001). Here the reference is a human-label CSV when one is given (columns
persona_id, offer, label; template in `examples/judge_labels/`), else the simulated customer,
which knows the truth of the synthetic world. The report gives the 2x2 table, chi-square
(association), raw agreement and Cohen's kappa with a bootstrap CI (agreement beyond chance).
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slm4offer import paper
from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.data.userdata import VOCABULARY, DataValidationError, outcome, read_records
from slm4offer.errors import InvalidValue
from slm4offer.judges import Judge, check_judge, make_judge
from slm4offer.model.generation import generate
from slm4offer.model.training import KINDS
from slm4offer.stats import Agreement, agreement

LABEL_COLUMNS = ("persona_id", "offer", "label")
JUDGE_CHUNK = 20_000  # pairs judged at a time: a label file of any size is judged in bounded memory


@dataclass
class JudgeValidation:
    sample: pd.DataFrame   # persona_id, persona, offer, source, reference, judge (bool), judge_reason
    reference: str         # "simulated customer" or the label file's name
    judge: str
    errors: int            # judge errors (no verdict), left out of the statistics
    result: Agreement


def validation_sample(cfg: Config, n: int | None = None, progress: bool = True) -> pd.DataFrame:
    """`n` (default `judge_samples`) pairs drawn from the SFT and contrastive offers of the first
    training seed for the test personas; all of them when there are fewer."""
    pool = []
    for kind in KINDS:
        for row in generate(cfg, kind, split="test", progress=progress):
            pool.append({"persona_id": row["persona_id"], "persona": row["persona"], "offer": row["offer"],
                         "source": kind})
    n = min(n or cfg.judge_samples, len(pool))
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(31,)))
    picked = sorted(rng.choice(len(pool), size=n, replace=False).tolist())
    return pd.DataFrame([pool[i] for i in picked])


def load_labels(path: str | Path, personas: dict[str, dict], training_ids: Set[str] = frozenset()) -> pd.DataFrame:
    """Human labels from a CSV or JSONL file (persona_id, offer, label), read like a campaign log:
    the same outcome words (`userdata.VOCABULARY`), and one error naming the file, physical line
    and field.

    `personas`: the dataset's rows by persona_id; `training_ids`: personas the judge learned
    from, which cannot validate it.
    """
    path = Path(path)
    # Column lists with one string object per distinct id and offer, and each pair as one integer in an
    # array: memory stays a fraction of the file's size however many rows it has.
    names = list(personas)
    index = {pid: k for k, pid in enumerate(names)}
    texts: dict[str, str] = {}  # each distinct offer text, kept once
    numbers: dict[str, int] = {}
    ids: list[str] = []
    offers: list[str] = []
    labels: list[bool] = []
    pairs, lines = array("q"), array("q")
    for line, raw in read_records(path, LABEL_COLUMNS):
        pid, offer = (str(raw.get(c) if raw.get(c) is not None else "").strip() for c in LABEL_COLUMNS[:2])
        if pid not in personas:
            raise DataValidationError(path, line, "persona_id", f"{pid!r} is not a persona of the dataset")
        if pid in training_ids:
            raise DataValidationError(path, line, "persona_id", f"{pid!r} is a training persona, which the "
                                      "learned judge has seen; label validation or test personas")
        if not offer:
            raise DataValidationError(path, line, "offer", "empty")
        label = outcome(raw["label"])
        if label is None:
            raise DataValidationError(path, line, "label", f"{raw['label']!r} is not an outcome: use {VOCABULARY}")
        offer = texts.setdefault(offer, offer)
        pairs.append(index[pid] * (1 << 32) + numbers.setdefault(offer, len(numbers)))
        lines.append(line)
        ids.append(names[index[pid]])  # the dataset's own string, not one per row
        offers.append(offer)
        labels.append(label)
    if len(ids) < 2:
        raise DataValidationError(path, None, None, f"{len(ids)} labelled row(s): agreement needs at least 2")
    _refuse_duplicates(path, np.frombuffer(pairs, dtype=np.int64), np.frombuffer(lines, dtype=np.int64))
    columns = {"persona_id": ids, "persona": [personas[p]["persona"] for p in ids], "offer": offers}
    # object columns point at the shared strings; pandas' default string columns would copy every row's text
    return pd.DataFrame({**{k: pd.Series(v, dtype=object) for k, v in columns.items()},
                         "source": path.name, "reference": labels})


def _refuse_duplicates(path: Path, pairs: np.ndarray, lines: np.ndarray) -> None:
    """The first row that repeats an earlier (persona_id, offer) pair is an error naming both lines."""
    order = np.argsort(pairs, kind="stable")
    repeats = np.flatnonzero(pairs[order][1:] == pairs[order][:-1]) + 1
    if len(repeats):
        second = min(repeats, key=lambda k: lines[order[k]])  # the earliest repeat in the file
        first = lines[order[np.searchsorted(pairs[order], pairs[order][second])]]
        raise DataValidationError(path, int(lines[order[second]]), None,
                                  f"duplicate of line {int(first)} (same persona_id and offer)")


def validate_judge(cfg: Config, judge: str = "learned", labels: str | Path | None = None,
                   progress: bool = True) -> JudgeValidation:
    """Judge the sample with `judge` and compare with the reference labels."""
    check_judge(cfg, judge)  # before offers are generated (and models trained) for the sample
    dd = build_dataset(cfg, progress=progress)
    personas = {row["persona_id"]: row for split in dd.values() for row in split}
    if labels:
        training = set(dd["train"]["persona_id"]) if judge == "learned" else set()
        sample, reference = load_labels(labels, personas, training), Path(labels).name
    else:
        sample, reference = validation_sample(cfg, progress=progress), "simulated customer"
        truth = make_judge(cfg, "simulated", progress=progress)
        sample["reference"] = [d.accept for d in truth([personas[p] for p in sample["persona_id"]],
                                                       list(sample["offer"]))]
    verdicts, reasons = judge_in_chunks(make_judge(cfg, judge, progress=progress), personas, sample)
    sample["judge"] = pd.Series(verdicts, index=sample.index, dtype=object)
    sample["judge_reason"] = pd.Series(reasons, index=sample.index, dtype=object)  # shared strings, not copies
    judged = np.array([v is not None for v in verdicts], dtype=bool)
    result = agreement(sample["reference"].to_numpy(dtype=bool)[judged],
                       np.array([bool(v) for v in verdicts if v is not None], dtype=bool), seed=cfg.seed)
    return JudgeValidation(sample, reference, judge, int((~judged).sum()), result)


def judge_in_chunks(judge: Judge, personas: dict[str, dict], sample: pd.DataFrame,
                    chunk: int = JUDGE_CHUNK) -> tuple[list[bool | None], list[str | None]]:
    """Each pair's verdict (None: an error) and reason (or error), judged `chunk` pairs at a time, so
    that only one chunk's decisions are held at once."""
    verdicts: list[bool | None] = []
    reasons: list[str | None] = []
    seen: dict[str | None, str | None] = {}  # a reason repeated over many pairs is kept once
    for start in range(0, len(sample), chunk):  # one chunk's strings at a time (pandas may hold them in Arrow)
        ids, offers = (sample[c].iloc[start:start + chunk].tolist() for c in ("persona_id", "offer"))
        for d in judge([personas[p] for p in ids], offers):
            reason = d.reason or d.error
            verdicts.append(d.accept)
            reasons.append(seen.setdefault(reason, reason))
    return verdicts, reasons


@dataclass
class PoolAgreement:
    """A judge against the reference judge over every pair both judged in an acceptance run: the
    whole pool beside the sample, and per system, since a judge may err more on one system's offers."""

    result: Agreement
    by_system: pd.DataFrame  # system, pairs, agreement, sensitivity, specificity
    judge: str
    reference: str


def pool_agreement(decisions: pd.DataFrame, judge: str = "learned", reference: str = "simulated",
                   seed: int = 0) -> PoolAgreement:
    """Agreement of `judge` with `reference` over every (system, seed, persona) of `decisions` (a
    run's per-persona decisions, `metrics.read_decisions`) where both gave a verdict."""
    verdicts = decisions[decisions["error"].isna()].pivot_table(
        index=["system", "seed", "persona_id"], columns="judge", values="accept", aggfunc="first", observed=True,
        dropna=False)
    if not {judge, reference} <= set(verdicts.columns):
        raise InvalidValue(f"the decisions have judges {sorted(verdicts.columns)}; need {judge} and {reference}")
    both = verdicts[[reference, judge]].dropna().astype(bool).reset_index()
    rows = []
    for system, group in both.groupby("system", sort=False, observed=True):
        r, j = group[reference].to_numpy(), group[judge].to_numpy()
        rows.append({"system": str(system), "pairs": len(group), "agreement": float((r == j).mean()),
                     "sensitivity": float(j[r].mean()) if r.any() else np.nan,
                     "specificity": float((~j[~r]).mean()) if (~r).any() else np.nan})
    result = agreement(both[reference].to_numpy(), both[judge].to_numpy(), seed=seed)
    return PoolAgreement(result, pd.DataFrame(rows), judge, reference)


def summary(v: JudgeValidation) -> pd.DataFrame:
    """Ours beside the paper's: samples, raw agreement, chi-square and p, kappa with its CI."""
    r = v.result
    ours = {"samples": f"{r.n}" + (f" (+{v.errors} judge errors left out)" if v.errors else ""),
            "reference labels": v.reference, "judge": v.judge,
            "raw agreement": f"{100 * r.raw_agreement:.1f}%",
            "chi-square (Yates), p": f"{r.chi2:.1f}, p = {r.chi2_pvalue:.2g}",
            "Cohen's kappa [95% bootstrap CI]": f"{r.kappa:.3f} " + (
                f"[{r.kappa_low:.3f}, {r.kappa_high:.3f}]" if np.isfinite([r.kappa_low, r.kappa_high]).all()
                else "[CI undefined: too few samples, some resamples have a single label]")}
    theirs = {"samples": f"{paper.JUDGE_SAMPLES}", "reference labels": "human annotators", "judge": "LLM",
              "raw agreement": f"{100 * paper.JUDGE_AGREEMENT:.0f}%",
              "chi-square (Yates), p": f"not reported, p {paper.JUDGE_CHI2_P}",
              "Cohen's kappa [95% bootstrap CI]": "not reported"}
    return pd.DataFrame({"ours": ours, "paper": theirs})


def contingency_table(v: JudgeValidation) -> pd.DataFrame:
    """The 2x2 counts with margins: rows the reference labels, columns the judge's."""
    table = pd.DataFrame(v.result.table, index=["reference: accept", "reference: reject"],
                         columns=[f"{v.judge} judge: accept", f"{v.judge} judge: reject"])
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    return table


def as_record(v: JudgeValidation) -> dict:
    """The numbers of a validation, for results/judge_validation.json."""
    return {**{k: (val.tolist() if isinstance(val, np.ndarray) else val)
               for k, val in dataclasses.asdict(v.result).items()},
            "table_rows": "reference accept, reference reject", "table_columns": "judge accept, judge reject",
            "reference": v.reference, "judge": v.judge, "judge_errors": v.errors}
