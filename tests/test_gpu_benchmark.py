"""`benchmarks/gpu.py --quick` runs on CPU and writes every field of its record."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def test_quick_gpu_benchmark_runs_on_cpu(tmp_path):
    dest = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(dest)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == f"wrote {dest}"
    record = json.loads(dest.read_text())
    assert record["quick"] is True and record["goals"] == {
        "trajectories_per_second": 1e4,
        "null64_seconds": 300.0,
    }
    memory = {"device_peak_bytes", "device_bytes_limit", "peak_rss_gb"}
    assert [r["trajectories"] for r in record["sweeps"]] == [32, 64]
    for r in record["sweeps"]:
        assert set(r) == {"trajectories", "chunk", "seconds", "trajectories_per_second", "converged", *memory}
        assert r["trajectories_per_second"] == r["trajectories"] / r["seconds"] and r["converged"] == 1.0
    nulls = record["nulls"]
    assert set(nulls) == {
        "graph", "input", "edges", "nodes", "samples", "restarts", "chunk", "seconds", "samples_per_second",
        "null_mean_normalized", "memory_bound_bytes", *memory,
    }  # fmt: skip
    assert nulls["samples"] == 2 and nulls["samples_per_second"] == 2 / nulls["seconds"]
    assert 0 < nulls["null_mean_normalized"] < 1 and nulls["peak_rss_gb"] > 0
    assert set(record["goals_met"]) == {"trajectories_per_second", "null64_seconds"}
    assert record["machine"]["devices"][0].startswith("cpu")
