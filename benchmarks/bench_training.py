"""`make bench`: training and generation speed on this machine, every number measured in this run.

Writes `results/bench.json` and `results/bench.md` (`results/<profile>/…` for other profiles):
- the machine's dense fp32 matmul peak (best of several square sizes);
- one optimiser step (forward, backward, AdamW) of SFT (lam = 0) and of the dual loss on the same
  batch, for several hard-negative counts k, with the ratio and the target 1 + 0.4 n (n: the
  negatives decoded per example, hard and in-batch);
- training throughput (examples/s) and achieved FLOP/s (counted by torch's FlopCounterMode) as
  a fraction of the measured peak (target: 50%);
- where the time of one SFT and one dual step goes (torch.profiler: self time per op, matmuls
  apart, and the time spent outside any op: Python, autograd bookkeeping, the profiler itself);
- other settings beside the one trained: a batch twice as large, dropout off, and dropout by
  `nn.Dropout`'s `bernoulli_` mask (what training used before `LaneDropout`);
- generation throughput (offers/s), batched vs one persona at a time;
- validating a user campaign log of 500,000 rows (~50 MB): time and peak traced memory;
- validating a judge against a 50 MB label file: time and peak traced memory.

Timings are medians of repeated runs after warm-up, on the model size of the chosen profile.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from example_log import write_example_log
from torch.utils.flop_counter import FlopCounterMode

from slm4offer import provenance
from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset, load_catalog
from slm4offer.data.userdata import load_user_data
from slm4offer.experiments.judge_validation import validate_judge
from slm4offer.files import write_json, write_text
from slm4offer.model.inference import generate_offers
from slm4offer.model.losses import dual_loss
from slm4offer.model.modeling import build_model, parameter_count, resolve_source
from slm4offer.model.offer_t5 import LaneDropout
from slm4offer.model.training import OfferCollator, make_examples, offer_keys, tokenizer_corpus, train


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(sizes=(512, 1024, 2048), repeats: int = 5) -> dict:
    """Best dense fp32 matmul rate over a few square sizes, FLOP/s."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        seconds = median_seconds(lambda a=a, b=b: torch.mm(a, b), repeats)
        rates[n] = 2 * n**3 / seconds
    best = max(rates, key=rates.get)
    return {"flops_per_s": rates[best], "size": best, "by_size": {str(k): v for k, v in rates.items()}}


def training_step(model, optimizer, batch, lam, tau, negatives, in_batch):
    def step():
        optimizer.zero_grad(set_to_none=True)
        dual_loss(model, batch, {"infonce": lam, "ce": 1 - lam}, tau, negatives, in_batch).loss.backward()
        optimizer.step()
    return step


def negatives_per_example(batch, cfg) -> float:
    """Negatives the dual loss decodes per example: the hard ones present in the batch (personas with
    fewer rejected offers have fewer) and the other examples' offers, each decoded under the persona."""
    b = batch["labels"].size(0)
    return batch["negative_owner"].numel() / b + min(cfg.in_batch_negatives, b - 1)


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
DUAL_TARGET_PER_K, PEAK_SHARE_TARGET = 0.4, 0.5  # dual step <= 1 + 0.4 k SFT steps; 50% of the matmul peak


def profile_step(step, steps: int = 5, top: int = 10) -> dict:
    """Self time per op over `steps` profiled steps (per step), the matmuls' share, and the rest of
    the wall time, spent outside any op."""
    step()  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - start) / steps
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6 / steps, e.count / steps) for e in prof.key_averages()),
                 key=lambda op: -op[1])
    in_ops = sum(seconds for _, seconds, _ in ops)
    return {"wall_s": wall, "matmul_s": sum(seconds for name, seconds, _ in ops if name in MATMUL_OPS),
            "in_ops_s": in_ops, "outside_ops_s": max(wall - in_ops, 0.0), "op_calls": sum(c for *_, c in ops),
            "top": [{"op": name, "self_s": seconds, "calls": calls} for name, seconds, calls in ops[:top]]}


def count_flops(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def bench_steps(cfg, repeats: int) -> dict:
    """SFT vs dual-loss step time on the same batch, for several k."""
    dd = build_dataset(cfg, progress=False)
    model, tokenizer = build_model(cfg, resolve_source(cfg), tokenizer_texts=tokenizer_corpus(dd["train"]))
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, fused=True)  # as Trainer's default
    keys = offer_keys(dd)
    collate = OfferCollator(tokenizer.pad_token_id)
    rows = []
    for k in sorted({1, cfg.hard_negatives, 5}):
        k_cfg = dataclasses.replace(cfg, hard_negatives=k)
        examples = make_examples(dd["train"], tokenizer, keys, k_cfg)
        batch = collate(examples[: cfg.batch_size])
        k_effective = negatives_per_example(batch, cfg)
        sft = training_step(model, optimizer, batch, 0.0, cfg.tau, cfg.negatives, cfg.in_batch_negatives)
        dual = training_step(model, optimizer, batch, cfg.lam, cfg.tau, cfg.negatives, cfg.in_batch_negatives)
        t_sft, t_dual = median_seconds(sft, repeats), median_seconds(dual, repeats)
        rows.append({"k": k, "k_effective": k_effective, "sft_step_s": t_sft, "dual_step_s": t_dual,
                     "ratio": t_dual / t_sft, "target_ratio": 1 + DUAL_TARGET_PER_K * k_effective,
                     "sft_flops": count_flops(sft), "dual_flops": count_flops(dual)})
        if k == cfg.hard_negatives:
            profiles = {"k": k, "sft": profile_step(sft), "dual": profile_step(dual)}
            candidate_examples = examples
    return {"steps": rows, "parameters": parameter_count(model), "step_profile": profiles,
            "candidates": bench_candidates(cfg, model, optimizer, candidate_examples, collate, repeats)}


def bench_candidates(cfg, model, optimizer, examples, collate, repeats: int) -> list[dict]:
    """SFT and dual step time per example as trained, with twice the batch, with dropout off, and
    with `nn.Dropout`'s `bernoulli_` mask instead of `LaneDropout` (the implementation before `LaneDropout`)."""
    def measure(label, batch_size):
        batch = collate(examples[:batch_size])
        settings = (cfg.tau, cfg.negatives, cfg.in_batch_negatives)
        sft = median_seconds(training_step(model, optimizer, batch, 0.0, *settings), repeats)
        dual = median_seconds(training_step(model, optimizer, batch, cfg.lam, *settings), repeats)
        return {"candidate": label, "batch_size": batch_size, "sft_step_s": sft, "dual_step_s": dual,
                "k_effective": negatives_per_example(batch, cfg)}
    rows = [measure(f"as trained (dropout {cfg.dropout}, LaneDropout; batch {cfg.batch_size})", cfg.batch_size),
            measure(f"batch {2 * cfg.batch_size}", 2 * cfg.batch_size)]
    with swapped_dropout(model, lambda p: LaneDropout(0.0)):
        rows.append(measure("dropout off", cfg.batch_size))
    with swapped_dropout(model, torch.nn.Dropout):
        rows.append(measure(f"dropout {cfg.dropout}, nn.Dropout (bernoulli_ mask)", cfg.batch_size))
    return rows


@contextlib.contextmanager
def swapped_dropout(model, make):
    """Every `LaneDropout` of `model` replaced by `make(p)` for the duration."""
    sites = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if isinstance(child, LaneDropout)]
    for parent, name, child in sites:
        setattr(parent, name, make(child.p))
    try:
        yield
    finally:
        for parent, name, child in sites:
            setattr(parent, name, child)


def bench_generation(cfg, n_personas: int) -> dict:
    """Offers/s generating greedily for test personas, batched vs one at a time."""
    trained = train(cfg, "contrastive", progress=False)
    personas = list(build_dataset(cfg, progress=False)["test"]["persona"])[:n_personas]
    kwargs = dict(max_new_tokens=cfg.max_offer_tokens, max_persona_tokens=cfg.max_persona_tokens)
    generate_offers(trained.model, trained.tokenizer, personas[:4], **kwargs)  # warm-up
    start = time.perf_counter()
    batched = generate_offers(trained.model, trained.tokenizer, personas, batch_size=len(personas), **kwargs)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [generate_offers(trained.model, trained.tokenizer, [p], **kwargs)[0] for p in personas]
    t_single = time.perf_counter() - start
    return {"personas": len(personas), "batched_offers_per_s": len(personas) / t_batched,
            "single_offers_per_s": len(personas) / t_single, "speedup": t_single / t_batched,
            "same_offers": batched == single, "model": trained.path.parent.name}


def bench_user_data(rows: int) -> dict:
    """`validate-data` on a generated log: wall time untraced, then peak memory under tracemalloc."""
    with tempfile.TemporaryDirectory() as folder:
        log, catalog = write_example_log(folder, rows)
        size = log.stat().st_size
        start = time.perf_counter()
        data = load_user_data(log, catalog)
        personas, offers = data.rows, data.catalog
        seconds = time.perf_counter() - start
        tracemalloc.start()
        try:
            load_user_data(log, catalog)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return {"rows": rows, "file_bytes": size, "personas": len(personas), "offers": len(offers),
            "seconds": seconds, "peak_traced_bytes": peak}


def bench_judge_labels(cfg, size_mb: float) -> dict:
    """`validate-judge --judge simulated --labels FILE` on a generated label file of about `size_mb`
    MB: wall time untraced, then peak memory under tracemalloc (the judge has no model)."""
    # enough (persona, offer) pairs for the file: about 100 bytes a row, 120 offers, a margin for the
    # personas the campaign drops
    world = dataclasses.replace(cfg, n_personas=max(200, int(size_mb * 1e6 / 100 / 120 * 1.5)), catalog_size=120)
    dd = build_dataset(world, progress=False)
    personas = [p for split in dd for p in dd[split]["persona_id"]]
    catalog = [o.text for o in load_catalog(world.dataset_dir)]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path, written, rows = Path(folder) / "labels.csv", 0, 0
        with path.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(["persona_id", "offer", "label"])
            for k in rng.permutation(len(personas) * len(catalog)):
                pid, offer = personas[k // len(catalog)], catalog[k % len(catalog)]
                out.writerow([pid, offer, "accept" if rng.random() < 0.3 else "reject"])
                written += len(pid) + len(offer) + 10
                rows += 1
                if written >= size_mb * 1e6:
                    break
        size = path.stat().st_size
        start = time.perf_counter()
        result = validate_judge(world, "simulated", path, progress=False)
        seconds = time.perf_counter() - start
        tracemalloc.start()
        try:
            validate_judge(world, "simulated", path, progress=False)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        rss = judge_labels_rss(world, path)
    return {"rows": rows, "file_bytes": size, "seconds": seconds, "peak_traced_bytes": peak,
            "rss_growth_bytes": rss, "kappa": result.result.kappa, "judged": result.result.n}


RSS_SCRIPT = """
import json, sys
from slm4offer.config import load_config
from slm4offer.data.dataset import build_dataset
from slm4offer.experiments.judge_validation import validate_judge
from slm4offer.judges import make_judge

def status(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))

cfg = load_config(**json.loads(sys.argv[1]))
build_dataset(cfg, progress=False), make_judge(cfg, "simulated", progress=False)
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # the peak (VmHWM) restarts from here: imports and set-up are not counted
before = status("VmRSS")
validate_judge(cfg, "simulated", sys.argv[2], progress=False)
print(status("VmHWM") - before)
"""


def judge_labels_rss(world, labels: Path) -> int:
    """Growth of the resident set (what the kernel sees, Arrow buffers included) of a fresh process
    from after its imports and dataset to the peak of `validate_judge` on `labels` (Linux: the peak
    is reset through /proc/self/clear_refs before the call)."""
    changed = {"profile": world.profile, "n_personas": world.n_personas, "catalog_size": world.catalog_size}
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, json.dumps(changed), str(labels)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def markdown(report: dict) -> str:
    peak = report["matmul_peak"]["flops_per_s"]
    lines = [f"# Benchmark ({report['profile']} profile, {report['parameters']:,} parameters)", "",
             f"Machine: {report['machine']}, {report['threads']} torch threads, torch {report['torch']}; "
             f"commit `{report['git_commit']}`; {report['written_at']}.", "",
             f"Measured dense fp32 matmul peak: **{peak / 1e9:.1f} GFLOP/s** "
             f"({report['matmul_peak']['size']}² matrices).", "",
             "## One training step (batch of "
             f"{report['batch_size']}, forward + backward + AdamW), SFT vs dual loss on the same batch", "",
             "| k (hard negatives) | negatives decoded per example (n) | SFT step | dual step | ratio | "
             "target ≤ 1 + 0.4n "
             "| examples/s SFT | examples/s dual | FLOP/s dual / peak | FLOP/s SFT / peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    b = report["batch_size"]
    for r in report["steps"]:
        ok = "met" if r["ratio"] <= r["target_ratio"] else "missed"
        lines.append(f"| {r['k']} | {r['k_effective']:.2f} | {r['sft_step_s'] * 1e3:.0f} ms | "
                     f"{r['dual_step_s'] * 1e3:.0f} ms | {r['ratio']:.2f} | {r['target_ratio']:.2f} ({ok}) | "
                     f"{b / r['sft_step_s']:.0f} | {b / r['dual_step_s']:.0f} | "
                     f"{r['dual_flops'] / r['dual_step_s'] / peak:.1%} | "
                     f"{r['sft_flops'] / r['sft_step_s'] / peak:.1%} |")
    shares = [r[f"{kind}_flops"] / r[f"{kind}_step_s"] / peak for r in report["steps"] for kind in ("sft", "dual")]
    lines += ["", f"n counts the hard negatives actually present in the batch (personas with fewer rejected offers "
              f"contribute fewer) plus the {report['in_batch_negatives']} other examples' offers each persona is "
              f"scored against, every one decoded under that persona as inference decodes it. Share of the "
              f"matmul peak: {min(shares):.1%} to {max(shares):.1%} "
              f"against the target of {PEAK_SHARE_TARGET:.0%} "
              f"({'met' if min(shares) >= PEAK_SHARE_TARGET else 'missed'}); FLOPs counted by FlopCounterMode.", ""]
    lines += profile_markdown(report["step_profile"], report["steps"], peak)
    lines += candidates_markdown(report["candidates"])
    g = report["generation"]
    lines += ["",
              f"## Generation (greedy, {g['personas']} test personas, model `{g['model']}`)", "",
              "| mode | offers/s |", "|---|---|",
              f"| batched ({g['personas']} per batch) | {g['batched_offers_per_s']:.1f} |",
              f"| one at a time | {g['single_offers_per_s']:.1f} |",
              f"| speed-up | {g['speedup']:.1f}x (target ≥ 5x) |", "",
              f"Batched and one-at-a-time outputs identical: {g['same_offers']}.", ""]
    u = report["user_data"]
    lines += ["## Validating your own data (`slm4offer validate-data`)", "",
              f"A generated campaign log of {u['rows']:,} rows ({u['file_bytes'] / 1e6:.1f} MB, {u['personas']:,} "
              f"personas, {u['offers']} offers) validates in **{u['seconds']:.1f} s**, "
              f"{u['rows'] / u['seconds']:,.0f} rows/s; peak memory traced by tracemalloc (Python objects, in "
              f"a second pass) **{u['peak_traced_bytes'] / 1e6:.0f} MB**, "
              f"{u['peak_traced_bytes'] / u['file_bytes']:.1f}x the file: the file is streamed, and what is kept "
              "is one entry per persona plus the offer ids shown to it.", ""]
    j = report["judge_labels"]
    lines += ["## Validating a judge on a large label file (`slm4offer validate-judge --labels`)", "",
              f"A generated label file of {j['rows']:,} rows ({j['file_bytes'] / 1e6:.1f} MB), judged by the "
              f"simulated customer (no model) and compared with the labels (kappa and its 2,000-resample bootstrap "
              f"CI), takes **{j['seconds']:.1f} s**; peak memory traced by tracemalloc (in a second pass) "
              f"**{j['peak_traced_bytes'] / 1e6:.0f} MB**, {j['peak_traced_bytes'] / j['file_bytes']:.1f}x the file "
              f"(target: under 2x); the resident set of a fresh process grows by "
              f"**{j['rss_growth_bytes'] / 1e6:.0f} MB** ({j['rss_growth_bytes'] / j['file_bytes']:.1f}x) from after "
              "its imports and dataset to its peak, pandas' Arrow-held strings included, which tracemalloc "
              "does not see. Labels are kept as columns with one string per distinct id and offer, the "
              "pairs are judged in chunks, and the bootstrap holds a bounded batch of resamples.", ""]
    return "\n".join(lines)


def profile_markdown(profile: dict, steps: list[dict], peak: float) -> list[str]:
    """The profiler's breakdown of one SFT and one dual step, side by side, and the FLOP share the
    step would reach if only its matmuls took time."""
    sft, dual = profile["sft"], profile["dual"]
    flops = next(r for r in steps if r["k"] == profile["k"])
    alone = {kind: flops[f"{kind}_flops"] / profile[kind]["matmul_s"] / peak for kind in ("sft", "dual")}
    def row(label, key):
        return (f"| {label} | {sft[key] * 1e3:.1f} ms ({sft[key] / sft['wall_s']:.0%}) | "
                f"{dual[key] * 1e3:.1f} ms ({dual[key] / dual['wall_s']:.0%}) |")
    lines = [f"## Where a step's time goes (torch.profiler, k = {profile['k']}, mean of 5 profiled steps)", "",
             "| | SFT step | dual step |", "|---|---|---|",
             row("matmuls (" + ", ".join(op.removeprefix("aten::") for op in MATMUL_OPS) + ")", "matmul_s"),
             f"| other ops | {(sft['in_ops_s'] - sft['matmul_s']) * 1e3:.1f} ms "
             f"({(sft['in_ops_s'] - sft['matmul_s']) / sft['wall_s']:.0%}) | "
             f"{(dual['in_ops_s'] - dual['matmul_s']) * 1e3:.1f} ms "
             f"({(dual['in_ops_s'] - dual['matmul_s']) / dual['wall_s']:.0%}) |",
             row("outside any op (Python, autograd bookkeeping, profiler)", "outside_ops_s"),
             row("wall time, profiled", "wall_s"),
             f"| op calls per step | {sft['op_calls']:.0f} | {dual['op_calls']:.0f} |",
             f"| step FLOPs / matmul time, share of the peak | {alone['sft']:.0%} | {alone['dual']:.0%} |", "",
             "The last row is the share of the peak the step would reach if every op but the matmuls took no "
             "time (a slight overestimate: attention's FLOPs, inside SDPA, count there too). "
             + ("Even that misses the target: the matmuls themselves are too small to run near the peak."
                if min(alone.values()) < PEAK_SHARE_TARGET else
                f"That meets the {PEAK_SHARE_TARGET:.0%} target: the share is lost to the other ops."), "",
             "Ops with the most self time (per step):", "",
             "| SFT op | self | calls | dual op | self | calls |", "|---|---|---|---|---|---|"]
    for a, b in zip(sft["top"], dual["top"], strict=True):
        lines.append(f"| `{a['op']}` | {a['self_s'] * 1e3:.1f} ms | {a['calls']:.0f} "
                     f"| `{b['op']}` | {b['self_s'] * 1e3:.1f} ms | {b['calls']:.0f} |")
    return lines + [""]


def candidates_markdown(rows: list[dict]) -> list[str]:
    base = rows[0]
    lines = ["## Other settings, against the one trained (each would change the trained models)", "",
             "| candidate | SFT examples/s | dual examples/s | dual / SFT step | target ≤ 1 + 0.4n | "
             "speed-up SFT | speed-up dual |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        per_sft, per_dual = r["sft_step_s"] / r["batch_size"], r["dual_step_s"] / r["batch_size"]
        ratio, target = r["dual_step_s"] / r["sft_step_s"], 1 + DUAL_TARGET_PER_K * r["k_effective"]
        lines.append(f"| {r['candidate']} | {1 / per_sft:.0f} | {1 / per_dual:.0f} | {ratio:.2f} | {target:.2f} "
                     f"({'met' if ratio <= target else 'missed'}) | "
                     f"{base['sft_step_s'] / base['batch_size'] / per_sft:.2f}x | "
                     f"{base['dual_step_s'] / base['batch_size'] / per_dual:.2f}x |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--personas", type=int, default=64, help="test personas for the generation benchmark")
    parser.add_argument("--log-rows", type=int, default=500_000, help="rows of the user-data log to validate")
    parser.add_argument("--labels-mb", type=float, default=50, help="size of the judge label file to validate")
    args = parser.parse_args()
    cfg = load_config(args.profile)
    torch.manual_seed(0)
    machine = f"{platform.processor() or platform.machine()} {platform.system()}"
    report = {"profile": cfg.profile, "batch_size": cfg.batch_size, "in_batch_negatives": cfg.in_batch_negatives,
              "machine": machine, "threads": torch.get_num_threads(), "torch": torch.__version__}
    report["matmul_peak"] = matmul_peak()
    report.update(bench_steps(cfg, args.repeats))
    report["generation"] = bench_generation(cfg, args.personas)
    report["user_data"] = bench_user_data(args.log_rows)
    report["judge_labels"] = bench_judge_labels(cfg, args.labels_mb)
    record = provenance.collect(cfg, with_time=True)
    report.update(git_commit=record["git_commit"], written_at=record["written_at"], provenance=record)
    write_json(cfg.results_dir / "bench.json", report)
    path = write_text(cfg.results_dir / "bench.md", markdown(report))
    print(path.read_text())


if __name__ == "__main__":
    main()
