"""GPU benchmark: DLN sweeps and a null batch of ResNet-50-shaped graphs on one accelerator.

Goal on one H100-class GPU: at least 1e4 trajectories/s in float32, and 64 null samples of a
ResNet-50-shaped graph at 224² in at most 5 minutes.

1. Sweeps: 1e4 and 1e5 gradient flows of widths (16, 32, 32, 32, 16) in float32, the task, init
   and tolerances of `benchmarks/flow_sweep.py`, `jax_default_matmul_precision="highest"`, compiled
   once on the chunk shape first (excluded; both sizes in one process): seconds and trajectories/s
   (`peak` device memory: the largest so far).
2. Nulls: `null_model_frustration` of the ResNet-50-shaped graph of `benchmarks/compile_time.py`
   (224², float32, He-scaled random weights), 64 block shuffles (`--null-chunk` samples per device
   at once, default `default_chunk_size`), restarts and stopping rule as in
   `benchmarks/frustration.py`: seconds (a first call,
   compilation included: what a user waits), samples/s, and the memory its docstring bounds
   (weights + chunk × (learned weights + nodes × restarts) × bytes) beside the measured peak.

Each part runs in a fresh process, so that its peak device memory (`device.memory_stats()` where
the backend has it) and peak RSS are its own. Everything goes to one JSON record.

    python benchmarks/gpu.py            # full run (on the GPU)
    python benchmarks/gpu.py --quick    # tiny sizes on CPU in < 60 s: a check that it all runs
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

SWEEPS = (10_000, 100_000)
NULL_SAMPLES, NULL_SIDE, NULL_RESTARTS, NULL_TOL = 64, 224, 8, 1e-5
GOALS = {"trajectories_per_second": 1e4, "null64_seconds": 300.0}


def _memory() -> dict:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return {
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "device_bytes_limit": stats.get("bytes_limit"),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def part_sweep(chunk: int, *sizes: int) -> list[dict]:
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")
    from flow_sweep import arguments

    from jaxflow.linear.sweep import STATUS, sweep

    sweep(*arguments(chunk, "float32", chunk, None, "tsit5"))  # compile on the chunk shape
    out = []
    for n in sizes:
        t = time.perf_counter()
        result = sweep(*arguments(n, "float32", chunk, None, "tsit5"))
        seconds = time.perf_counter() - t
        out.append({
            "trajectories": n,
            "chunk": chunk,
            "seconds": seconds,
            "trajectories_per_second": n / seconds,
            "converged": float(sum(STATUS[s] == "converged" for s in result.status) / n),
            **_memory(),
        })  # fmt: skip
    return out


def part_nulls(graph_name: str, side: int, samples: int, restarts: int, chunk: int = 0) -> dict:
    import jax
    import numpy as np
    from compile_time import resnet50_graph

    from jaxflow.signed.blocks import learned_weight
    from jaxflow.signed.nullmodels import default_chunk_size, null_model_frustration

    if graph_name == "resnet50":
        graph = resnet50_graph(side)
    else:  # "mlp": a small dense graph, for `--quick`
        rng = np.random.default_rng(0)
        widths = (side, 2 * side, 2 * side, 10)
        graph = _mlp(rng, widths)
    chunk = chunk or default_chunk_size(graph, samples)
    weights = sum(b.size for block in graph.blocks for b in jax.tree.leaves(block))
    learned = sum(learned_weight(b).size for b in graph.blocks if b.learned)
    t = time.perf_counter()
    nul = null_model_frustration(
        graph, jax.random.key(0), samples=samples, restarts=restarts, tol=NULL_TOL, chunk_size=chunk
    )
    jax.block_until_ready(nul.values)
    seconds = time.perf_counter() - t
    return {
        "graph": graph_name,
        "input": side,
        "edges": graph.num_edges(),
        "nodes": graph.num_nodes,
        "samples": samples,
        "restarts": restarts,
        "chunk": chunk,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "null_mean_normalized": float(np.mean(nul.values) / float(nul.observed.total)),
        "memory_bound_bytes": (weights + chunk * (learned + graph.num_nodes * restarts)) * 4,
        **_memory(),
    }


def _mlp(rng, widths):
    import numpy as np

    from jaxflow.signed import SignedGraph

    return SignedGraph.from_weights([
        (rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32) for a, b in zip(widths, widths[1:])
    ])  # fmt: skip


def _in_child(*argv: str):
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes on CPU: check that the script runs")
    p.add_argument("--chunk", type=int, default=8192, help="sweep lanes per chunk (default 8192)")
    p.add_argument(
        "--null-chunk", type=int, default=0, help="null samples per device at once (default: the library's)"
    )
    p.add_argument("--json", help="write the record here instead of benchmarks/results/")
    p.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part:
        name, *rest = args.part
        part = part_sweep if name == "sweep" else part_nulls
        print(json.dumps(part(*[int(a) if a.isdigit() else a for a in rest])))
        return

    sizes, chunk = ((32, 64), 16) if args.quick else (SWEEPS, args.chunk)
    sweeps = _in_child("--part", "sweep", str(chunk), *map(str, sizes))
    for r in sweeps:
        n, rate = r["trajectories"], r["trajectories_per_second"]
        print(f"sweep {n} trajectories (float32): {r['seconds']:.2f} s, {rate:.0f}/s")
    null_args = (
        ("mlp", "16", "2", "4")
        if args.quick
        else ("resnet50", *map(str, (NULL_SIDE, NULL_SAMPLES, NULL_RESTARTS)))
    )
    nulls = _in_child("--part", "nulls", *null_args, str(args.null_chunk))
    print(
        f"nulls: {nulls['samples']} of {nulls['graph']} ({nulls['edges']:.3g} edges): "
        f"{nulls['seconds']:.1f} s, {nulls['samples_per_second']:.2f} samples/s, device peak "
        f"{nulls['device_peak_bytes']} B (bound {nulls['memory_bound_bytes']:.3g} B)"
    )
    record = {
        "quick": args.quick,
        "goals": GOALS,
        "sweeps": sweeps,
        "nulls": nulls,
        "goals_met": {
            "trajectories_per_second": min(r["trajectories_per_second"] for r in sweeps)
            >= GOALS["trajectories_per_second"],
            "null64_seconds": nulls["seconds"] <= GOALS["null64_seconds"],
        },
        "machine": machine_info(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")
    else:
        print(f"wrote {write_record('gpu', record, args.quick)}")


if __name__ == "__main__":
    main()
