"""`slm4offer <command>`: every command of the project, the pipeline's stages for scripts and
clusters and the report's (`check`, `recompute`, `reproduce`, `release`) alike.

Flags are derived from the `Config` fields (their help is the field's help), so the CLI,
notebooks and YAML config files always offer the same settings. Only the project's own user
errors (`errors.UserError`) are printed as one line with exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from slm4offer.cache import STAGE_FIELDS
from slm4offer.config import Config, config_fields, load_config, repo_root
from slm4offer.errors import CannotRun, InvalidValue, MissingFile, UserError
from slm4offer.files import write_text
from slm4offer.judges import JUDGES
from slm4offer.runtime import set_threads

EPILOG = """examples:
  slm4offer synthesize --domain finance --profile default
  slm4offer synthesize --domain path/to/my_domain.yaml --n-personas 2000 --seed 3
  slm4offer validate-data examples/user_data/interactions.csv --offers examples/user_data/offers.csv --out my_dataset
  slm4offer validate-data log.csv --offers offers.csv --persona-template 'A {age}-year-old {job}.' --out my_dataset
  slm4offer train --kind contrastive --profile default --lam 0.5
  slm4offer train --kind contrastive --data my_dataset --output-dir my_model   # your own data, exported
  torchrun --nproc-per-node 2 -m slm4offer train --kind contrastive   # several processes or GPUs, one global batch
  slm4offer generate --kind sft --profile smoke --num-beams 4
  slm4offer evaluate --profile smoke --judge simulated --judge learned
  OPENAI_API_KEY=... slm4offer evaluate --profile smoke --judge llm --judge-base-url http://127.0.0.1:8000/v1 \
      --judge-model my-model
  slm4offer validate-judge --judge learned --labels my_labels.csv
  slm4offer offers --model my_model --personas new.csv --out offers.csv
  slm4offer offers --model my_model --personas new.csv --catalog offers.csv --top-k 3 --out ranked.csv
  slm4offer config --profile smoke
  slm4offer check                      # after make all: this run against the committed results
  slm4offer recompute                  # every acceptance table from its committed decisions
"""


# The settings each command reads, so its --help lists only those. Building the dataset may call
# the LLM generator (generator=openai), so every stage that can build it offers its settings.
LLM_CLIENT = ("llm_concurrency", "llm_max_attempts", "llm_timeout_s", "llm_backoff_s", "llm_max_error_share")
DATASET = ("profile",) + STAGE_FIELDS["dataset"] + ("llm_base_url", "llm_model", "llm_temperature") + LLM_CLIENT
TRAIN = DATASET + ("data",) + STAGE_FIELDS["train"][len(STAGE_FIELDS["dataset"]):] + ("tuning", "report_to", "device",
                                                                                      "threads")
GENERATE = TRAIN + STAGE_FIELDS["generate"][len(STAGE_FIELDS["train"]):] + ("generation_batch_size",)
JUDGING = ("judges", "accept_threshold", "judge_model", "judge_base_url", "judge_prompt")
COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "synthesize": DATASET,
    "train": TRAIN,
    "generate": GENERATE,
    "evaluate": GENERATE + JUDGING + ("eval_seeds", "baseline_candidates"),
    "tune": TRAIN + ("eval_seeds",),
    "validate-judge": GENERATE + JUDGING + ("judge_samples",),
    "release": TRAIN,
    "config": tuple(f.name for f in config_fields()),
}


# How `--help` groups the settings; every Config field is in one group (a test checks).
FIELD_GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("profile", "data", "domain", "seed", "generator", "n_personas", "catalog_size", "offers_per_round",
             "max_rounds", "val_fraction", "test_fraction"),
    "LLM generator": ("llm_base_url", "llm_model", "llm_temperature", *LLM_CLIENT),
    "model": ("init", "pretrained_model", "vocab_size", "d_model", "d_ff", "num_layers", "num_heads", "d_kv",
              "dropout", "max_persona_tokens", "max_offer_tokens"),
    "training": ("lam", "tau", "hard_negatives", "negatives", "in_batch_negatives", "pooling", "projection_dim",
                 "train_seed", "epochs", "batch_size", "grad_accum", "learning_rate", "tuning", "weight_decay",
                 "warmup_ratio",
                 "early_stopping_patience", "logs_per_epoch", "bf16", "report_to", "device", "threads"),
    "generation": ("num_beams", "rerank_candidates", "generation_batch_size"),
    "judging": ("judges", "accept_threshold", "judge_model", "judge_base_url", "judge_prompt", "eval_seeds",
                "study_seeds", "judge_samples", "baseline_candidates"),
}
# Settings of the synthetic world: with --data (your own dataset, already split) they mean nothing.
WORLD_ONLY = ("domain", "seed", "generator", "n_personas", "catalog_size", "offers_per_round", "max_rounds",
              "val_fraction", "test_fraction", "llm_base_url", "llm_model", "llm_temperature")


def _chosen_profile(argv: list[str] | None) -> Config | None:
    """The configuration of the profile on the command line (or $SLM4OFFER_PROFILE), for --help;
    None when it does not load (the command itself then reports why)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--profile")
    try:
        return load_config(pre.parse_known_args(argv)[0].profile)
    except (ValueError, TypeError):
        return None


def _add_config_flags(parser: argparse.ArgumentParser, command: str, defaults: Config | None) -> None:
    parser.add_argument("--config", dest="config_file", metavar="FILE",
                        help="YAML file of config fields (applied after the profile, before flags)")
    fields = {f.name: f for f in config_fields()}
    for group, names in FIELD_GROUPS.items():
        shown = [n for n in names if n in COMMAND_FIELDS[command]]
        if not shown:
            continue
        section = parser.add_argument_group(f"{group} settings")
        for name in shown:
            f = fields[name]
            kind: Any = f.type if isinstance(f.type, type) else {"int": int, "float": float, "bool": _bool}.get(
                f.type, str)
            default = f"profile {defaults.profile}: {getattr(defaults, name)!r}" if defaults else f"{f.default!r}"
            section.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                                 metavar=name.upper(), help=f"{f.metadata['help']} (default, {default})")


def _add_write_results(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--write-results", action="store_true",
                        help="allow writing into the committed results/ and figures/ of the default profile "
                             "(make all regenerates them; without this flag the command refuses)")


def _guard_committed(cfg: Config, allowed: bool) -> None:
    """Refuse to rewrite the committed results of the default profile unless asked."""
    committed = repo_root() / "results"
    if cfg.results_dir == committed and not allowed:
        raise CannotRun(f"this would rewrite the committed results in {committed} and {cfg.figures_dir} (the default "
                        "profile's reference, which `make all` regenerates); pass --write-results to do so, or "
                        "use another profile (--profile smoke) or your own data (--data)")


def _bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no) for a bool setting such as --bf16."""
    value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use true or false")
    return value


LOG = {"format": "text"}  # --log-format, set by `main`


def say(text: str, **data) -> None:
    """A message of the command: plain text, or with --log-format json one JSON object per line
    (`message` and any structured `data`, such as the output path and whether it was cached)."""
    if LOG["format"] == "json":
        print(json.dumps({"message": text, **data}, default=str), flush=True)
    else:
        print(text, flush=True)


def resolve_path(path: str | Path) -> Path:
    """The one rule for every path given on the command line: relative to the working folder."""
    return Path(path).expanduser().resolve()


def _config(args: argparse.Namespace) -> Config:
    fields = {f.name: getattr(args, f.name, None) for f in config_fields()}
    if fields.get("data"):
        fields["data"] = str(resolve_path(str(fields["data"])))
        ignored = [n for n in WORLD_ONLY if fields.get(n) is not None]
        if ignored:
            raise InvalidValue(f"{', '.join('--' + n.replace('_', '-') for n in ignored)}: settings of the synthetic "
                               f"world, which --data {fields['data']} replaces (its split was fixed by validate-data); "
                               "leave them out")
    cfg = load_config(fields.pop("profile"), args.config_file, **fields)
    set_threads(cfg.threads)
    return cfg


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations: `--epoch 1` must not silently mean `--epochs 1`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The CLI; `argv` only chooses the profile whose defaults the help shows."""
    defaults = _chosen_profile(argv)
    parser = Parser(
        prog="slm4offer",
        description="Reproduce SLM4Offer (arXiv 2508.15471): synthesise a customer/offer world, "
                    "train T5 with InfoNCE + cross-entropy, judge the offers it generates.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: the command's messages and errors as one JSON object per line, for job "
                             "schedulers and log collectors (default: text)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    synth = sub.add_parser("synthesize", help="build the synthetic dataset (cached by config hash)",
                           description="Synthesise personas, an offer catalog and a historical "
                                       "campaign, split by persona, and save a Hugging Face "
                                       "DatasetDict under artifacts/<profile>/.")
    _add_config_flags(synth, "synthesize", defaults)
    _add_write_results(synth)

    val = sub.add_parser("validate-data", help="check your own campaign log and catalog (CSV/JSONL)",
                         description="Validate an interactions file (persona_id, persona, offer_id, "
                                     "accepted, [attributes...]) against an offers file (offer_id, "
                                     "offer). With --out, also write the dataset folder.")
    val.add_argument("interactions", type=Path, help="CSV or JSONL, one row per offer shown")
    val.add_argument("--offers", type=Path, required=True, help="CSV or JSONL offer catalog")
    val.add_argument("--out", type=Path, help="write the split dataset here (all or nothing)")
    val.add_argument("--persona-template", metavar="TEXT",
                     help="build the persona text from attribute columns instead of a persona column, e.g. "
                          "'A {age}-year-old {occupation} interested in {interests}.'")
    val.add_argument("--require-accepted", action="store_true",
                     help="refuse customers who accepted nothing (default: drop and count them)")
    val.add_argument("--max-errors", type=int, default=20, metavar="N",
                     help="report up to N row errors before stopping (default: 20)")
    val.add_argument("--val-fraction", type=float, default=0.1, help="share of personas in validation (default: 0.1)")
    val.add_argument("--test-fraction", type=float, default=0.1, help="share of personas in test (default: 0.1)")
    val.add_argument("--seed", type=int, default=0, help="seed of the persona split (default: 0)")

    for name, help_, description in (
        ("train", "train the SFT baseline or the contrastive model (cached; resumes if interrupted)",
         "Train T5 on persona -> accepted offer with L = lam*InfoNCE + (1-lam)*CE (sft: lam = 0). "
         "The model is saved under artifacts/<profile>/; an interrupted run resumes from its last "
         "checkpoint."),
        ("generate", "generate offers for a split's personas with a trained model (cached)",
         "Generate one offer per persona (greedy, beam search, or reranked beam candidates) and save "
         "them beside the model as JSON lines."),
    ):
        stage = sub.add_parser(name, help=help_, description=description)
        stage.add_argument("--kind", choices=("sft", "contrastive"), required=True)
        if name == "generate":
            stage.add_argument("--split", choices=("train", "validation", "test"), default="test")
        else:
            stage.add_argument("--output-dir", type=Path, metavar="DIR",
                               help="also export the trained model here, with its catalogue, model code and "
                                    "model card (a new or empty folder, or an earlier export)")
        _add_config_flags(stage, name, defaults)

    evaluate = sub.add_parser("evaluate", help="judge every system's offers for the test personas "
                              "-> results/acceptance.*, figures/acceptance.*",
                              description="Train (or load) SFT and contrastive models for eval_seeds "
                                          "training seeds, generate their offers for the test personas, judge "
                                          "them and the baselines (random, popular, reranked, catalog by "
                                          "similarity, best), and write the per-persona decisions, the "
                                          "acceptance table (thresholded, expected and sampled acceptance, CIs "
                                          "over seeds and personas), the comparisons and the figures.")
    evaluate.add_argument("--judge", action="append", choices=JUDGES, dest="judge_list",
                          help="a judge to use; repeat for several (default: the judges field)")
    _add_config_flags(evaluate, "evaluate", defaults)
    _add_write_results(evaluate)

    tune = sub.add_parser("tune", help="search the learning rate of both methods alike on validation "
                          "-> results/tuning.* (make tune)",
                          description="Train SFT and contrastive at every point of one grid (learning rate "
                                      "3e-4, 1e-3, 3e-3), with the same epoch cap, on a tuning seed that is no "
                                      "evaluation seed; keep each run's best epoch on the validation criterion; "
                                      "choose per kind and width; write the table and the record that later "
                                      "training reads (tuning=auto). Test personas are never read.")
    tune.add_argument("--widths", default="", metavar="D,D,...",
                      help="d_model values to tune, comma-separated (default: the profile's)")
    tune.add_argument("--no-equal-compute", action="store_true",
                      help="leave out the equal-compute SFT control (SFT trained for contrastive's training time)")
    _add_config_flags(tune, "tune", defaults)
    _add_write_results(tune)

    vj = sub.add_parser("validate-judge", help="agreement of a judge with reference labels "
                        "-> results/judge_validation.*",
                        description="Compare a judge's verdicts with human labels (--labels: CSV or JSONL with "
                                    "persona_id, offer, label = accept/reject, 1/0, yes/no, y/n, ...) or, without "
                                    "--labels, with the simulated customer on judge_samples generated offers: "
                                    "2x2 table, chi-square, raw agreement, Cohen's kappa with a bootstrap CI.")
    vj.add_argument("--judge", choices=JUDGES, default="learned", dest="judge_name")
    vj.add_argument("--labels", type=Path, help="human-label CSV (template: examples/judge_labels/)")
    _add_config_flags(vj, "validate-judge", defaults)
    _add_write_results(vj)

    offers = sub.add_parser("offers", help="offers for a file of new personas from a trained model",
                            description="Generate one offer per persona of a CSV/JSONL file (persona_id, persona, "
                                        "any other columns kept) with a trained model, with its offer_id and "
                                        "in_catalogue; or, with --catalog, rank a catalogue by the model's "
                                        "learned similarity and keep the --top-k best per persona. Written as "
                                        "CSV or JSONL (by the --out suffix).")
    offers.add_argument("--model", type=Path, required=True,
                        help="a trained model: artifacts/<profile>/model-.../ (or its final/ folder), or an export")
    offers.add_argument("--personas", type=Path, required=True, help="CSV or JSONL with persona_id and persona")
    offers.add_argument("--out", type=Path, required=True, help="output file, .csv or .jsonl")
    offers.add_argument("--persona-template", metavar="TEXT",
                        help="build the persona text from attribute columns, as validate-data did for training")
    offers.add_argument("--catalog", type=Path, metavar="FILE",
                        help="rank this catalogue (CSV/JSONL with offer_id, offer) instead of generating")
    offers.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="with --catalog: the K best offers per persona, one row each (default: 1)")
    offers.add_argument("--rerank", type=int, default=0, metavar="N",
                        help="beam-search N candidates and keep the one closest to the persona in the model's "
                             "embedding space (default: 0, greedy)")
    offers.add_argument("--batch-size", type=int, default=64, help="personas per batch (default: 64)")
    offers.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda[:N]")

    show = sub.add_parser("config", help="print the resolved configuration")
    _add_config_flags(show, "config", defaults)

    check = sub.add_parser("check", help="compare results/ with the committed results, number by number "
                           "(make check)",
                           description="Compare this run's results/ with the committed ones (read from git, never "
                                       "from the working tree): every number within its stated tolerance, every "
                                       "conclusion unchanged. Exit 1 on any failure.")
    check.add_argument("--committed", default="HEAD", help="git ref whose results/ are the reference")
    check.add_argument("--results", type=Path, default=None, help="results folder to check (default: results/)")
    check.add_argument("--partial", action="store_true", help="skip result files this run lacks")
    check.add_argument("--provenance", type=Path, help="JSON file describing the rerun, shown in --out")
    check.add_argument("--out", type=Path, help="also write the report as Markdown")

    recompute = sub.add_parser("recompute", help="recompute every acceptance table from its per-persona "
                               "decisions and compare with the saved tables",
                               description="Recompute results/<name>.csv and <name>_gain.csv from "
                                           "results/decisions/<name>.csv for every decision file; exit 1 on any "
                                           "difference.")
    recompute.add_argument("results", nargs="?", type=Path, default=Path("results"),
                           help="the results folder (default: results)")

    reproduce = sub.add_parser("reproduce", help="rewrite REPRODUCE.md's numbers block from results/ "
                               "(make all runs it)",
                               description="Rewrite the numbers block of REPRODUCE.md from results/, unless only "
                                           "numbers moved and every committed conclusion still holds.")
    reproduce.add_argument("--write", action="store_true", help="rewrite the block whatever changed (new "
                           "reference results to be committed)")

    release = sub.add_parser("release", help="export the contrastive model with its model card (models/ by default)",
                             description="Export the trained contrastive model of a configuration (trained now if "
                                         "it is not cached) with its catalogue, model code and a model card written "
                                         "from its results: to models/slm4offer-<data>-contrastive-<profile>/, or "
                                         "to --output-dir. With --data, your own data's model.")
    release.add_argument("--output-dir", type=Path, metavar="DIR", help="where to write it (default: models/...)")
    _add_config_flags(release, "release", defaults)

    stage = sub.add_parser("record-stage", help="(make all) record a notebook's wall time in the manifest")
    stage.add_argument("notebook")
    stage.add_argument("seconds", type=float)
    mark = sub.add_parser("mark-parameters", help="(make all) tag a notebook's injected-parameters cell nbval-skip")
    mark.add_argument("notebooks", nargs="+", type=Path)
    return parser


def _synthesize(args: argparse.Namespace) -> int:
    from slm4offer.data.dataset import build_dataset, export_data_card

    cfg = _config(args)
    _guard_committed(cfg, args.write_results)
    cached = (cfg.dataset_dir / "dataset_dict.json").is_file()
    start = time.perf_counter()
    dd = build_dataset(cfg)
    card = export_data_card(cfg)
    say(f"dataset: {cfg.dataset_dir} ({'from the cache' if cached else 'built now'})\n{dd}\ndata card: {card}\n"
        f"({time.perf_counter() - start:.1f} s)", output=str(cfg.dataset_dir), cached=cached)
    return 0


def _validate_data(args: argparse.Namespace) -> int:
    from slm4offer.data.userdata import build_user_dataset, load_user_data

    settings = dict(persona_template=args.persona_template, require_accepted=args.require_accepted,
                    max_errors=args.max_errors)
    if args.out:
        for name in ("val_fraction", "test_fraction"):
            if not 0 < getattr(args, name) < 0.5:
                raise InvalidValue(f"--{name.replace('_', '-')} {getattr(args, name)}: must be in (0, 0.5)")
        out, user = build_user_dataset(resolve_path(args.interactions), resolve_path(args.offers),
                                       resolve_path(args.out), args.val_fraction, args.test_fraction, args.seed,
                                       **settings)
    else:
        user = load_user_data(resolve_path(args.interactions), resolve_path(args.offers), **settings)
    dropped = user.dropped_ids
    say(f"valid: {len(user.rows)} personas, {len(user.catalog)} offers, "
        f"{sum(len(r['accepted_offer_ids']) for r in user.rows)} accepted; {len(dropped)} customer(s) dropped "
        f"(accepted nothing{': ' + ', '.join(dropped[:5]) + (', ...' if len(dropped) > 5 else '') if dropped else ''})",
        dropped=len(dropped))
    if args.out:
        say(f"dataset written to {out}\nnext: slm4offer train --kind contrastive --data {out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from slm4offer.model import distributed
    from slm4offer.model.training import train

    start = time.perf_counter()
    cfg = _config(args)
    result = train(cfg, args.kind)
    if not distributed.is_main():  # the main process reports
        return 0
    evals = [log for log in result.log_history if "eval_loss" in log]
    say(f"{result.label} model ({result.info['source_kind']}, {result.info['parameters']:,} parameters, "
        f"{'from the cache' if result.cached else 'trained now'}): {result.path}\nfinal validation: "
        + ", ".join(f"{k} {evals[-1][k]:.4f}" for k in ("eval_loss", "eval_ce", "eval_infonce") if k in evals[-1])
        + f"\n({time.perf_counter() - start:.1f} s)", output=str(result.path), cached=result.cached)
    if args.output_dir:
        from slm4offer.report.release import export

        say(f"exported with its model card to {export(cfg, resolve_path(args.output_dir), args.kind)}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from slm4offer.model.generation import generate, generations_path
    from slm4offer.model.training import kind_config

    cfg = _config(args)
    path = generations_path(kind_config(cfg, args.kind), args.split)
    cached = path.is_file()
    rows = generate(cfg, args.kind, split=args.split)
    for row in rows[:3]:
        say(f"{row['persona']}\n  -> {row['offer']}")
    say(f"{len(rows)} offers for the {args.split} split ({'from the cache' if cached else 'generated now'}): {path}",
        output=str(path), cached=cached)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from slm4offer.experiments.acceptance import acceptance_results
    from slm4offer.report.findings import headline
    from slm4offer.report.tables import formatted, save_acceptance

    cfg = _config(args)
    _guard_committed(cfg, args.write_results)
    res = acceptance_results(cfg, judges=args.judge_list)
    save_acceptance(cfg, res)
    say(formatted(res.table, with_paper=not cfg.data).to_string())
    say(headline(res.table, res.gain, res.tests, with_paper=not cfg.data))
    for judge, r in res.table.groupby("judge", sort=False)[["errors", "judged"]].sum().iterrows():
        items = r["errors"] + r["judged"]
        say(f"{judge} judge: {r['errors']} of {items} items ended in an error "
            f"({r['errors'] / max(items, 1):.1%} error share; errors are not counted as verdicts)")
    say(f"written to {cfg.results_dir} and {cfg.figures_dir}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from slm4offer.experiments.tuning import run_search
    from slm4offer.report.tables import save_tuning

    cfg = _config(args)
    _guard_committed(cfg, args.write_results)
    try:
        widths = [int(w) for w in args.widths.split(",") if w.strip()] or [cfg.d_model]
    except ValueError:
        raise InvalidValue(f"--widths {args.widths!r}: give d_model values such as 64,128,256") from None
    table = run_search(cfg, widths, equal_compute=not args.no_equal_compute)
    rec = save_tuning(cfg, table)
    for c in rec["choices"]:
        say(f"{c['kind']}, d_model {c['d_model']}: " + ", ".join(f"{k} {v:g}" for k, v in c["chosen"].items())
            + f" (validation criterion {100 * c['criterion']:.1f}%, best epoch {c['best_epoch']:g})")
    say(f"written to {cfg.results_dir} (tuning.csv, tuning.md, tuning.json)", output=str(cfg.results_dir))
    return 0


def _validate_judge(args: argparse.Namespace) -> int:
    from slm4offer.experiments.judge_validation import summary, validate_judge
    from slm4offer.report.tables import write_validation

    cfg = _config(args)
    _guard_committed(cfg, args.write_results)
    result = validate_judge(cfg, args.judge_name, resolve_path(args.labels) if args.labels else None)
    say(summary(result).to_string())
    say("written: " + ", ".join(str(p) for p in write_validation(cfg, result)))
    return 0


def _offers(args: argparse.Namespace) -> int:
    from slm4offer.model.offers import offers_for, rank_catalogue, read_personas, write_offers

    if args.catalog and args.rerank:
        raise InvalidValue("--catalog ranks the catalogue; --rerank reranks generated offers: use one of them")
    personas = read_personas(resolve_path(args.personas), args.persona_template)
    if args.catalog:
        rows = rank_catalogue(resolve_path(args.model), personas, resolve_path(args.catalog), args.top_k,
                              args.device)
        what = f"the {args.top_k} best catalogue offer(s) of {resolve_path(args.catalog)}"
    else:
        rows = offers_for(resolve_path(args.model), personas, args.rerank, args.batch_size, args.device)
        known = [r for r in rows if "in_catalogue" in r]
        what = "generated offers" + (f" ({sum(r['in_catalogue'] for r in known)} of {len(rows)} in the model's "
                                     "catalogue)" if known else " (no catalogue saved with the model: no offer_id)")
    out = write_offers(rows, resolve_path(args.out))
    say(f"{what} for the {len(personas)} personas of {resolve_path(args.personas)} written to {out}")
    return 0


def _show_config(args: argparse.Namespace) -> int:
    cfg = _config(args)
    say(cfg.summary())
    say(f"dataset_dir={cfg.dataset_dir}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from slm4offer.report.check import committed_results, compare, markdown

    results = args.results or repo_root() / "results"
    report = compare(committed_results(args.committed), results, partial=args.partial)
    about = json.loads(args.provenance.read_text()) if args.provenance else None
    text = markdown(report, args.committed, results, about)
    say(text)
    if args.out:
        write_text(args.out, text)
    return 0 if report.ok else 1


def _recompute(args: argparse.Namespace) -> int:
    from slm4offer.experiments.metrics import acceptance_table, read_decisions
    from slm4offer.report.check import recompute

    results = args.results
    names = sorted(p.stem for p in (results / "decisions").glob("*.csv"))
    if not names:
        raise MissingFile(f"no decision files in {results / 'decisions'}")
    failed = False
    for name in names:
        problems = recompute(results, name)
        table = acceptance_table(read_decisions(results / "decisions" / f"{name}.csv"))
        shown = table[["system", "judge", "mean", "ci_low", "ci_high", "expected", "sampled"]]
        say(f"## {name}: recomputed from {results / 'decisions' / (name + '.csv')}\n")
        say(shown.to_string(index=False, float_format=lambda x: f"{100 * x:.1f}"))
        say("\n" + ("\n".join(problems) if problems else f"identical to {name}.csv and {name}_gain.csv") + "\n")
        failed |= bool(problems)
    return 1 if failed else 0


def _reproduce(args: argparse.Namespace) -> int:
    from slm4offer.report.check import committed_results
    from slm4offer.report.reproduce import update

    root = repo_root()
    if args.write:
        say(f"REPRODUCE.md {update(root / 'REPRODUCE.md', root / 'results')}")
        return 0
    try:
        committed = committed_results("HEAD", root)
    except CannotRun as exc:  # e.g. a copy without git history: nothing to compare conclusions with
        say(f"REPRODUCE.md kept ({exc})")
        return 0
    say(f"REPRODUCE.md {update(root / 'REPRODUCE.md', root / 'results', committed)}")
    return 0


def _release(args: argparse.Namespace) -> int:
    from slm4offer.report.release import export

    out = resolve_path(args.output_dir) if args.output_dir else None
    say(f"released: {export(_config(args), out)}")
    return 0


def _record_stage(args: argparse.Namespace) -> int:
    from slm4offer.report.outputs import record_stage

    say(f"{args.notebook}: {record_stage(args.notebook, args.seconds)['seconds']} s")
    return 0


def _mark_parameters(args: argparse.Namespace) -> int:
    from slm4offer.report.notebooks import mark_injected_parameters

    for path in args.notebooks:
        mark_injected_parameters(path)
    return 0


COMMANDS = {"synthesize": _synthesize, "validate-data": _validate_data, "train": _train, "generate": _generate,
            "evaluate": _evaluate, "tune": _tune, "validate-judge": _validate_judge, "offers": _offers,
            "config": _show_config,
            "check": _check, "recompute": _recompute, "reproduce": _reproduce, "release": _release,
            "record-stage": _record_stage, "mark-parameters": _mark_parameters}


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    LOG["format"] = args.log_format
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun and accelerate launch
    if processes > 1 and args.command != "train":
        _error(args, f"only `train` runs on several processes ({processes} launched); run this command as one "
                     "process (it reuses the trained models)")
        return 2
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:  # anything else is a bug: its traceback is kept
        _error(args, str(exc))
        return 2


def _error(args: argparse.Namespace, message: str) -> None:
    if args.log_format == "json":
        print(json.dumps({"command": args.command, "error": message}), file=sys.stderr, flush=True)
    else:
        print(f"slm4offer {args.command}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
