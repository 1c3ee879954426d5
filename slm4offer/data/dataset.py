"""Build the dataset: one row per persona with its accepted and rejected offers, split by persona.

`build_dataset(cfg)` is the first stage of the pipeline. Its output is a Hugging Face
`DatasetDict` (train / validation / test) saved under `artifacts/<profile>/dataset-<domain>-<hash>/`
beside the offer catalog (`catalog.jsonl`), a data card and its provenance. A second call with
the same config loads it from disk; the same seed gives byte-identical files.

Rows hold lists (`accepted_offer_ids`, `rejected_offer_ids`, and their texts) because a persona
may accept more than one offer; the rejected offers are the hard negatives of the contrastive loss.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from slm4offer import provenance
from slm4offer.cache import CARD_FILE, CATALOG_FILE, PROVENANCE_FILE
from slm4offer.config import Config, result_name
from slm4offer.data.world import Offer, World, build_world, persona_features
from slm4offer.domains import Domain, load_domain
from slm4offer.errors import InvalidValue
from slm4offer.files import atomic_dir, write_json, write_text
from slm4offer.stats import wilson_ci

SPLITS = ("train", "validation", "test")
OFFER_COLUMNS = ("accepted_offer_ids", "accepted_offers", "rejected_offer_ids", "rejected_offers")


def build_dataset(cfg: Config, progress: bool = True) -> datasets.DatasetDict:
    """Load the cached dataset for `cfg`, or synthesise, split and save it first."""
    if (cfg.dataset_dir / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(cfg.dataset_dir))
    domain = load_domain(cfg.domain)
    if cfg.generator == "openai":
        from slm4offer.data.llm_generator import build_world_llm  # needs the openai client

        world = build_world_llm(cfg, domain, progress=progress)
    else:
        world = build_world(domain, cfg.seed, cfg.n_personas, cfg.catalog_size,
                            cfg.offers_per_round, cfg.max_rounds, progress=progress)
    rows = world_rows(world)
    splits = split_by_persona(rows, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    dd = to_dataset_dict(splits, domain)
    card = data_card(dd, world.catalog, domain_label=domain.name, synthesised=len(rows) + world.dropped,
                     dropped=world.dropped, extra=world.errors)
    save_dataset(cfg.dataset_dir, dd, world.catalog, card,
                 provenance.collect(cfg, stage="dataset"))
    return datasets.load_from_disk(str(cfg.dataset_dir))


def world_rows(world: World) -> list[dict]:
    """One row per persona from the campaign log: accepted and rejected offers, ids and texts."""
    text = {o.offer_id: o.text for o in world.catalog}
    rows = []
    for persona, log in zip(world.personas, world.shown, strict=True):
        accepted = [oid for oid, a in log if a]
        rejected = [oid for oid, a in log if not a]
        rows.append({**persona,
                     "accepted_offer_ids": accepted, "accepted_offers": [text[o] for o in accepted],
                     "rejected_offer_ids": rejected, "rejected_offers": [text[o] for o in rejected]})
    return rows


def split_by_persona(rows: list[dict], val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, list[dict]]:
    """Shuffle personas with `seed` and cut them into splits: no persona is in two splits."""
    ids = [r["persona_id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise InvalidValue("split_by_persona: persona_id values must be unique, one row per persona")
    n = len(rows)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if min(n_val, n_test, n - n_val - n_test) < 1:
        raise InvalidValue(f"{n} personas are too few for val_fraction={val_fraction}, "
                           f"test_fraction={test_fraction}: every split needs at least one")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(99,)))
    order = rng.permutation(n)
    cut = {"test": order[:n_test], "validation": order[n_test:n_test + n_val],
           "train": order[n_test + n_val:]}
    return {s: [rows[i] for i in sorted(cut[s])] for s in SPLITS}


def features_for(domain: Domain | None, rows: list[dict]) -> datasets.Features:
    """Explicit column types, so empty lists and missing attributes never change the schema."""
    strings = datasets.List(datasets.Value("string"))
    feats = {"persona_id": datasets.Value("string"), "persona": datasets.Value("string")}
    extra = [k for k in rows[0] if k not in feats and k not in OFFER_COLUMNS] if rows else []
    for name in extra:
        attr = domain.attributes.get(name) if domain else None
        if attr is not None and attr.type == "integer":
            feats[name] = datasets.Value("int64")
        elif attr is not None and attr.type == "multi" or isinstance(rows[0][name], list):
            feats[name] = strings
        else:
            feats[name] = datasets.Value("string")
    feats.update({c: strings for c in OFFER_COLUMNS})
    return datasets.Features(feats)


def to_dataset_dict(splits: dict[str, list[dict]], domain: Domain | None) -> datasets.DatasetDict:
    features = features_for(domain, splits["train"])
    return datasets.DatasetDict({s: datasets.Dataset.from_list(splits[s], features=features)
                                 for s in SPLITS})


def save_dataset(path: Path, dd: datasets.DatasetDict, catalog: list[Offer], card: dict,
                 record: dict) -> None:
    """Write dataset, catalog, data card and provenance into `path`, all or nothing."""
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # per-shard bars would flood notebook outputs
    with atomic_dir(path) as tmp:
        try:
            dd.save_to_disk(str(tmp))
        finally:
            if bars_were_on:
                datasets.enable_progress_bars()
        write_text(tmp / CATALOG_FILE, "".join(
            json.dumps({"offer_id": o.offer_id, "offer": o.text, "slots": o.slots}) + "\n"
            for o in catalog))
        write_json(tmp / CARD_FILE, card)
        write_text(tmp / "data_card.md", data_card_markdown(card))
        write_json(tmp / PROVENANCE_FILE, record)


def load_catalog(dataset_dir: Path) -> list[Offer]:
    lines = (Path(dataset_dir) / CATALOG_FILE).read_text().splitlines()
    return [Offer(d["offer_id"], d.get("slots") or {}, d["offer"]) for d in map(json.loads, lines)]


def load_data_card(dataset_dir: Path) -> dict:
    return json.loads((Path(dataset_dir) / CARD_FILE).read_text())


def export_data_card(cfg: Config) -> Path:
    """Copy the data card of `cfg`'s dataset to `results/` (Markdown and JSON)."""
    card = load_data_card(cfg.dataset_dir)
    rec = provenance.collect(cfg, stage="dataset")
    stem = cfg.results_dir / result_name(cfg, "data_card", with_domain=True)
    write_json(stem.with_suffix(".json"), {**card, "provenance": rec})
    footer = (f"\n_Provenance: profile `{cfg.profile}`, seed {cfg.seed}, generator `{cfg.generator}`, "
              f"config hash `{rec['stage_hash']}`, commit `{rec['git_commit']}`. Content SHA-256 "
              f"`{rec['dataset_sha256']}` (the same on every machine with the pinned packages)._\n")
    return write_text(stem.with_suffix(".md"), data_card_markdown(card) + footer)


# --- data card --------------------------------------------------------------------------------

def data_card(dd: datasets.DatasetDict, catalog: list[Offer], domain_label: str,
              synthesised: int, dropped: int, extra: dict | None = None) -> dict:
    """Counts, campaign statistics and attribute distributions of a built dataset."""
    frames = {s: dd[s].to_pandas() for s in SPLITS}
    n_acc = sum(int(f["accepted_offer_ids"].map(len).sum()) for f in frames.values())
    n_rej = sum(int(f["rejected_offer_ids"].map(len).sum()) for f in frames.values())
    kept = sum(len(f) for f in frames.values())
    shown = Counter(o for f in frames.values() for col in ("accepted_offer_ids", "rejected_offer_ids")
                    for ids in f[col] for o in ids)
    accepted = Counter(o for f in frames.values() for ids in f["accepted_offer_ids"] for o in ids)
    top = sorted(shown.values(), reverse=True)[:max(1, len(catalog) // 10)]
    card = {
        "domain": domain_label,
        "personas": {"synthesised": synthesised, "dropped_no_acceptance": dropped, "kept": kept,
                     **{s: len(frames[s]) for s in SPLITS}},
        "campaign": {
            "offers_shown": n_acc + n_rej,
            "offers_accepted": n_acc,
            "acceptance_base_rate": round(n_acc / max(1, n_acc + n_rej), 4),
            "accepted_per_persona": round(n_acc / max(1, kept), 3),
            "rejected_per_persona": round(n_rej / max(1, kept), 3),
            "share_of_impressions_top_10pct_offers": round(sum(top) / max(1, sum(shown.values())), 4),
        },
        "catalog": {"offers": len(catalog), "ever_shown": len(shown), "ever_accepted": len(accepted)},
        "attributes": _attribute_summary(frames),
    }
    if extra:
        card["generator_errors"] = extra
    return card


def _attribute_summary(frames) -> dict:
    df = pd.concat(frames.values(), ignore_index=True)
    out = {}
    for col in df.columns:
        if col in ("persona_id", "persona", *OFFER_COLUMNS):
            continue
        series = df[col]
        if pd.api.types.is_numeric_dtype(series):
            q = series.quantile([0.0, 0.5, 1.0]).tolist()
            out[col] = {"kind": "numeric", "mean": round(float(series.mean()), 2),
                        "sd": round(float(series.std()), 2), "min": q[0], "median": q[1], "max": q[2]}
        else:
            multi = series.map(lambda v: not isinstance(v, str)).all()
            values = [x for v in series for x in v] if multi else list(series)
            shares = {k: round(c / len(series), 4) for k, c in Counter(values).most_common()}
            out[col] = {"kind": "multi" if multi else "categorical", "shares": shares}
    return out


def data_card_markdown(card: dict) -> str:
    p, c, cat = card["personas"], card["campaign"], card["catalog"]
    lines = [f"# Data card: {card['domain']}", "",
             "| quantity | value |", "|---|---|",
             f"| personas synthesised | {p['synthesised']} |",
             f"| dropped (accepted nothing) | {p['dropped_no_acceptance']} |",
             f"| kept: train / validation / test | {p['train']} / {p['validation']} / {p['test']} |",
             f"| offers shown by the campaign | {c['offers_shown']} |",
             f"| acceptance base rate (accepted / shown) | {c['acceptance_base_rate']:.1%} |",
             f"| accepted / rejected offers per persona | {c['accepted_per_persona']} / {c['rejected_per_persona']} |",
             f"| share of impressions on the top 10% of offers | {c['share_of_impressions_top_10pct_offers']:.1%} |",
             f"| catalog offers (ever shown / ever accepted) | "
             f"{cat['offers']} ({cat['ever_shown']} / {cat['ever_accepted']}) |",
             "", "## Persona attributes", ""]
    for name, s in card["attributes"].items():
        if s["kind"] == "numeric":
            lines.append(f"- **{name}**: mean {s['mean']:g}, sd {s['sd']:g}, "
                         f"min {s['min']:g}, median {s['median']:g}, max {s['max']:g}")
        else:
            top = ", ".join(f"{k} {v:.0%}" for k, v in list(s["shares"].items())[:8])
            lines.append(f"- **{name}** ({s['kind']}): {top}")
    if card.get("generator_errors"):
        lines += ["", "## Generator errors", "", f"```\n{json.dumps(card['generator_errors'], indent=1)}\n```"]
    return "\n".join(lines) + "\n"


def acceptance_by_segment(dd: datasets.DatasetDict, domain: Domain) -> pd.DataFrame:
    """Campaign acceptance (accepted / shown) per attribute level, with Wilson 95% CIs."""
    counts: Counter = Counter()
    for split in SPLITS:
        for row in dd[split]:
            n_acc, n_rej = len(row["accepted_offer_ids"]), len(row["rejected_offer_ids"])
            for feature in persona_features(domain, row):
                counts[(*feature, "accepted")] += n_acc
                counts[(*feature, "shown")] += n_acc + n_rej
    records = []
    for name, attr in domain.attributes.items():
        for level in attr.levels:
            shown, accepted = counts[(name, level, "shown")], counts[(name, level, "accepted")]
            if shown:
                p = wilson_ci(accepted, shown)
                records.append({"attribute": name, "level": level, "shown": shown,
                                "accepted": accepted, "rate": p.rate, "ci_low": p.low,
                                "ci_high": p.high})
    return pd.DataFrame.from_records(records)
