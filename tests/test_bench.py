"""`make bench` runs end to end (smoke sizes, one repeat) and reports every section it promises."""

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_training.py"


def test_bench_reports_steps_profile_generation_and_user_data(project_root, smoke_data):
    done = subprocess.run([sys.executable, str(BENCH), "--profile", "smoke", "--repeats", "1", "--personas", "4",
                           "--log-rows", "2000", "--labels-mb", "0.2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((project_root / "results" / "smoke" / "bench.json").read_text())
    assert [r["k"] for r in report["steps"]] == [1, 3, 5]
    assert all(r["sft_step_s"] > 0 and r["dual_flops"] > r["sft_flops"] > 0 for r in report["steps"])
    for kind in ("sft", "dual"):
        profile = report["step_profile"][kind]
        assert 0 < profile["matmul_s"] <= profile["in_ops_s"] and profile["top"]
    assert [r["batch_size"] for r in report["candidates"]] == [16, 32, 16, 16]
    assert report["generation"]["same_offers"] is True
    assert report["user_data"]["rows"] == 2000
    labels = report["judge_labels"]
    assert labels["file_bytes"] >= 0.2e6 and labels["judged"] == labels["rows"] > 1000
    assert 0 < labels["peak_traced_bytes"] and 0 < labels["rss_growth_bytes"]
    text = (project_root / "results" / "smoke" / "bench.md").read_text()
    assert text.startswith("# Benchmark (smoke profile, ")
    for heading in ("## One training step", "## Where a step's time goes", "## Other settings", "## Generation",
                    "## Validating", "## Validating a judge on a large label file",
                    "| step FLOPs / matmul time, share of the peak |"):
        assert heading in text
