"""What the default study costs, and how near the search runs to this machine's limit.

    python benchmarks/ladder_costs.py                 # both parts
    python benchmarks/ladder_costs.py --only study    # the default study of a 1.3e7-edge CNN
    python benchmarks/ladder_costs.py --only roofline # edge updates per second

Part `study`: the whole default study of `jaxflow frustration` (the network's ladder, the proven
bound, 64 null models climbing the same rungs, the robustness run) on the ResNet-18-shaped graph
of `benchmarks/frustration.py` at the side whose graph has about 1.3e7 edges (float32, He-scaled
Gaussian weights), timed per stage from a cold start, with each progress line it writes.

Part `roofline`: the annealing sweep's edge updates per second (each sweep reads every edge
twice, `A s` and `Aᵀ s`: two multiply-adds, 4 flops, per edge and restart) on graphs of about
1e5, 1e7 and 1e9 edges at the ladder's batch of restarts, timed on the annealing sweeps alone
(two sweep counts, their difference: no layout, descent or transfer), against this machine's float32 roofline
(the peak of a large matrix product measured here, in flops per second, over 2 flops per
multiply-add): `ratio` = roofline / achieved.

Writes `benchmarks/results/ladder-costs-YYYYMMDD.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

STUDY_EDGES = 1.3e7
ROOFLINE_SIDES = {"1e7": 20, "1e9": 192}  # ResNet-18-shaped graphs; "1e5" is an MLP
SWEEPS = {"1e5": (64, 256), "1e7": (16, 48), "1e9": (2, 6)}  # two schedules: their difference times sweeps


def _side_for(edges: float) -> int:
    from frustration import resnet18_graph

    side = 16
    while resnet18_graph(side + 4).num_edges() <= edges:
        side += 4
    return side


def study() -> dict:
    import jax
    from frustration import resnet18_graph

    from jaxflow.config import FrustrationConfig
    from jaxflow.experiments.nulls import frustration_vs_null

    side = _side_for(STUDY_EDGES)
    graph = resnet18_graph(side)
    start = time.perf_counter()
    lines = []

    def status(text: str) -> None:
        lines.append((time.perf_counter() - start, text))
        print(f"[{lines[-1][0]:7.1f} s] {text}", flush=True)

    nul, summary = frustration_vs_null(graph, FrustrationConfig(), jax.random.key(0), status=status)
    seconds = time.perf_counter() - start
    robustness = [line for line in lines if line[1].startswith("robustness")]
    return {
        "graph": f"resnet18-shaped {side}²",
        "edges": graph.num_edges(),
        "seconds": seconds,
        "robustness_seconds": seconds - robustness[0][0] if robustness else 0.0,
        "rungs": [list(r) for r in nul.observed.settings.rungs],
        "normalized": summary["normalized"],
        "null_mean": summary["null_mean"],
        "zscore": summary["zscore"],
        "robustness": summary["robustness"],
        "lines": lines,
    }


def _peak_flops() -> float:
    """float32 flops per second of a 2048² matrix product (the best of 5)."""
    import jax
    import jax.numpy as jnp

    a = jnp.ones((2048, 2048), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = min(_time(lambda: f(a).block_until_ready()) for _ in range(5))
    return 2 * 2048**3 / best


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _graphs():
    from frustration import resnet18_graph

    from jaxflow.signed import SignedGraph

    rng = np.random.default_rng(0)
    widths = (256, 192, 192, 128)  # ~1e5 edges
    yield (
        "1e5",
        SignedGraph.from_weights(
            [rng.normal(size=(b, a)).astype(np.float32) for a, b in zip(widths, widths[1:])]
        ),
    )
    for label in ("1e7", "1e9"):
        yield label, resnet18_graph(ROOFLINE_SIDES[label])


def roofline() -> dict:
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from jaxflow.signed import _search as engine
    from jaxflow.signed.estimators import (
        ANNEAL_TEMPERATURES,
        LADDER_MAX_RESTARTS,
        SearchSettings,
        ladder_batch,
    )

    @eqx.filter_jit
    def annealing(graph, s, key, squares, steps):  # `steps` traced: one compilation for both counts
        laid_out = engine._laid_out(graph, engine.PROGRAM)
        return engine.anneal(laid_out, s, key, squares, steps, ANNEAL_TEMPERATURES)

    peak = _peak_flops()
    rows = []
    for label, graph in _graphs():
        edges = graph.num_edges()
        batch = ladder_batch(graph, SearchSettings(restarts=LADDER_MAX_RESTARTS))
        key = jax.random.key(0)
        s = tuple(jnp.ones((batch, *shape), graph.dtype) for shape in graph.shapes)
        squares = engine.total_weight(graph, engine.PROGRAM, engine._square_sum)
        short, long = SWEEPS[label]
        runs = {}
        for sweeps in (short, short, long):  # the first compiles (the sweeps are traced: once)
            run = partial(annealing, graph, s, key, squares, jnp.asarray(sweeps))
            runs[sweeps] = _time(lambda run=run: jax.block_until_ready(run()))
        # the difference of the two counts cancels the layout and the fixed costs
        per_sweep = max(runs[long] - runs[short], 1e-9) / (long - short)
        updates = 2 * edges * batch / per_sweep  # edge reads per second (A s and Aᵀ s)
        roof = peak / 2  # multiply-adds per second
        rows.append(
            {
                "graph": label,
                "edges": edges,
                "batch": batch,
                "seconds_per_sweep": per_sweep,
                "edge_updates_per_second": updates,
                "roofline_updates_per_second": roof,
                "ratio": roof / updates,
            }
        )
        print(
            f"{label}: {edges:,} edges, batch {batch}: {per_sweep * 1e3:.1f} ms a sweep, "
            f"{updates:.3g} edge updates/s, roofline {roof:.3g}: {roof / updates:.1f}x",
            flush=True,
        )
    return {"peak_flops": peak, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("study", "roofline"), default=None)
    args = p.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    record = {}
    if args.only in (None, "roofline"):
        record["roofline"] = {"machine": machine_info(), **roofline()}
        print(write_record("ladder-costs", record, quick=False, keep=True))
    if args.only in (None, "study"):
        record["study"] = {"machine": machine_info(), **study()}
        print(write_record("ladder-costs", record, quick=False, keep=True))


if __name__ == "__main__":
    main()
