"""What one model of the `paper` profile (T5-Small shape, 30 epochs) costs, from FLOPs counted here.

Builds the paper profile's world and model (nothing is trained), counts the FLOPs of one training
step (forward, backward) of SFT and of the dual loss on a batch of its examples with torch's
FlopCounterMode, and the forward FLOPs of one validation batch; multiplies by the profile's steps
(examples / batch x epochs) and validation batches. The GPU time is then an estimate: counted
FLOPs divided by a sustained throughput this script cannot measure without a GPU (stated beside
it; a small model on short sequences sustains far below a GPU's peak). Writes
`results/paper_estimate.json` and README's block between the `paper-estimate` markers.

    .venv/bin/python benchmarks/paper_estimate.py        # about 2 minutes on 2 cores
"""

from __future__ import annotations

import math

import torch
from bench_training import count_flops, training_step
from readme_blocks import ROOT, write_result

from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset
from slm4offer.model.losses import dual_loss, loss_weights
from slm4offer.model.modeling import build_model, parameter_count, resolve_source
from slm4offer.model.training import OfferCollator, make_examples, offer_keys, tokenizer_corpus
from slm4offer.provenance import git_commit

RESULTS = ROOT / "results" / "paper_estimate.json"
NAME, SCRIPT = "paper-estimate", "benchmarks/paper_estimate.py"
# What the GPU time estimate assumes (nothing here can measure a GPU): a sustained bf16 rate for the
# counted FLOPs, and a fixed cost per optimiser step and per validation batch (kernel launches,
# optimiser, data loading), which dominates for a model this small on short sequences.
ASSUMED_FLOPS_PER_S = 40e12  # about 4% of an H100's dense bf16 peak
ASSUMED_SECONDS_PER_STEP = 0.025


def estimate() -> dict:
    cfg = load_config("paper")
    dd = build_dataset(cfg, progress=False)
    model, tokenizer = build_model(cfg, resolve_source(cfg), tokenizer_texts=tokenizer_corpus(dd["train"]))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    keys, collate = offer_keys(dd), OfferCollator(tokenizer.pad_token_id)
    train = make_examples(dd["train"], tokenizer, keys, cfg)
    valid = make_examples(dd["validation"], tokenizer, keys, cfg, seed_offset=1)
    batch = collate(train[: cfg.batch_size])
    per_step = {kind: count_flops(training_step(model, optimizer, batch, lam, cfg.tau, cfg.negatives,
                                                cfg.in_batch_negatives))
                for kind, lam in (("sft", 0.0), ("contrastive", cfg.lam))}
    model.eval()
    with torch.no_grad():
        eval_batch = collate(valid[: cfg.batch_size])
        eval_flops = count_flops(lambda: dual_loss(model, eval_batch, loss_weights(cfg), cfg.tau, cfg.negatives,
                                                   cfg.in_batch_negatives))
    steps = math.ceil(len(train) / cfg.batch_size) * cfg.epochs
    eval_batches = math.ceil(len(valid) / cfg.batch_size) * cfg.epochs
    total = {kind: flops * steps + eval_flops * eval_batches for kind, flops in per_step.items()}
    return {"parameters": parameter_count(model), "vocab": len(tokenizer), "train_examples": len(train),
            "validation_examples": len(valid), "batch_size": cfg.batch_size, "epochs": cfg.epochs,
            "steps": steps, "flops_per_step": per_step, "flops_per_example": {
                k: v / cfg.batch_size for k, v in per_step.items()},
            "validation_flops_per_batch": eval_flops, "total_flops": total,
            "assumed_flops_per_s": ASSUMED_FLOPS_PER_S, "assumed_seconds_per_step": ASSUMED_SECONDS_PER_STEP,
            "estimated_gpu_minutes": {k: (v / ASSUMED_FLOPS_PER_S + (steps + eval_batches) * ASSUMED_SECONDS_PER_STEP)
                                      / 60 for k, v in total.items()},
            "git_commit": git_commit(), "torch": torch.__version__}


def readme_block(r: dict) -> str:
    minutes = r["estimated_gpu_minutes"]
    return (
        f"One `paper`-profile model ({r['parameters'] / 1e6:.1f}M parameters, {r['train_examples']:,} training "
        f"examples, {r['epochs']} epochs, {r['steps']:,} steps of {r['batch_size']}) is "
        f"{r['total_flops']['sft'] / 1e15:.1f} PFLOP for SFT and {r['total_flops']['contrastive'] / 1e15:.1f} "
        f"PFLOP contrastive, validation losses included (not the greedy generation that selects the epoch), "
        f"counted by torch's FlopCounterMode "
        f"({r['flops_per_example']['sft'] / 1e9:.1f} and {r['flops_per_example']['contrastive'] / 1e9:.1f} GFLOP "
        f"per training example). **Estimated** GPU time per model: about {minutes['sft']:.0f} minutes (SFT) and "
        f"{minutes['contrastive']:.0f} minutes (contrastive), assuming {r['assumed_flops_per_s'] / 1e12:.0f} TFLOP/s "
        f"sustained in bf16 and {1000 * r['assumed_seconds_per_step']:.0f} ms of fixed cost per step; both are "
        "assumptions (at this size the per-step cost dominates), so time one epoch before planning a run. "
        f"Measured by `benchmarks/paper_estimate.py` (`results/paper_estimate.json`, commit "
        f"`{r['git_commit'][:12]}`).")


if __name__ == "__main__":
    record = estimate()
    write_result(record, RESULTS, readme_block(record), NAME, SCRIPT)
