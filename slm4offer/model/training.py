"""Train the SFT baseline (lam = 0) or the contrastive model (lam > 0) with the HF Trainer.

`train(cfg, kind)` is the stage: it returns the cached model for `cfg` when there is one,
resumes from the last checkpoint when a run was interrupted, and otherwise trains from the
start. Checkpoints (safetensors), resume, evaluation each epoch, keeping the best epoch on the
validation criterion with early stopping (`selection.py`), gradient accumulation and multi-GPU
(`accelerate launch`) come from `transformers.Trainer`; this module adds the examples, the
collator and the loss, and logs CE, InfoNCE and the total separately for the loss curves.
Under `torchrun`/`accelerate launch` only the main process writes the dataset, the models and
the logs, and the contrastive loss sees the whole global batch (`slm4offer.distributed`).

Each accepted offer is one training example. Its hard negatives are drawn from the persona's
rejected offers once, before training, with `train_seed`: a resumed run sees the same batches.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import (
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.integrations import TensorBoardCallback
from transformers.trainer_callback import ExportableState
from transformers.trainer_utils import get_last_checkpoint

from slm4offer import provenance
from slm4offer.cache import CATALOG_FILE, stage_hash
from slm4offer.config import Config, data_name
from slm4offer.data.dataset import build_dataset
from slm4offer.errors import InvalidValue
from slm4offer.files import atomic_dir, write_json
from slm4offer.model import distributed, tuned
from slm4offer.model.losses import (
    IGNORE_INDEX,
    LOSS_TERMS,
    dual_loss,
    is_sft,
    loss_weights,
    sft_settings,
    weighted_sum,
)
from slm4offer.model.modeling import ModelSource, OfferT5, build_model, load_trained, parameter_count, resolve_source
from slm4offer.model.selection import CRITERION, ValidationCriterion, selected_epoch
from slm4offer.runtime import hf_progress_bars, resolve_device, set_threads

KINDS = ("sft", "contrastive")
LOG_FILE, INFO_FILE = "training_log.json", "training_info.json"


@dataclass
class TrainedModel:
    """A trained model with what made it: its folder, log history and provenance."""

    model: OfferT5
    tokenizer: PreTrainedTokenizerBase
    path: Path
    log_history: list[dict]
    info: dict
    cached: bool = False  # loaded from an earlier run rather than trained by this call

    @property
    def label(self) -> str:
        return self.info["label"]


def kind_config(cfg: Config, kind: str) -> Config:
    """The config a kind trains with: SFT is the same model and data with every contrastive term off;
    either takes the learning rate a tuning search chose for its setup (`tuned.apply`)."""
    if kind not in KINDS:
        raise InvalidValue(f"kind={kind!r}: must be one of {', '.join(KINDS)}")
    if kind == "sft":
        return tuned.apply(dataclasses.replace(cfg, **sft_settings()))
    if is_sft(cfg):
        raise InvalidValue("kind='contrastive' with lam=0 is the SFT baseline: use kind='sft'")
    return tuned.apply(cfg)


def model_label(cfg: Config) -> str:
    """What a config trains, whichever kind was asked: no contrastive term is the SFT baseline."""
    return "sft" if is_sft(cfg) else "contrastive"


def model_dir(cfg: Config, source: ModelSource) -> Path:
    """`artifacts/<profile>/model-<domain or your data's name>-<sft|contrastive>-<pretrained|scratch>-<hash>`."""
    digest = stage_hash(cfg, "train", source=source.location or "scratch")
    return cfg.artifacts_dir / f"model-{data_name(cfg)}-{model_label(cfg)}-{source.kind}-{digest}"


# --- examples and batches ---------------------------------------------------------------------

def offer_keys(dd: datasets.DatasetDict) -> dict[str, int]:
    """A stable integer per offer id, so that a batch can tell identical offers apart."""
    ids: set[str] = set()
    for split in dd.values():
        for column in ("accepted_offer_ids", "rejected_offer_ids"):
            ids.update(i for row in split[column] for i in row)
    return {oid: k for k, oid in enumerate(sorted(ids))}


def make_examples(split: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, keys: dict[str, int],
                  cfg: Config, seed_offset: int = 0) -> list[dict]:
    """One tokenised example per (persona, accepted offer), with hard negatives pre-sampled."""
    rng = np.random.default_rng(np.random.SeedSequence(cfg.train_seed, spawn_key=(11, seed_offset)))
    personas = tokenizer(list(split["persona"]), truncation=True, max_length=cfg.max_persona_tokens)["input_ids"]
    examples = []
    for row, persona_ids in zip(split, personas, strict=True):
        accepted = [keys[o] for o in row["accepted_offer_ids"]]
        k = min(cfg.hard_negatives, len(row["rejected_offers"]))
        picked = sorted(rng.choice(len(row["rejected_offers"]), size=k, replace=False)) if k else []
        negatives = [row["rejected_offers"][j] for j in picked]
        for offer, oid in zip(row["accepted_offers"], row["accepted_offer_ids"], strict=True):
            examples.append({"persona_id": row["persona_id"], "input_ids": persona_ids,
                             "offer": offer, "offer_key": keys[oid], "accepted_keys": accepted,
                             "negatives": negatives,
                             "negative_keys": [keys[row["rejected_offer_ids"][j]] for j in picked]})
    texts = sorted({e["offer"] for e in examples} | {n for e in examples for n in e["negatives"]})
    encoded = dict(zip(texts, tokenizer(texts, truncation=True, max_length=cfg.max_offer_tokens)["input_ids"],
                       strict=True))
    for e in examples:
        e["labels"] = encoded[e.pop("offer")]
        e["negative_labels"] = [encoded[n] for n in e.pop("negatives")]
    return examples


def tokenizer_corpus(split: datasets.Dataset) -> list[str]:
    """The texts a scratch tokenizer is trained on: the split's personas and offers."""
    offers = {o for column in ("accepted_offers", "rejected_offers") for row in split[column] for o in row}
    return list(split["persona"]) + sorted(offers)


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max((len(r) for r in rows), default=1)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long).reshape(-1, width)


class OfferCollator:
    """Pads personas and offers; flattens the hard negatives with the row each belongs to."""

    def __init__(self, pad_token_id: int):
        self.pad = pad_token_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        inputs = _pad([e["input_ids"] for e in examples], self.pad)
        negatives = [(i, n, k) for i, e in enumerate(examples)
                     for n, k in zip(e["negative_labels"], e["negative_keys"], strict=True)]
        return {
            "input_ids": inputs,
            "attention_mask": (inputs != self.pad).long(),
            "labels": _pad([e["labels"] for e in examples], IGNORE_INDEX),
            "offer_keys": torch.tensor([e["offer_key"] for e in examples], dtype=torch.long),
            "accepted_keys": _pad([e["accepted_keys"] for e in examples], -1),
            "negative_labels": _pad([n for _, n, _ in negatives], IGNORE_INDEX),
            "negative_owner": torch.tensor([i for i, _, _ in negatives], dtype=torch.long),
            "negative_keys": torch.tensor([k for _, _, k in negatives], dtype=torch.long),
        }


# --- trainer ------------------------------------------------------------------------------------

class LossPartsLog(TrainerCallback, ExportableState):
    """Running sums of CE and InfoNCE per scope (since the last log, this epoch, this eval).

    Stored in every checkpoint (Trainer's stateful callbacks), so a run resumed mid-epoch
    logs the same epoch means as one that was never interrupted.
    """

    SCOPES = ("step", "epoch", "eval")

    def __init__(self):
        self.sums: dict[str, dict[str, float]] = {scope: {} for scope in self.SCOPES}

    def add(self, scope: str, weight: float, parts) -> None:
        sums = self.sums[scope]
        values = {"n": 1.0, **{name: term.item() for name, term in parts.terms.items()}}
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + weight * value

    def pop_means(self, scope: str) -> dict[str, float]:
        """Means since the last pop, over every process (all of them log at the same steps)."""
        sums, self.sums[scope] = self.sums[scope], {}
        if distributed.world_size() > 1:
            names = sorted(sums)
            totals = distributed.all_sum(torch.tensor([sums[k] for k in names], dtype=torch.float64))
            sums = dict(zip(names, totals.tolist(), strict=True))
        n = sums.pop("n", 0.0)
        return {name: value / n for name, value in sums.items()} if n else {}

    def state(self) -> dict:
        return {"args": {}, "attributes": {"sums": self.sums}}


class OfferTrainer(Trainer):
    """`Trainer` with the dual loss; logs its parts for train (per step, per epoch) and eval.

    Parts are summed in `compute_loss` and merged into the Trainer's own log lines in `log`
    (logging from `compute_loss` would fire per micro-batch and during evaluation).
    """

    # compute_loss returns a per-micro-batch mean: let Trainer divide by gradient accumulation.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, weights: dict[str, float], tau: float, negatives: str, in_batch: int,
                 criterion: ValidationCriterion, **kwargs):
        super().__init__(*args, **kwargs)
        self.weights, self.tau, self.negatives, self.in_batch = weights, tau, negatives, in_batch
        self.criterion = criterion
        self.add_callback(LossPartsLog())

    def evaluation_loop(self, *args, **kwargs):
        """The validation losses, and the selection criterion beside them (before the Trainer logs,
        keeps the best checkpoint and decides on early stopping)."""
        output = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        output.metrics[f"{prefix}_{CRITERION}"] = self.criterion(self.model, self.processing_class)
        return output

    @property
    def parts_log(self) -> LossPartsLog:
        # looked up each time: resuming replaces the callback with the checkpoint's copy
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, LossPartsLog))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # one forward call (OfferT5.forward's `run`), so that DDP and autocast see the whole loss;
        # validation computes every term, so that the SFT baseline's InfoNCE is logged too
        parts = model(run=lambda m: dual_loss(m, inputs, self.weights, self.tau, self.negatives,
                                              self.in_batch, every_term=not model.training))
        # Trainer averages train losses per step but eval losses per example: weight alike.
        if model.training:
            self.parts_log.add("step", 1.0, parts)
            self.parts_log.add("epoch", 1.0, parts)
        else:  # weighted by the global batch's examples per process: exact however a batch is split
            examples = distributed.all_sum(torch.tensor(float(inputs["labels"].size(0)))).item()
            self.parts_log.add("eval", examples / distributed.world_size(), parts)
        return (parts.loss, {"loss": parts.loss}) if return_outputs else parts.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "eval_loss" in logs:  # end of an epoch: eval parts, and the epoch's train means
            logs.update({f"eval_{k}": v for k, v in self.parts_log.pop_means("eval").items()})
            if distributed.world_size() > 1:  # Trainer weights each process's loss by its own examples
                logs["eval_loss"] = weighted_sum({k: logs[f"eval_{k}"] for k in LOSS_TERMS if f"eval_{k}" in logs},
                                                 self.weights)
            epoch = self.parts_log.pop_means("epoch")
            if epoch:
                logs["train_epoch_loss"] = weighted_sum(epoch, self.weights)
                logs.update({f"train_epoch_{k}": v for k, v in epoch.items()})
        elif "loss" in logs:
            logs.update(self.parts_log.pop_means("step"))
        super().log(logs, start_time)


class TiedCopiesFilter(logging.Filter):
    """Drops the Trainer's warning, on loading the best checkpoint, that the checkpoint lacks the
    embedding matrices tied to `shared.weight`: safetensors stores a tied tensor once, and the copies
    are the very same parameter, so nothing is missing. Any other missing key is still reported."""

    PREFIX = "There were missing keys in the checkpoint model loaded: "

    def __init__(self, model: OfferT5):
        super().__init__()
        self.tied = {copy for copy, source in model._tied_weights_keys.items()
                     if model.get_parameter(copy) is model.get_parameter(source)}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        return not set(ast.literal_eval(message[len(self.PREFIX):].rstrip("."))) <= self.tied


class EpochPrinter(TrainerCallback):
    """One short line per epoch where progress bars are off (notebooks, logs)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "eval_loss" in logs and state.is_world_process_zero:
            parts = [f"epoch {logs.get('epoch', 0):.0f}/{args.num_train_epochs:.0f}"]
            for key in ("train_epoch_loss", "eval_loss", *(f"eval_{name}" for name in LOSS_TERMS), f"eval_{CRITERION}"):
                if key in logs:
                    parts.append(f"{key} {logs[key]:.4f}")
            print("  ".join(parts), flush=True)


def training_arguments(cfg: Config, output_dir: Path, steps_per_epoch: int, progress: bool,
                       checkpoint_every: int = 0, processes: int = 1,
                       split_sizes: tuple[int, ...] = ()) -> TrainingArguments:
    """Trainer settings from the config. `checkpoint_every` = 0 checkpoints (and evaluates) each
    epoch; N > 0 every N steps. The best checkpoint on the validation criterion is kept and loaded
    at the end.

    On several processes each batch of `batch_size` is split between them in order (accelerate's
    `split_batches`), so every step sees the examples it sees in one process, an epoch's last,
    partial batch included, unless that batch is too small to give each process some examples
    (of the datasets of `split_sizes`): then accelerate pads it with the epoch's first examples.
    """
    if cfg.batch_size % processes:
        raise InvalidValue(f"batch_size={cfg.batch_size} does not split over {processes} processes: "
                           f"use a multiple of {processes}")
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        accelerator_config={"split_batches": True,
                            "even_batches": not last_batches_reach_every_process(split_sizes, cfg.batch_size,
                                                                                 processes)},
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        lr_scheduler_type="linear",
        eval_strategy="steps" if checkpoint_every else "epoch",
        eval_steps=checkpoint_every or None,
        metric_for_best_model=CRITERION,
        greater_is_better=True,
        load_best_model_at_end=True,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // cfg.logs_per_epoch),
        save_strategy="steps" if checkpoint_every else "epoch",
        save_steps=checkpoint_every or 500,
        save_total_limit=2,  # and the best one, whichever it is
        restore_callback_states_from_checkpoint=True,  # the loss-part sums (LossPartsLog)
        seed=cfg.train_seed,
        full_determinism=not torch.cuda.is_available(),  # CPU runs repeat bit for bit (measured)
        data_seed=cfg.train_seed,
        remove_unused_columns=False,
        label_names=["labels"],
        prediction_loss_only=True,
        report_to=[r.strip() for r in cfg.report_to.split(",") if r.strip()] or "none",
        bf16=cfg.bf16,
        use_cpu=resolve_device(cfg.device).type == "cpu",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def train(cfg: Config, kind: str, progress: bool = True, checkpoint_every: int = 0,
          callbacks: list[TrainerCallback] | None = None) -> TrainedModel:
    """The trained `kind` model for `cfg`: cached, resumed from a checkpoint, or trained now."""
    set_threads(cfg.threads)
    with hf_progress_bars(progress):
        return _train(cfg, kind, progress, checkpoint_every, callbacks)


def is_trained(cfg: Config, kind: str) -> bool:
    """Whether `train(cfg, kind)` would load a cached model rather than train one."""
    cfg = kind_config(cfg, kind)
    return (model_dir(cfg, resolve_source(cfg)) / "final" / INFO_FILE).is_file()


def _train(cfg: Config, kind: str, progress: bool, checkpoint_every: int,
           callbacks: list[TrainerCallback] | None) -> TrainedModel:
    cfg = kind_config(cfg, kind)
    source = resolve_source(cfg)
    out = model_dir(cfg, source)
    final = out / "final"
    if (final / INFO_FILE).is_file():
        if cfg.report_to != "none" and distributed.is_main():
            print(f"report_to={cfg.report_to}: nothing sent, this model was trained before and is loaded from "
                  f"the cache ({out}); remove that folder to train it again with reporting", flush=True)
        return dataclasses.replace(load_result(final, cfg.device), cached=True)
    processes = join_processes(cfg)
    main = distributed.is_main()
    with distributed.main_process_first():  # the main process writes; the others read what it wrote
        dd = build_dataset(cfg, progress=progress and main)
        check_negatives(cfg, dd["train"])
        criterion = ValidationCriterion(cfg, progress=progress and main)  # fits the learned judge once
        initial = out / "initial"
        if (initial / "config.json").is_file():  # resuming, or another process saved it: same start
            model, tokenizer = load_trained(initial)
            model.train()
        else:
            model, tokenizer = build_model(cfg, source, tokenizer_texts=tokenizer_corpus(dd["train"]))
            with atomic_dir(initial) as tmp:  # kept: the untrained baseline of the analyses
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)

    keys = offer_keys(dd)
    train_examples = make_examples(dd["train"], tokenizer, keys, cfg, seed_offset=0)
    eval_examples = make_examples(dd["validation"], tokenizer, keys, cfg, seed_offset=1)
    steps_per_epoch = math.ceil(len(train_examples) / (cfg.batch_size * cfg.grad_accum))
    checkpoints = out / "checkpoints"
    args = training_arguments(cfg, checkpoints, steps_per_epoch, progress and main, checkpoint_every, processes,
                              (len(train_examples), len(eval_examples)))
    trainer = OfferTrainer(model=model, args=args, train_dataset=train_examples,
                           eval_dataset=eval_examples, data_collator=OfferCollator(tokenizer.pad_token_id),
                           processing_class=tokenizer, weights=loss_weights(cfg), tau=cfg.tau, negatives=cfg.negatives,
                           in_batch=cfg.in_batch_negatives, criterion=criterion,
                           callbacks=[*([] if progress else [EpochPrinter()]), *(callbacks or []),
                                      *([EarlyStoppingCallback(cfg.early_stopping_patience)]
                                        if cfg.early_stopping_patience else [])])
    if not progress:
        trainer.remove_callback(PrinterCallback)  # per-step dicts would flood notebook outputs
    for callback in trainer.callback_handler.callbacks:  # beside the model, not in checkpoints/ (removed)
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(out / "runs")
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    was_tuned = cfg.tuning == "auto" and tuned.choice(cfg) is not None
    if main and progress:
        print(f"training {model_label(cfg)} seed {cfg.train_seed} ({len(train_examples):,} examples, at most "
              f"{cfg.epochs} epochs, learning rate {cfg.learning_rate:g}{' (tuned)' if was_tuned else ''}) -> {out}",
              flush=True)
    if resume and main:
        print(f"resuming from {Path(resume).name}", flush=True)
    start = time.perf_counter()
    quiet = TiedCopiesFilter(model)
    trainer_log = logging.getLogger("transformers.trainer")
    trainer_log.addFilter(quiet)
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        trainer_log.removeFilter(quiet)
    if main:
        info = {
            "label": model_label(cfg),
            "kind": kind,
            "source": dataclasses.asdict(source),
            "source_kind": source.kind,
            "parameters": parameter_count(model),
            "model_config": model.config.to_diff_dict(),
            "train_examples": len(train_examples),
            "eval_examples": len(eval_examples),
            "steps": trainer.state.global_step,
            "processes": processes,
            "device": str(args.device),
            "train_seconds_this_run": round(time.perf_counter() - start, 1),
            "resumed_from": Path(resume).name if resume else None,
            "selection": selected_epoch(trainer.state.log_history, trainer.state.best_global_step),
            "tuning": {"learning_rate": cfg.learning_rate, "tuned": was_tuned},
            # stage_hash here omits the weights' source; the folder name (model_dir) includes it
            "provenance": provenance.collect(cfg, stage="train", with_time=True, model_dir=out.name),
        }
        model.config.offer_similarity_trained = not is_sft(cfg)  # `offers` refuses to rank with it otherwise
        with atomic_dir(final) as tmp:
            trainer.save_model(str(tmp))
            shutil.copyfile(cfg.dataset_dir / CATALOG_FILE, tmp / CATALOG_FILE)  # what offer_id refers to
            write_json(tmp / LOG_FILE, trainer.state.log_history)
            write_json(tmp / INFO_FILE, info)
        shutil.rmtree(checkpoints, ignore_errors=True)  # the final folder holds everything kept
    distributed.barrier()
    return load_result(final, cfg.device)


def last_batches_reach_every_process(sizes: tuple[int, ...], batch_size: int, processes: int) -> bool:
    """Whether the last batch of each dataset (of `sizes` examples) gives every process at least one
    example when split in order into slices of batch_size / processes."""
    share = batch_size // processes
    return all(n % batch_size == 0 or n % batch_size > share * (processes - 1) for n in sizes)


def join_processes(cfg: Config) -> int:
    """How many processes train together: under `torchrun`/`accelerate launch` this joins their
    process group (gloo on CPUs, NCCL on GPUs) before any of them touches the cache; alone, 1."""
    from accelerate import PartialState

    return PartialState(cpu=resolve_device(cfg.device).type == "cpu").num_processes


def load_result(final: Path, device: str = "cpu") -> TrainedModel:
    """A finished run's model (on `device`: 'auto' is a GPU when there is one) and its records."""
    model, tokenizer = load_trained(final)
    model.to(resolve_device(device))  # type: ignore[arg-type]  # transformers types `to` for models only
    return TrainedModel(model=model, tokenizer=tokenizer, path=final,
                        log_history=json.loads((final / LOG_FILE).read_text()),
                        info=json.loads((final / INFO_FILE).read_text()))


def check_negatives(cfg: Config, split: datasets.Dataset) -> None:
    """Fail before training when more hard negatives are asked than any persona has."""
    if is_sft(cfg) or cfg.negatives == "in_batch":
        return
    available = max((len(r) for r in split["rejected_offer_ids"]), default=0)
    if cfg.hard_negatives > available:
        raise InvalidValue(f"hard_negatives={cfg.hard_negatives}: no training persona has more than "
                           f"{available} rejected offers; use at most {available}")


def load_initial(result: TrainedModel):
    """The untrained model (and tokenizer) a training run started from, saved beside it."""
    return load_trained(result.path.parent / "initial")
