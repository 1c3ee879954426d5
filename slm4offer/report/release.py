"""A model to hand on: the trained contrastive model with its catalogue, its code and a model card.

`slm4offer release` (after `make all`) copies the cached contrastive model of a profile's training
seed to `models/<name>/`; `slm4offer train --output-dir DIR` and `slm4offer release --data D
--output-dir DIR` do the same for any trained model, your own data's included. The folder holds
the weights in `save_pretrained` format (no pickled training state), the tokenizer, the
training provenance, the catalogue its `offer_id`s refer to, `offer_t5.py` (the model class, with
`auto_map` in config.json, so plain transformers loads the projection head too) and `README.md`,
a model card with the Hugging Face Hub's YAML header (licence, library, task, tags and a
model-index of its acceptance with confidence intervals), written from the results folder: what
it was trained on and how, how well it does, what it is for and what it is not for.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from slm4offer.cache import CATALOG_FILE, dataset_fingerprint
from slm4offer.config import Config, data_name, dataset_label, repo_root
from slm4offer.data.dataset import SPLITS, build_dataset, load_data_card
from slm4offer.experiments import metrics
from slm4offer.files import atomic_dir, replaceable_folder, write_json, write_text
from slm4offer.model import offer_t5
from slm4offer.model.training import INFO_FILE, TrainedModel, train
from slm4offer.stats import wilson_ci

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", INFO_FILE, CATALOG_FILE)
CODE_FILE = "offer_t5.py"
# transformers' convention for a model class that ships with its weights (trust_remote_code=True)
AUTO_MAP = {"AutoModel": "offer_t5.OfferT5", "AutoModelForSeq2SeqLM": "offer_t5.OfferT5"}
LICENSE = "mit"
# The model-index entries of a card: (metric type, column of `seed_rates`, what it is)
CARD_METRICS = (
    ("acceptance", "thresholded rate", "acceptance rate (P(accept) at or above the threshold)"),
    ("acceptance_ci_low", "ci_low", "acceptance rate, lower bound of the Wilson 95% CI over test personas"),
    ("acceptance_ci_high", "ci_high", "acceptance rate, upper bound of the Wilson 95% CI over test personas"),
    ("expected_acceptance", "expected acceptance", "expected acceptance (mean P(accept), off-catalogue = 0)"),
)


def release_dir(cfg: Config) -> Path:
    return repo_root() / "models" / f"slm4offer-{data_name(cfg)}-contrastive-{cfg.profile}"


def seed_rates(results: Path, seed: int) -> pd.DataFrame | None:
    """This seed's contrastive (and SFT) acceptance per judge from the decisions in `results`: the
    thresholded rate with its Wilson 95% CI (one seed: the test personas are the only sample) and
    the expected acceptance; None where the model was not evaluated."""
    path = results / "decisions" / "acceptance.csv"
    if not path.is_file():
        return None
    decisions = metrics.read_decisions(path)
    expected = metrics.outcomes(decisions, "expected")
    rows = []
    for (system, judge), group in decisions[(decisions["seed"] == seed)
                                            & decisions["system"].isin(["sft", "contrastive"])].groupby(
            ["system", "judge"]):
        judged = group[group["error"].isna()]
        ci = wilson_ci(int(judged["accept"].astype(bool).sum()), len(judged))
        rows.append({"system": system, "judge": judge, "personas": ci.n, "thresholded rate": ci.rate,
                     "ci_low": ci.low, "ci_high": ci.high,
                     "expected acceptance": float(expected.loc[group.index].mean()),
                     "in catalogue": float(group["in_catalogue"].astype(bool).mean())})
    return pd.DataFrame(rows) if rows else None


def card_metadata(name: str, data: str, label: str, rates: pd.DataFrame | None) -> str:
    """The YAML header the Hub reads (`huggingface_hub.ModelCard`): licence, library, task, tags and
    a model-index with each judge's acceptance and its 95% CI bounds."""
    from huggingface_hub import EvalResult, ModelCardData

    results = []
    if rates is not None:
        for _, r in rates[rates["system"] == label].iterrows():
            for metric, column, about in CARD_METRICS:
                results.append(EvalResult(
                    task_type="text2text-generation", dataset_type="slm4offer", dataset_name=data,
                    dataset_split="test", metric_type=metric, metric_value=round(float(r[column]), 4),
                    metric_name=f"{about}, {r['judge']} judge"))
    meta = ModelCardData(license=LICENSE, library_name="transformers", pipeline_tag="text2text-generation",
                         tags=["t5", "marketing", "personalisation", "contrastive-learning", "infonce", "slm4offer"],
                         model_name=name, eval_results=results or None)
    return f"---\n{meta.to_yaml()}\n---\n"


def _tuned(info: dict) -> str:
    tuning = info.get("tuning") or {}
    return " (chosen by `slm4offer tune` on validation)" if tuning.get("tuned") else " (not searched)"


def _selection(info: dict) -> str:
    """Which epoch was kept, on what, out of how many run (models trained before selection: the last)."""
    s = info.get("selection")
    if not s or s.get("best_epoch") is None:
        return "the last epoch's weights."
    return (f"the weights of epoch {s['best_epoch']:g} of the {s['epochs_run']:g} run, the best on the "
            f"{s['criterion']} ({100 * s['best_value']:.1f}%).")


def model_card(cfg: Config, info: dict, results: Path, folder_name: str) -> str:
    """The card's text from the model's training_info, its dataset and the results folder."""
    prov, label = info["provenance"], info["label"]
    rates = seed_rates(results, cfg.train_seed)
    example = build_dataset(cfg, progress=False)["test"][0]["persona"]  # builds the dataset if it is not cached
    card = load_data_card(cfg.dataset_dir)
    c = prov["config"]
    data = dataset_label(cfg)
    if cfg.data:
        source = (f"your own campaign log, `{data_name(cfg)}` ({card['personas']['kept']:,} personas, "
                  f"{card['personas']['dropped_no_acceptance']:,} dropped for accepting nothing; a catalogue of "
                  f"{card['catalog']['offers']} offers)")
    else:
        source = (f"the synthetic `{c['domain']}` world of this repository (world seed {c['seed']}, "
                  f"{c['n_personas']:,} personas, a catalogue of {card['catalog']['offers']} offers)")
    if label == "sft":
        recipe = ("the SFT baseline of SLM4Offer (arXiv 2508.15471): cross-entropy on the offers personas "
                  "accepted, no contrastive term. Its embedding space is untrained, so it does not rank offers.")
    else:
        recipe = (f"the SLM4Offer recipe (arXiv 2508.15471): cross-entropy on the offers personas accepted plus "
                  f"an InfoNCE term that pulls each persona towards the offers it accepted and away from those it "
                  f"rejected (λ = {c['lam']}, τ = {c['tau']}, negatives {c['negatives']}). Its learned similarity "
                  "also ranks a catalogue for a persona.")
    ranks = label != "sft"
    rank_command = (f"\nslm4offer offers --model {folder_name} --personas new.csv --catalog offers.csv --top-k 3 "
                    "--out ranked.csv") if ranks else ""
    rank_code = (f"\n\ncatalogue = [json.loads(line)[\"offer\"] for line in open(\"{folder_name}/{CATALOG_FILE}\")]"
                 "\nscores = model.score_offers(tokenizer, persona, catalogue)  # what `offers --catalog` ranks by"
                 "\nprint(sorted(zip(scores, catalogue), reverse=True)[:3])") if ranks else ""
    start = ("T5 initialised from scratch, not T5-Small" if info["source_kind"] == "scratch"
             else f"initialised from {info['source']['location']}")
    return card_metadata(folder_name, data, label, rates) + f"""
# {folder_name}

A T5 that writes a personalised marketing offer for a customer persona, trained with
{recipe}

## What it is

- **Weights**: {info['source_kind']} ({start}), {info['parameters']:,} parameters: d_model {c['d_model']},
  {c['num_layers']}+{c['num_layers']} layers, {c['num_heads']} heads.
- **Data**: {source}; {info['train_examples']:,} training examples (persona → accepted offer), split
  {' / '.join(str(card['personas'][s]) for s in SPLITS)} personas (train / validation / test). Dataset content hash
  `{dataset_fingerprint(cfg.dataset_dir)}`.
- **Training**: at most {c['epochs']} epochs, {info['steps']:,} optimiser steps, batch {c['batch_size']}, learning
  rate {c['learning_rate']}{_tuned(info)}, training seed {c['train_seed']}; {_selection(info)}
  Profile `{prov['profile']}`, commit `{prov['git_commit']}`,
  torch {prov['numerics']['torch']} on {prov['numerics']['device']} ({prov['numerics']['threads']} threads).
  `{INFO_FILE}` holds the whole provenance; `{CATALOG_FILE}` the catalogue its offer ids refer to.

## How well it does

{_performance(cfg, label, rates, results)}

## Intended use

A model to start from: writing or choosing offers for personas written like its training data's,
a baseline to fine-tune further on your own campaign data, a fixture for tests and demonstrations.

## Limits

- It knows only its catalogue; its offers name that catalogue's products and it has no knowledge
  of real products, prices or regulation.
- A generated offer may not be in the catalogue (`slm4offer offers` marks each one with
  `in_catalogue`); check an offer against your catalogue before sending it, or rank the catalogue
  instead, which only ever returns catalogue offers.
- Personas phrased unlike its training data's get little personalisation. Targeting offers at
  people raises fairness and compliance questions that this model does not address.

## Use

```bash
slm4offer offers --model {folder_name} --personas new.csv --out offers.csv                 # generate{rank_command}
```

With transformers alone (`offer_t5.py` in this folder holds the model class; nothing else to install):

```python
import json
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
model = AutoModelForSeq2SeqLM.from_pretrained("{folder_name}", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("{folder_name}")
persona = {json.dumps(example, ensure_ascii=False)}
ids = model.generate(**tokenizer([persona], return_tensors="pt"), max_new_tokens={c['max_offer_tokens']})
print(tokenizer.batch_decode(ids, skip_special_tokens=True)[0]){rank_code}
```

Licence: MIT, as the repository.
"""


def _performance(cfg: Config, label: str, rates: pd.DataFrame | None, results: Path) -> str:
    if rates is None or label not in set(rates["system"]):
        flag = f" --data {cfg.data}" if cfg.data else ""
        return (f"Not evaluated yet: `slm4offer evaluate --profile {cfg.profile}{flag}` writes its acceptance "
                "table, and a release after it puts the numbers here.")
    by = rates.set_index(["system", "judge"])
    lines = []
    def rate(r: pd.Series) -> str:
        return f"{100 * r['thresholded rate']:.1f}% [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"

    for judge in sorted(set(rates["judge"])):
        r = by.loc[(label, judge)]
        sft = rate(by.loc[("sft", judge)]) if ("sft", judge) in by.index else "–"
        lines.append(f"| {judge} | {rate(r)} | {100 * r['expected acceptance']:.1f}% | {sft} | "
                     f"{100 * r['in catalogue']:.0f}% |")
    text = f"""Acceptance of its greedy offer for each of the test personas (never seen in training),
from the per-persona decisions (`{(results / 'decisions' / 'acceptance.csv').relative_to(repo_root())
                                  if results.is_relative_to(repo_root()) else 'decisions/acceptance.csv'}`,
training seed {cfg.train_seed}). Thresholded rate: the judge accepts when P(accept) ≥ {cfg.accept_threshold}, with
the Wilson 95% CI over personas (one model, so training noise is not in it); expected acceptance:
mean P(accept), an offer outside the catalogue counting as 0.

| judge | thresholded rate [95% CI] | expected acceptance | SFT baseline, same seed | offers in the catalogue |
|---|---|---|---|---|
{chr(10).join(lines)}
"""
    table = results / "acceptance.csv"
    if table.is_file():
        seeds = pd.read_csv(table)
        seeds = seeds[seeds["system"] == label]
        context = "; ".join(f"{r.judge} judge {100 * r.mean:.1f}% ± {100 * r.std:.1f} [{100 * r.ci_low:.1f}, "
                            f"{100 * r.ci_high:.1f}]" for r in seeds.itertuples())
        text += (f"\nOver {int(seeds['seeds'].max())} training seeds of the same recipe: {context} (mean ± std, CI "
                 "over seeds and personas).")
    if not cfg.data:
        text += (" The simulated judge is the synthetic world's ground truth; the learned judge is a stand-in "
                 "for an LLM judge (agreement with the truth in `results/judge_validation.md`). The paper reports "
                 "94% for its own model under an LLM judge; `REPRODUCE.md` explains why the levels differ.")
    return text


def export_model(trained: TrainedModel, out: Path, card: str) -> Path:
    """Write `trained` (weights, tokenizer, provenance, catalogue, model code) and `card` to `out`,
    all or nothing; `out` must be new, empty or an export written before (it is replaced)."""
    with atomic_dir(replaceable_folder(out, (INFO_FILE, "config.json"))) as tmp:
        for name in MODEL_FILES:
            shutil.copyfile(trained.path / name, tmp / name)  # a plain copy: readable by everyone
        shutil.copyfile(offer_t5.__file__, tmp / CODE_FILE)
        config = json.loads((tmp / "config.json").read_text())
        write_json(tmp / "config.json", {**config, "auto_map": AUTO_MAP})
        write_text(tmp / "README.md", card)
    return out


def export(cfg: Config, out: Path | None = None, kind: str = "contrastive", progress: bool = True) -> Path:
    """The trained `kind` model of `cfg` (trained now if not cached) with its card, written to
    `out` (default: `models/slm4offer-<data>-contrastive-<profile>/`); returns the folder."""
    trained = train(cfg, kind, progress=progress)
    out = Path(out) if out is not None else release_dir(cfg)
    return export_model(trained, out, model_card(cfg, trained.info, cfg.results_dir, out.name))
