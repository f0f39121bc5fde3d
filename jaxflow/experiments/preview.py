"""What a frustration run will cost, before it runs (`--dry-run`, and the `"preview"` at the top
of `frustration.json` and `study.json`): the graph's size, the estimator and its effort, the
memory of each stage, and a time range from a short calibration.

The ladder decides its effort from its own evidence, so its cost is a range: the least (rung 0,
the first annealing rung and `LADDER_PATIENCE` idle doublings) and the most (every doubling up to
the caps). Each null model climbs the network's rungs, so it costs what the network's search does.
Time is counted in sweeps of the ladder's batch of restarts, timed on the graph itself
(`calibrate`); the proven bound is not estimated.
"""

from __future__ import annotations

import time

import jax

from .._memory import Budget, budget, size_text
from ..config import StudyFrustrationConfig
from ..signed import Anneal, Estimator, Ladder, Layerwise, SignedGraph
from ..signed._search import SCREEN_SWEEPS
from ..signed.estimators import (
    default_survivors,
    ladder_batch,
    ladder_jobs,
    ladder_start,
    next_rung,
)
from ..signed.frustration import frustration
from ..signed.nullmodels import default_chunk_size, frustration_bytes
from .nulls import ROBUSTNESS_SAMPLES, config_estimator, independent_estimator

CALIBRATION_SWEEPS = 2  # the first calibration search anneals this many sweeps …
CALIBRATION_SECONDS = 0.5  # … the second more, as many as take about this long (at least 2 more)
CALIBRATION_MAX_EXTRA = 256  # … and at most this many more
STAGE_COMPILES = 3  # the network's search, its bound and the null models' program each compile
NOT_ESTIMATED = "not estimated"


def climb(graph: SignedGraph, estimator: Ladder, gains: bool) -> list[tuple[int, int]]:
    """The rungs `(restarts, sweeps)` a `Ladder` climbs on `graph` when every doubling lowers the
    best value (`gains`: up to its caps) or none does (the least: it stops after
    `LADDER_PATIENCE` idle rungs); its own `rungs` when it has them."""
    settings = estimator.settings(graph)
    if settings.rungs:
        return list(settings.rungs)
    caps = settings.restarts, settings.anneal_steps
    rungs = list(ladder_start(graph, ladder_batch(graph, settings), settings.anneal_steps))
    grow, idle_rungs = "sweeps", 0
    while True:
        step, grow = next_rung(rungs[-1], grow, idle_rungs, *caps)
        if step is None:
            return rungs
        rungs.append(step)
        idle_rungs += not gains


def calibrate(graph: SignedGraph, estimator: Estimator) -> dict:
    """Time the annealing sweep of `graph` at the ladder's batch of restarts: two ladders of
    fixed rungs `((1, 0), (batch, sweeps))` a few sweeps apart, the first run twice (its first
    run compiles). Returns `batch`, `compile_s`, `sweep_s` (one sweep of the batch), `job_s` (the
    fixed cost of one search job), `descent_sweeps` (the sweeps of a descent to a fixed point)
    and `seconds` (the calibration's own time)."""
    settings = estimator.settings(graph)
    batch = ladder_batch(graph, settings)

    def timed(sweeps: int) -> tuple[float, int]:
        ladder = Ladder(
            rungs=((1, 0), (batch, sweeps)),
            max_restarts=batch,
            tol=settings.tol,
            max_iterations=settings.max_iterations,
        )
        start = time.perf_counter()
        result = frustration(graph, ladder, bound=False)
        return time.perf_counter() - start, int(result.iterations)

    begin = time.perf_counter()
    first, _ = timed(CALIBRATION_SWEEPS)
    base, iterations = timed(CALIBRATION_SWEEPS)
    extra = int(min(CALIBRATION_MAX_EXTRA, max(2, CALIBRATION_SECONDS * CALIBRATION_SWEEPS / base)))
    longer, _ = timed(CALIBRATION_SWEEPS + extra)
    sweep = max(longer - base, 0.0) / extra
    descent = max(1, iterations - CALIBRATION_SWEEPS)
    return {
        "batch": batch,
        "compile_s": max(first - base, 0.0),
        "sweep_s": sweep,
        "job_s": max(base - (CALIBRATION_SWEEPS + descent * (1 + 1 / batch)) * sweep, 0.0) / 2,
        "descent_sweeps": descent,
        "seconds": time.perf_counter() - begin,
    }


def _descent_sweeps(restarts: int, batch: int, descent: int) -> float:
    """Batch-sweeps of a `"layerwise"` descent from `restarts` random gauges: the screen's sweeps
    of all of them, then the descent of the survivors."""
    survivors = default_survivors(restarts)
    screen = SCREEN_SWEEPS * restarts if survivors < restarts else 0
    return (screen + descent * survivors) / batch


def search_seconds(graph: SignedGraph, estimator: Estimator, rungs, cal: dict) -> float | None:
    """Seconds of one search of `graph` by `estimator` (a `Ladder` climbing `rungs`), from the
    calibration `cal`; None for the estimators it does not time (`Greedy`, `Exact`)."""
    batch, descent = cal["batch"], cal["descent_sweeps"]
    settings = estimator.settings(graph)
    if isinstance(estimator, Ladder):
        jobs, _ = ladder_jobs(rungs, batch)
        work = sum(
            (sweeps + descent) if sweeps else _descent_sweeps(count, batch, descent) for sweeps, count in jobs
        )
    elif isinstance(estimator, Layerwise):
        jobs, work = [()], _descent_sweeps(settings.restarts, batch, descent)
    elif isinstance(estimator, Anneal):
        jobs, work = [()], (settings.anneal_steps + descent) * settings.restarts / batch
    else:
        return None
    return len(jobs) * cal["job_s"] + work * cal["sweep_s"]


def memory(
    graph: SignedGraph, config: StudyFrustrationConfig, max_memory: int | Budget | None = None
) -> dict:
    """Peak bytes of each stage (`frustration_bytes`): the network's search, the null models (a
    chunk of samples in flight on each device) and, with `config.robustness`, the independent
    estimator's null models; and the `budget` they must fit (`max_memory`, `_memory.budget`)."""
    estimator = config_estimator(config)
    devices = jax.device_count()
    samples = config.null_samples
    stages = {
        "network": frustration_bytes(graph, estimator.in_flight(graph)),
        "null_models": frustration_bytes(
            graph, estimator.in_flight(graph), default_chunk_size(graph, samples) * devices
        ),
    }
    if config.robustness:
        other = independent_estimator(estimator.settings(graph).method, estimator)
        few = min(ROBUSTNESS_SAMPLES, samples)
        stages["robustness"] = frustration_bytes(
            graph, other.in_flight(graph), default_chunk_size(graph, few) * devices
        )
    return stages | {"budget": budget(max_memory).nbytes}


def preview(
    graph: SignedGraph, config: StudyFrustrationConfig, max_memory: int | Budget | None = None
) -> dict:
    """What a frustration run of `graph` under `config` will do: `graph` (layers, nodes, edges,
    dtype), `estimator` (its TOML form, the restarts it holds at once and, for a ladder, the
    rungs of the least and the most search), `memory` (`memory`, bytes) and `time` (seconds:
    the `calibration`, then `[least, most]` for the `network`'s search, each null model
    (`per_null`), all `null_models`, the `robustness` run and the `total`, a compilation per
    stage included; the `bound`'s own search is not estimated). Time is not estimated for
    `Greedy` and `Exact`, or when a stage does not fit `max_memory` (the run refuses it)."""
    estimator = config_estimator(config)
    mem = memory(graph, config, max_memory)
    out = {
        "graph": {
            "num_layers": graph.num_layers,
            "num_nodes": graph.num_nodes,
            "num_edges": graph.num_edges(),
            "dtype": str(graph.dtype),
        },
        "estimator": {**estimator.to_toml(), "in_flight": estimator.in_flight(graph)},
        "memory": mem,
    }
    ends = ((), ())
    if isinstance(estimator, Ladder):
        ends = climb(graph, estimator, gains=False), climb(graph, estimator, gains=True)
        out["estimator"]["rungs"] = dict(zip(("least", "most"), ends))
    if not isinstance(estimator, (Ladder, Layerwise, Anneal)) or max(mem.values()) > mem["budget"]:
        return out | {"time": NOT_ESTIMATED}
    cal = calibrate(graph, estimator)
    network = [search_seconds(graph, estimator, rungs, cal) for rungs in ends]
    samples = config.null_samples
    times = {"calibration": cal, "network": network, "per_null": network}
    times["null_models"] = [s * samples for s in network]
    total = [STAGE_COMPILES * cal["compile_s"] + s * (1 + samples) for s in network]
    if config.robustness:
        other = independent_estimator(estimator.settings(graph).method, estimator)
        few = min(ROBUSTNESS_SAMPLES, samples)
        one = cal["compile_s"] + search_seconds(graph, other, (), cal) * (1 + few)
        times["robustness"] = [one, one]
        total = [t + one for t in total]
    return out | {"time": times | {"bound": NOT_ESTIMATED, "total": total}}


def preview_lines(p: dict) -> list[str]:
    """A `preview` in words, a line each: graph, estimator, memory per stage, time."""
    g, e, mem = p["graph"], p["estimator"], p["memory"]
    effort = ", ".join(f"{k} {v}" for k, v in e.items() if k not in ("name", "rungs"))
    lines = [
        f"graph: {g['num_layers']} layers, {g['num_nodes']:,} nodes, {g['num_edges']:,} edges ({g['dtype']})",
        f"estimator {e['name']!r}: {effort}",
    ]
    if "rungs" in e:
        for end in ("least", "most"):
            climbed = " → ".join(f"{r}×{t}" for r, t in e["rungs"][end])
            lines.append(f"  rungs at the {end} (restarts × sweeps): {climbed}")
    stages = ", ".join(f"{k} {size_text(v)}" for k, v in mem.items() if k != "budget")
    lines.append(f"memory: {stages} (budget {size_text(mem['budget'])})")
    t = p["time"]
    if t == NOT_ESTIMATED:
        return [*lines, f"time: {NOT_ESTIMATED}"]
    c = t["calibration"]
    lines.append(
        f"calibration: one sweep of {c['batch']} restarts {c['sweep_s'] * 1e3:.3g} ms, "
        f"compile {c['compile_s']:.1f} s"
    )
    for stage in ("network", "per_null", "null_models", "robustness", "total"):
        if stage in t:
            lo, hi = t[stage]
            lines.append(f"time {stage.replace('_', ' ')}: {lo:.3g} to {hi:.3g} s")
    return [*lines, f"time bound: {t['bound']}"]
