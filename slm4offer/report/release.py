"""A model to start from: the default profile's contrastive model, with a model card.

`slm4offer release` (after `make all`) copies the cached contrastive model of the
default profile's training seed to `models/<name>/` in `save_pretrained` format (weights,
config, tokenizer, training provenance; no pickled training state) and writes its model card,
`README.md`, from the committed results: what it was trained on and how, its acceptance on the
test personas with confidence intervals, what it is for and what it is not for.

It loads with `slm4offer offers --model models/<name>` and with plain transformers
(`T5ForConditionalGeneration.from_pretrained`): the weights are a T5's, and the contrastive
projection head, which only `OfferT5` uses, is ignored there.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from slm4offer.config import Config, domain_name, repo_root, result_name
from slm4offer.experiments import metrics
from slm4offer.files import atomic_dir, write_text
from slm4offer.model.training import INFO_FILE, train
from slm4offer.stats import wilson_ci

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json", INFO_FILE)


def release_dir(cfg: Config) -> Path:
    return repo_root() / "models" / f"slm4offer-{domain_name(cfg.domain)}-contrastive-{cfg.profile}"


def seed_rates(results: Path, seed: int) -> pd.DataFrame:
    """This seed's contrastive (and SFT) acceptance per judge from the committed decisions: the
    thresholded rate with its Wilson 95% CI (one seed: the test personas are the only sample) and
    the expected acceptance."""
    decisions = metrics.read_decisions(results / "decisions" / "acceptance.csv")
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
    return pd.DataFrame(rows)


def model_card(cfg: Config, info: dict, results: Path) -> str:
    """The card's text from the model's training_info and the results folder."""
    prov = info["provenance"]
    rates = seed_rates(results, cfg.train_seed)
    table = pd.read_csv(results / "acceptance.csv")
    card = json.loads((results / f"{result_name(cfg, 'data_card', with_domain=True)}.json").read_text())
    lines = []
    by = rates.set_index(["system", "judge"])
    for judge in sorted(set(rates["judge"])):
        r, sft = by.loc[("contrastive", judge)], by.loc[("sft", judge)]
        lines.append(f"| {judge} | {100 * r['thresholded rate']:.1f}% [{100 * r['ci_low']:.1f}, "
                     f"{100 * r['ci_high']:.1f}] | {100 * r['expected acceptance']:.1f}% | "
                     f"{100 * sft['thresholded rate']:.1f}% [{100 * sft['ci_low']:.1f}, {100 * sft['ci_high']:.1f}] | "
                     f"{100 * r['in catalogue']:.0f}% |")
    seeds = table[table["system"] == "contrastive"]
    context = "; ".join(f"{r.judge} judge {100 * r.mean:.1f}% ± {100 * r.std:.1f} [{100 * r.ci_low:.1f}, "
                        f"{100 * r.ci_high:.1f}]" for r in seeds.itertuples())
    c = prov["config"]
    return f"""# {release_dir(cfg).name}

A T5 that writes a personalised marketing offer for a customer persona, trained with the
SLM4Offer recipe (arXiv 2508.15471): cross-entropy on the offers personas accepted plus an
InfoNCE term that pulls each persona towards the offers it accepted and away from those it
rejected (λ = {c['lam']}, τ = {c['tau']}, negatives {c['negatives']}).

## What it is

- **Weights**: {info['source_kind']} (T5 initialised from scratch, not T5-Small), {info['parameters']:,}
  parameters: d_model {c['d_model']}, {c['num_layers']}+{c['num_layers']} layers, {c['num_heads']} heads,
  a BPE tokenizer of {c['vocab_size']} tokens trained on the training personas and offers.
- **Data**: the synthetic `{c['domain']}` world of this repository (world seed {c['seed']},
  {c['n_personas']:,} personas, a catalogue of {card['catalog']['offers']} offers); {info['train_examples']:,}
  training examples (persona → accepted offer). Dataset content hash `{card['provenance']['dataset_sha256']}`.
- **Training**: {c['epochs']} epochs, {info['steps']:,} optimiser steps, batch {c['batch_size']}, learning rate
  {c['learning_rate']}, training seed {c['train_seed']}; profile `{prov['profile']}`, commit `{prov['git_commit']}`,
  torch {prov['numerics']['torch']} on {prov['numerics']['device']} ({prov['numerics']['threads']} threads).
  `{INFO_FILE}` holds the whole provenance.

## How well it does

Acceptance of its greedy offer for each of the test personas (never seen in training),
from the committed per-persona decisions (`results/decisions/acceptance.csv`, training seed
{cfg.train_seed}). Thresholded rate: the judge accepts when P(accept) ≥ {cfg.accept_threshold}, with the
Wilson 95% CI over personas (one model, so training noise is not in it); expected acceptance:
mean P(accept), an offer outside the catalogue counting as 0.

| judge | thresholded rate [95% CI] | expected acceptance | SFT baseline, same seed | offers in the catalogue |
|---|---|---|---|---|
{chr(10).join(lines)}

Over {int(seeds['seeds'].max())} training seeds of the same recipe: {context} (mean ± std, CI over seeds and
personas). The simulated judge is the synthetic world's ground truth; the learned judge is a
stand-in for an LLM judge (agreement with the truth in `results/judge_validation.md`). The paper
reports 94% for its own model under an LLM judge; `REPRODUCE.md` explains why the levels differ.

## Intended use

A model to start from: trying `slm4offer offers` on personas written like this world's, a
baseline to fine-tune further on your own campaign data, a fixture for tests and demonstrations.

## Limits

- It knows only the synthetic `{c['domain']}` catalogue; its offers name that catalogue's products
  and it has no knowledge of real products, prices or regulation.
- Some of its offers are not in the catalogue (the table's last column); check an offer against
  your catalogue before sending it.
- Trained from scratch on synthetic text: personas phrased unlike this world's get little
  personalisation. It has not been evaluated on real customers, and targeting financial offers
  at people raises fairness and compliance questions that this model does not address.

## Loading

```bash
slm4offer offers --model models/{release_dir(cfg).name} --personas new.csv --out offers.csv
```

```python
from transformers import AutoTokenizer, T5ForConditionalGeneration
model = T5ForConditionalGeneration.from_pretrained("models/{release_dir(cfg).name}")  # the projection head is unused
tokenizer = AutoTokenizer.from_pretrained("models/{release_dir(cfg).name}")
```

Licence: MIT, as the repository.
"""


def export(cfg: Config, progress: bool = True) -> Path:
    """Copy the (cached) contrastive model to `models/` and write its card; returns the folder."""
    trained = train(cfg, "contrastive", progress=progress)
    card = model_card(cfg, trained.info, cfg.results_dir)
    out = release_dir(cfg)
    with atomic_dir(out) as tmp:
        for name in MODEL_FILES:
            shutil.copyfile(trained.path / name, tmp / name)  # a plain copy: readable by everyone
        write_text(tmp / "README.md", card)
    return out
