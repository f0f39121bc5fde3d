"""`jaxflow sweep CONFIG [--out DIR]`: gradient flows from many initializations (`jaxflow.sweep`),
resumable, summarized as JSON, a CSV with one row per trajectory, and plots. Its config's tables
`[network]`, `[flow]` and `[sweep]` are the typed objects `jaxflow.sweep` takes."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from .. import plots
from .._checks import output_folder
from .._memory import Budget, check_fits
from .._store import write_csv_rows, write_text
from ..config import SweepTaskConfig, load_config, require_singular_values
from ..linear import Task
from ..linear.sweep import STATUS, Flow, Lanes, Networks, SweepResult, sweep, sweep_bytes


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """`jaxflow sweep`: the gradient flow of `network` on `task` from `sweep.inits` initializations
    (`Networks`, `Flow` and `Lanes` of `jaxflow.linear.sweep`)."""

    task: SweepTaskConfig = dataclasses.field(default_factory=SweepTaskConfig)
    network: Networks = dataclasses.field(default_factory=Networks)
    flow: Flow = dataclasses.field(default_factory=Flow)
    sweep: Lanes = dataclasses.field(default_factory=Lanes)

    def __post_init__(self):
        require_singular_values(self.task.singular_values, self.network.architectures[0])

    def whitened_task(self) -> Task:
        """`Σ_yx = diag(singular_values)` padded to the networks' `(d_h, d_0)` (`Task.from_spectrum`)."""
        widths = self.network.architectures[0]
        return Task.from_spectrum(self.task.singular_values, widths[0], widths[-1])


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """A finished sweep: its config, per-trajectory `result`, wall `seconds` and the devices used."""

    config: SweepConfig
    result: SweepResult
    seconds: float
    devices: tuple[str, ...]


def run(
    config: SweepConfig, *, out=None, progress: bool = False, max_memory: int | Budget | None = None
) -> SweepRun:
    """`sweep` of `config`'s task and tables, timed (`out/chunks/` makes it resumable), refused
    before compiling when its memory estimate (`sweep_bytes`) exceeds `max_memory`
    (`_memory.budget`)."""
    check_fits(
        sweep_bytes(config.network, config.flow, config.sweep, jax.device_count()),
        max_memory,
        "this sweep",
        "sweep.batch (lanes in flight per device), sweep.chunk, flow.saves or network.widths",
    )
    start = time.perf_counter()
    result = sweep(
        config.whitened_task(), config.network, config.flow, config.sweep, out=out, progress=progress
    )
    return SweepRun(config, result, time.perf_counter() - start, tuple(str(d) for d in jax.devices()))


def summarize(done: SweepRun) -> dict:
    """Per architecture: status counts, how often each critical value was reached, learning-time
    statistics per mode and the largest conservation drift (the content of `summary.json`)."""
    result = done.result
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
        "config": dataclasses.asdict(done.config),
        "singular_values": result.sigma.tolist(),
        "devices": list(done.devices),
        "seconds": done.seconds,
        "architectures": archs,
    }


def _fmt(values) -> str:
    return " ".join(f"{v:.6g}" for v in values if np.isfinite(v))


def write_csv(result: SweepResult, path: Path) -> Path:
    """One row per trajectory: architecture, init, status, losses, learning times, visited levels."""
    m = result.sigma.size
    rows = [
        ["widths", "depth", "init", "status", "final_loss", "critical_value", "learnt_modes", "visited",
         "drift", "t_final", "num_steps"] + [f"learning_time_{k + 1}" for k in range(m)]
    ]  # fmt: skip
    for n in range(result.index.size):
        a = result.arch[n]
        rows.append(
            ["x".join(map(str, result.widths[a])), len(result.widths[a]) - 1, result.index[n],
             STATUS[result.status[n]], f"{result.final_loss[n]:.10g}", f"{result.critical_value[n]:.10g}",
             " ".join(str(k + 1) for k in np.flatnonzero(result.learnt[n])), _fmt(result.visited[n]),
             f"{result.drift[n]:.3g}", f"{result.t_final[n]:.6g}", result.num_steps[n]]
            + [f"{t:.6g}" for t in result.learning_times[n]]
        )  # fmt: skip
    return write_csv_rows(path, rows)


def write(done: SweepRun, out) -> list[Path]:
    """`summary.json`, `trajectories.csv`, `losses.png` and `learning_times.png` in `out`."""
    out = Path(out)
    output_folder(out)
    files = [out / "summary.json", write_csv(done.result, out / "trajectories.csv")]
    write_text(files[0], json.dumps(summarize(done), indent=2))
    files.append(plots.plot_sweep_losses(done.result, out / "losses.png"))
    files.append(plots.plot_learning_times(done.result, out / "learning_times.png"))
    return files


def _out(args) -> Path:
    return Path(args.out) if args.out else Path("results") / Path(args.config).stem


def saved(args) -> str:
    """What an interrupted `jaxflow sweep` kept, and how to go on."""
    chunks = _out(args) / "chunks"
    done = len(list(chunks.glob("a*-c*.npz"))) if chunks.is_dir() else 0
    return f"{done} chunks saved in {chunks.parent}; run the same command again to resume"


def main(args) -> None:
    """`jaxflow sweep`: run `args.config` into `args.out` (resumable), print a summary."""
    config = load_config(args.config, SweepConfig)
    out = _out(args)
    n = config.sweep.inits * len(config.network.architectures)
    print(f"{n} trajectories on {jax.device_count()} device(s), results in {out}")
    done = run(config, out=out, progress=not args.quiet, max_memory=args.max_memory)
    files = write(done, out)
    for arch in summarize(done)["architectures"]:
        print(f"widths {arch['widths']}: {arch['status']}, final levels {arch['final_critical_values']}")
    print(f"{n} trajectories in {done.seconds:.1f} s ({n / done.seconds:.1f}/s)")
    for f in files:
        print(f"  {f}")
