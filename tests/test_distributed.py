"""Several processes, GPUs-to-be and training settings (bf16, report_to), tested on CPUs.

Two processes on the gloo backend train the smoke model as one process does on the same
global batches. The first step, from the same weights, agrees within FIRST_STEP_RTOL (only the
order of float sums differs); later steps, whose weights drift apart by rounding, within
LOSS_RTOL for the losses and GRAD_NORM_RTOL for the gradient norm (measured on the smoke run:
3e-5 and 6e-4 at worst). Dropout is off in this comparison: its masks are
drawn per process. What needs a GPU (NCCL, bf16 on a GPU, moving models to CUDA) is not run here.
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import built_once

from slm4offer.cli import main
from slm4offer.config import load_config
from slm4offer.model.generation import generate
from slm4offer.model.training import last_batches_reach_every_process, train, training_arguments
from slm4offer.runtime import resolve_device

HELPER = Path(__file__).with_name("ddp_train.py")
FIRST_STEP_RTOL, LOSS_RTOL, GRAD_NORM_RTOL = 1e-5, 2e-4, 5e-3
SETTINGS = {"dropout": 0.0, "epochs": 1, "logs_per_epoch": 1000}  # a log line per step


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two(root: Path, kinds: tuple[str, ...]) -> None:
    """Train `kinds` on two processes in project root `root`; each process lists the paths it
    wrote in writes.<rank>, and models.txt lists the model folders."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--master-addr", "127.0.0.1", "--master-port", str(_free_port())]
    env = {**os.environ, "SLM4OFFER_ROOT": str(root), "GLOO_SOCKET_IFNAME": "lo"}  # loopback only
    done = subprocess.run([*launcher, str(HELPER), str(root / "writes"), ",".join(kinds),
                           *(f"{k}={v}" for k, v in SETTINGS.items())], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    models = [line.removeprefix("model: ") for line in done.stdout.splitlines() if line.startswith("model: ")]
    assert len(models) == len(kinds), done.stdout[-3000:]
    (root / "models.txt").write_text("\n".join(models))


@pytest.fixture(scope="session")
def two_processes(tmp_path_factory) -> tuple[dict[str, Path], dict[int, list[str]]]:
    """Both kinds trained by one two-process launch, shared by the test workers (the launch and
    its imports cost more than a smoke model)."""
    kinds = ("sft", "contrastive")
    root = built_once(tmp_path_factory, "two-processes", lambda root: _launch_two(root, kinds))
    models = [Path(line) for line in (root / "models.txt").read_text().splitlines()]
    writes = {int(f.suffix[1:]): f.read_text().splitlines() for f in root.glob("writes.*")}
    return dict(zip(kinds, models, strict=True)), writes


def _log(model: Path) -> list[dict]:
    return json.loads((model / "final" / "training_log.json").read_text())


def test_only_the_main_process_writes_each_artifact_once(two_processes):
    models, writes = two_processes
    assert list(writes) == [0]
    assert len(writes[0]) == len(set(writes[0]))
    written = {Path(p).name for p in writes[0]}
    assert {"initial", "final"} <= written and any(n.startswith("dataset-") for n in written)
    for two in models.values():
        assert sorted(p.name for p in two.iterdir()) == ["final", "initial"]  # no checkpoints/, no temp folders
        assert json.loads((two / "final" / "training_info.json").read_text())["processes"] == 2


@pytest.mark.parametrize("kind", ["sft", "contrastive"])
def test_two_processes_train_as_one_on_the_same_global_batches(two_processes, smoke_data, kind):
    two = two_processes[0][kind]
    one = train(load_config("smoke", init="scratch", **SETTINGS), kind, progress=False).path.parent
    assert json.loads((one / "final" / "training_info.json").read_text())["processes"] == 1

    steps_one, steps_two = _log(one), _log(two)
    assert [x.get("step") for x in steps_one] == [x.get("step") for x in steps_two]
    parts = ["ce"] + (["infonce"] if kind == "contrastive" else [])
    assert steps_one[0]["step"] == 1
    for key in (*parts, "grad_norm"):
        assert steps_two[0][key] == pytest.approx(steps_one[0][key], rel=FIRST_STEP_RTOL), key
    compared = 0
    for a, b in zip(steps_one, steps_two, strict=True):
        for key in (*parts, "eval_loss", "eval_ce", "eval_infonce", "train_epoch_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=LOSS_RTOL), (a["step"], key)
                compared += 1
        if "grad_norm" in a:
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=GRAD_NORM_RTOL), a["step"]
    # every step of the epoch, its last (partial) batch included, and the epoch's evaluation
    assert compared >= len(parts) * steps_one[-1]["step"] + 3


@pytest.mark.parametrize("sizes, batch, processes, reaches", [
    ((540,), 16, 2, True),    # last batch 12: 8 + 4
    ((536,), 16, 2, False),   # last batch 8: 8 + 0, accelerate must pad it
    ((544, 56), 16, 2, False),  # 544 splits evenly; 56 leaves 8: 8 + 0
    ((544, 57), 16, 2, True),   # 57 leaves 9: 8 + 1
    ((5,), 16, 1, True),
])
def test_last_batch_reaches_every_process(sizes, batch, processes, reaches):
    assert last_batches_reach_every_process(sizes, batch, processes) is reaches


def test_batch_size_must_split_over_the_processes(tmp_path):
    with pytest.raises(ValueError, match="batch_size=15 does not split over 2 processes"):
        training_arguments(load_config("smoke", batch_size=15), tmp_path, 10, False, processes=2)


def test_devices_are_checked():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("meta")
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        load_config("smoke", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            resolve_device("cuda:0")


def test_bf16_runs_the_loss_in_autocast_and_tensorboard_logs_beside_the_model(smoke_data):
    cfg = load_config("smoke", init="scratch", epochs=1, dropout=0.0)
    fp32 = train(cfg, "contrastive", progress=False)
    bf16_cfg = load_config("smoke", init="scratch", epochs=1, dropout=0.0, bf16=True, report_to="tensorboard")
    bf16 = train(bf16_cfg, "contrastive", progress=False)
    first = [next(x for x in r.log_history if "ce" in x) for r in (fp32, bf16)]
    # autocast reached the loss (one forward call): bfloat16's 8-bit mantissa moves it, a little
    assert first[1]["ce"] != first[0]["ce"]
    assert first[1]["ce"] == pytest.approx(first[0]["ce"], rel=0.02)
    assert list((bf16.path.parent / "runs").glob("events.out.tfevents.*"))
    assert not (fp32.path.parent / "runs").exists()  # report_to defaults to none
    # the model trained under autocast generates and reranks (inference runs in fp32)
    rows = generate(dataclasses.replace(bf16_cfg, rerank_candidates=2), "contrastive", progress=False)
    assert rows and all(r["offer"] in r["candidates"] and len(r["similarities"]) == 2 for r in rows)


def test_only_train_runs_on_several_processes(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["generate", "--kind", "sft", "--profile", "smoke"]) == 2
    assert "only `train` runs on several processes (2 launched)" in capsys.readouterr().err
