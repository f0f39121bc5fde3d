"""`jaxflow sweep CONFIG [--out DIR]`: gradient flows from many initializations (`jaxflow.sweep`),
resumable, summarized as JSON, a CSV with one row per trajectory, and plots."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from .. import plots
from ..config import SweepConfig, load_config
from ..sweep import STATUS, sweep


def _fmt(values) -> str:
    return " ".join(f"{v:.6g}" for v in values if np.isfinite(v))


def write_csv(result, path: Path) -> Path:
    """One row per trajectory: architecture, init, status, losses, learning times, visited levels."""
    m = result.sigma.size
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["widths", "depth", "init", "status", "final_loss", "critical_value", "learnt_modes", "visited",
             "drift", "t_final", "num_steps"] + [f"learning_time_{k + 1}" for k in range(m)]
        )  # fmt: skip
        for n in range(result.index.size):
            a = result.arch[n]
            w.writerow(
                ["x".join(map(str, result.widths[a])), len(result.widths[a]) - 1, result.index[n],
                 STATUS[result.status[n]], f"{result.final_loss[n]:.10g}", f"{result.critical_value[n]:.10g}",
                 " ".join(str(k + 1) for k in np.flatnonzero(result.learnt[n])), _fmt(result.visited[n]),
                 f"{result.drift[n]:.3g}", f"{result.t_final[n]:.6g}", result.num_steps[n]]
                + [f"{t:.6g}" for t in result.learning_times[n]]
            )  # fmt: skip
    return path


def summary(result, config: SweepConfig, seconds: float) -> dict:
    """Per architecture: status counts, how often each critical value was reached, learning-time
    statistics per mode and the largest conservation drift."""
    archs = []
    for a, widths in enumerate(result.widths):
        rows = result.arch == a
        times = result.learning_times[rows]
        values, counts = np.unique(result.critical_value[rows], return_counts=True)
        archs.append({
            "widths": list(widths),
            "trajectories": int(rows.sum()),
            "status": {s: int(np.sum(result.status[rows] == i)) for i, s in enumerate(STATUS)},
            "critical_levels": result.levels[a].tolist(),
            "final_critical_values": {f"{v:.10g}": int(c) for v, c in zip(values, counts)},
            "learning_time_median": [
                float(np.nanmedian(t)) if np.isfinite(t).any() else None for t in times.T
            ],
            "learnt_fraction": result.learnt[rows].mean(axis=0).tolist(),
            "max_drift": float(np.max(result.drift[rows])),
        })  # fmt: skip
    return {
        "config": dataclasses.asdict(config),
        "singular_values": result.sigma.tolist(),
        "devices": [str(d) for d in jax.devices()],
        "seconds": seconds,
        "architectures": archs,
    }


def _cores_as_devices() -> None:
    """On CPU, one device per core: `sweep` shards lanes over devices, and a solve of small matrices
    uses one core. Possible only before JAX's first computation (kept as is otherwise)."""
    try:
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    except RuntimeError:  # backends already initialized (e.g. called in-process after other JAX work)
        pass


def main(args) -> None:
    _cores_as_devices()
    jax.config.update("jax_enable_x64", True)  # float64 for analysis (DESIGN); flow.dtype may ask float32
    config = load_config(args.config, SweepConfig)
    out = Path(args.out) if args.out else Path("results") / Path(args.config).stem
    n = config.sweep.inits * len(config.network.architectures)
    print(f"{n} trajectories on {jax.device_count()} device(s), results in {out}")
    start = time.perf_counter()
    result = sweep(config, out=out, progress=True)
    seconds = time.perf_counter() - start
    info = summary(result, config, seconds)
    files = [out / "summary.json", write_csv(result, out / "trajectories.csv")]
    files[0].write_text(json.dumps(info, indent=2))
    files.append(plots.plot_sweep_losses(result, out / "losses.png"))
    files.append(plots.plot_learning_times(result, out / "learning_times.png"))
    for arch in info["architectures"]:
        print(f"widths {arch['widths']}: {arch['status']}, final levels {arch['final_critical_values']}")
    print(f"{n} trajectories in {seconds:.1f} s ({n / seconds:.1f}/s)")
    for f in files:
        print(f"  {f}")
