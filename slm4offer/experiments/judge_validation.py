"""Can the judge be trusted? Its verdicts on sampled (persona, generated offer) pairs vs reference labels.

The paper validated its LLM judge on 200 samples against human annotators (94% agreement,
chi-square p < 0.001). Here the reference is a human-label CSV when one is given (columns
persona_id, offer, label; template in `examples/judge_labels/`), else the simulated customer,
which knows the truth of the synthetic world. The report gives the 2x2 table, chi-square
(association), raw agreement and Cohen's kappa with a bootstrap CI (agreement beyond chance).
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slm4offer import paper
from slm4offer.config import Config
from slm4offer.data.dataset import build_dataset
from slm4offer.errors import InvalidValue, MissingFile
from slm4offer.judges import make_judge
from slm4offer.model.generation import generate
from slm4offer.stats import Agreement, agreement

LABEL_COLUMNS = ("persona_id", "offer", "label")
LABEL_VALUES = {"accept": True, "reject": False, "1": True, "0": False}


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
    for kind in ("sft", "contrastive"):
        for row in generate(cfg, kind, split="test", progress=progress):
            pool.append({"persona_id": row["persona_id"], "persona": row["persona"], "offer": row["offer"],
                         "source": kind})
    n = min(n or cfg.judge_samples, len(pool))
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(31,)))
    picked = sorted(rng.choice(len(pool), size=n, replace=False).tolist())
    return pd.DataFrame([pool[i] for i in picked])


def load_labels(path: str | Path, personas: dict[str, dict], training_ids: Set[str] = frozenset()) -> pd.DataFrame:
    """Human labels from a CSV, checked row by row; errors name the row and field.

    Rows are numbered from 1 after the header, as in `validate-data` (file line = row + 1).

    `personas`: the dataset's rows by persona_id; `training_ids`: personas the judge learned
    from, which cannot validate it.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"{path}: label file not found")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidValue(f"{path}: missing column(s) {', '.join(missing)} "
                             f"(need {', '.join(LABEL_COLUMNS)}; found {', '.join(reader.fieldnames or []) or 'none'})")
        rows: list[dict] = []
        seen: dict[tuple, int] = {}
        for row, raw in enumerate(reader, start=1):
            where = f"{path}: row {row} (line {row + 1})"
            pid, offer, label = ((raw.get(c) or "").strip() for c in LABEL_COLUMNS)
            if pid not in personas:
                raise InvalidValue(f"{where}, field 'persona_id': {pid!r} is not a persona of the dataset")
            if pid in training_ids:
                raise InvalidValue(f"{where}, field 'persona_id': {pid!r} is a training persona, which the "
                                 "learned judge has seen; label validation or test personas")
            if not offer:
                raise InvalidValue(f"{where}, field 'offer': empty")
            if label.lower() not in LABEL_VALUES:
                raise InvalidValue(f"{where}, field 'label': {label!r} is not one of accept, reject, 1, 0")
            if (pid, offer) in seen:
                raise InvalidValue(f"{where}: duplicate of row {seen[pid, offer]} (same persona_id and offer)")
            seen[pid, offer] = row
            rows.append({"persona_id": pid, "persona": personas[pid]["persona"], "offer": offer,
                         "source": path.name, "reference": LABEL_VALUES[label.lower()]})
    if not rows:
        raise InvalidValue(f"{path}: no labelled rows")
    return pd.DataFrame(rows)


def validate_judge(cfg: Config, judge: str = "learned", labels: str | Path | None = None,
                   progress: bool = True) -> JudgeValidation:
    """Judge the sample with `judge` and compare with the reference labels."""
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
    verdicts = make_judge(cfg, judge, progress=progress)([personas[p] for p in sample["persona_id"]],
                                                          list(sample["offer"]))
    sample["judge"] = [d.accept for d in verdicts]
    sample["judge_reason"] = [d.reason or d.error for d in verdicts]
    judged = sample[sample["judge"].notna()]
    result = agreement(judged["reference"].astype(bool), judged["judge"].astype(bool), seed=cfg.seed)
    return JudgeValidation(sample, reference, judge, int(sample["judge"].isna().sum()), result)


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
