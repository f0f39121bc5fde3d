"""Lower-bound benchmark: how close `jaxflow.signed.bounds.lower_bound` comes to the optimum.

Gap = (reference − bound) / reference, where the reference is the proven optimum when there is
one, else the best estimate found (an upper bound, so the gap to the optimum is at most that).

1. Proven: the 100 seeded dense layered graphs of `benchmarks/frustration.py` (same shapes, same
   weights), reference `frustration(method="exact")`; each candidate (`"blocks"`, `"stars"`) and
   the reported max.
2. Sparse layered graphs (every node 3 in-edges from the layer below, Gaussian weights, 300-2,000
   edges), reference the best of `"exact"` under a time limit (proven when it closes) and a long
   `"anneal"`; HiGHS' own dual bound at that time limit for comparison.
3. The digits MLP and CNN trained by `jaxflow.train` (20 epochs), reference the better of
   `"layerwise"` and `"anneal"`.
4. The ResNet-18-shaped graph at 224² (`benchmarks/frustration.py`, 1.68e9 edges, float32), in a
   fresh process: the bound's time and value against the `"layerwise"` estimate's (8 restarts,
   tol 1e-5, as in the frustration benchmark), run one after the other in that process.
6. (its own record, `bounds-eigen-*.json`) The `"eigen"` bound (the max-cut SDP's
   dual, certified by a Cholesky factorization) against `"blocks"` on the digits CNN of
   `benchmarks/peers.py` and the ResNet-18-shaped graph at 16² (1.7e4 nodes, 5.1e6 edges): gap to
   the best value known (`EIGEN_REFERENCES`) and time, each in a fresh process.
5. The odd-cycle packing alone (`method="cycles"`) on sparse layered graphs of 360-4,800 edges
   (in-degree 3, 5 layers): its time and bound as the graph grows, at `CYCLE_ROUNDS` rounds (the
   LP optimum; up to 1,500 edges) and at `default_cycle_rounds` (what `"auto"` runs).

    python benchmarks/bounds.py            # full run
    python benchmarks/bounds.py --quick    # a tiny check that the script works
    python benchmarks/bounds.py --parts proven,resnet18   # some parts only
    python benchmarks/bounds.py --parts eigen             # part 6
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

CANDIDATES = ("blocks", "stars", "cycles", "eigen", "best")
PARTS = ("proven", "sparse", "digits", "resnet18", "cycles", "eigen")
EIGEN_REFERENCES = {"digits-cnn": 0.28662025492729165, "resnet18-16": 0.44520192745631476}
"""Part 6: the best normalized frustration known (`benchmarks/results/peers-20261206.json`)."""
CYCLES_WIDTHS = (30, 60, 75, 100, 125, 200, 400)  # part 5: 5 layers of in-degree 3, 360-4,800 edges
CYCLES_FULL_LP_EDGES = 1500  # part 5: the full column generation only up to here (75 s; ~edges³)
SPARSE_EXACT_EDGES = 600  # "exact" enumerates without a time limit: minutes on larger sparse graphs
SPARSE_EXACT_SECONDS = 10.0
REFERENCE_ANNEAL = {"restarts": 256, "anneal_steps": 1000}


def _summary(gaps: dict, seconds: list) -> dict:
    out = {}
    for name, g in gaps.items():
        g = np.asarray(g)
        out[name] = {
            "mean_gap": float(g.mean()),
            "worst_gap": float(g.max()),
            "within_15pct": float(np.mean(g <= 0.15)),
            "exact": float(np.mean(g <= 1e-9)),
        }
    out["seconds"] = float(np.mean(seconds))
    return out


def _gaps(res, reference: float, gaps: dict) -> None:
    for name in CANDIDATES:
        value = res.value if name == "best" else res.candidates.get(name)
        if value is not None:
            gaps.setdefault(name, []).append((reference - value) / max(reference, 1e-300))


# ---------------------------------------------------------------------- families


def proven(instances: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    from frustration import _shapes  # the frustration benchmark's instances

    from jaxflow.signed import SignedGraph
    from jaxflow.signed.bounds import lower_bound
    from jaxflow.signed.frustration import frustration

    rng = np.random.default_rng(0)  # as `frustration.quality(provable=True)`: same shapes, same weights
    shapes = _shapes(min(10, instances), rng, 200, 2000, True)
    gaps, seconds, ratio = {}, [], []
    for i in range(instances):
        widths = shapes[i % len(shapes)]
        graph = SignedGraph.from_weights([rng.normal(size=(b, a)) for a, b in zip(widths, widths[1:])])
        exact = frustration(graph, method="exact")
        if not exact.optimal:
            raise RuntimeError(f"exact did not prove the optimum of shape {widths}")
        t = time.perf_counter()
        res = lower_bound(graph)
        seconds.append(time.perf_counter() - t)
        _gaps(res, float(exact.value), gaps)
        ratio.append(float(exact.value) / float(exact.total))
        print(f"  instance {i + 1}/{instances}: gap {gaps['best'][-1]:.3f}", end="\r")
    print()
    edges = [sum(a * b for a, b in zip(w, w[1:])) for w in shapes]
    return {"shapes": [list(w) for w in shapes], "edges": [min(edges), max(edges)], "against": "exact",
            "mean_normalized_optimum": float(np.mean(ratio)), **_summary(gaps, seconds)}  # fmt: skip


def sparse_graph(rng, widths, degree=3):
    """Layered graph: each node of layer `i` has `degree` in-edges from distinct random nodes of
    layer `i − 1`, Gaussian weights."""
    from jaxflow.signed import SignedGraph

    ws = []
    for a, b in zip(widths, widths[1:]):
        W = np.zeros((b, a))
        for r in range(b):
            W[r, rng.choice(a, size=min(degree, a), replace=False)] = rng.normal(size=min(degree, a))
        ws.append(W)
    return SignedGraph.from_weights(ws)


def sparse(instances: int, lo: int, hi: int) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxflow.signed.bounds import lower_bound
    from jaxflow.signed.frustration import frustration

    rng = np.random.default_rng(3)
    gaps, seconds, proven_count, sizes, highs, references = {}, [], 0, [], [], []
    for i in range(instances):
        target = rng.uniform(lo, hi) / 3  # nodes past the input layer
        depth = int(rng.integers(2, 6))
        width = max(4, int(target / depth))
        graph = sparse_graph(rng, (width,) * (depth + 1))
        sizes.append(graph.num_edges())
        best = frustration(graph, method="anneal", key=jax.random.key(i), **REFERENCE_ANNEAL)
        default = frustration(graph, key=jax.random.key(i), bound=False)  # 16 × 8,000 on these
        reference = min(float(best.value), float(default.value))
        if sizes[-1] <= SPARSE_EXACT_EDGES:
            exact = frustration(graph, method="exact", time_limit=SPARSE_EXACT_SECONDS)
            reference = min(reference, float(exact.value))
            proven_count += bool(exact.optimal)
            highs.append(float(exact.lower_bound))
        else:
            highs.append(0.0)
        t = time.perf_counter()
        res = lower_bound(graph)
        seconds.append(time.perf_counter() - t)
        _gaps(res, reference, gaps)
        references.append(reference)
        print(f"  instance {i + 1}/{instances}: {sizes[-1]} edges, gap {gaps['best'][-1]:.3f}", end="\r")
    print()
    highs_gap = (np.asarray(references) - np.asarray(highs)) / np.asarray(references)
    return {"edges": [min(sizes), max(sizes)], "in_degree": 3, "proven": proven_count / instances,
            "against": "exact (time-limited), a long anneal or the default",
            "highs_bound_mean_gap": float(highs_gap.mean()), "highs_seconds": SPARSE_EXACT_SECONDS,
            **_summary(gaps, seconds)}  # fmt: skip


def cycles_time(widths) -> list[dict]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxflow.signed.bounds import CYCLE_ROUNDS, default_cycle_rounds, lower_bound

    rows = []
    for w in widths:
        graph = sparse_graph(np.random.default_rng(1), (w,) * 5)
        edges = graph.num_edges()
        row = {"edges": edges, "default_rounds": default_cycle_rounds(edges)}
        full = [("", CYCLE_ROUNDS)] if edges <= CYCLES_FULL_LP_EDGES else []
        for key, rounds in (*full, ("default_", row["default_rounds"])):
            t = time.perf_counter()
            res = lower_bound(graph, method="cycles", cycle_rounds=rounds)
            row[f"{key}seconds"], row[f"{key}bound_normalized"] = time.perf_counter() - t, res.normalized
        rows.append(row)
        lp = f"full LP {row['bound_normalized']:.5f} in {row['seconds']:.1f} s; " if full else ""
        print(
            f"  cycles: {edges} edges, {lp}{row['default_rounds']} rounds (the default) "
            f"{row['default_bound_normalized']:.5f} in {row['default_seconds']:.1f} s"
        )
    return rows


def digits(kinds) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxflow.config import ModelConfig, TrainConfig
    from jaxflow.signed.bounds import lower_bound
    from jaxflow.signed.frustration import frustration
    from jaxflow.signed.importers import from_equinox
    from jaxflow.train import input_shape, train_digits

    models = {
        "mlp": ModelConfig("mlp", hidden=(32,)),
        "cnn": ModelConfig("cnn", channels=(8, 16), pool="max"),
    }
    out = {}
    for kind in kinds:
        result, _ = train_digits(models[kind], TrainConfig(epochs=20, checkpoint_every=20))
        graph = from_equinox(result.checkpoints[-1].model, input_shape(models[kind]))
        estimates = {m: frustration(graph, method=m, key=jax.random.key(0)) for m in ("layerwise", "anneal")}
        reference = min(float(e.value) for e in estimates.values())
        t = time.perf_counter()
        res = lower_bound(graph)
        seconds = time.perf_counter() - t
        gaps = {}
        _gaps(res, reference, gaps)
        out[kind] = {
            "nodes": graph.num_nodes,
            "edges": graph.num_edges(),
            "estimate_normalized": reference / res.total,
            "bound_normalized": res.normalized,
            "method": res.method,
            **{name: {"gap": g[0]} for name, g in gaps.items()},
            "seconds": seconds,
        }
    return out


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def part_resnet18(side: int) -> dict:
    import jax
    from frustration import RESNET_TOL, resnet18_graph

    from jaxflow.signed.bounds import lower_bound
    from jaxflow.signed.frustration import frustration

    graph = resnet18_graph(side)
    t = time.perf_counter()
    res = lower_bound(graph)
    bound_seconds = time.perf_counter() - t
    bound_rss = _peak_rss_gb()
    t = time.perf_counter()
    est = jax.block_until_ready(
        frustration(graph, method="layerwise", key=jax.random.key(0), restarts=8, tol=RESNET_TOL)
    )
    estimate_seconds = time.perf_counter() - t
    return {
        "input": side,
        "edges": graph.num_edges(),
        "bound_seconds": bound_seconds,
        "bound_peak_rss_gb": bound_rss,
        "bound_normalized": res.normalized,
        "estimate_seconds": estimate_seconds,
        "estimate_normalized": float(est.normalized),
        "gap": res.gap(float(est.value)),
        "time_ratio": bound_seconds / estimate_seconds,
        "per_block": [
            {
                "block": type(b).__name__,
                "bound_normalized": lb / float(b.abs_sum()) if float(b.abs_sum()) else 0.0,
            }
            for b, lb in zip(graph.blocks, res.blocks)
        ],
    }


def part_eigen(name: str, quick: bool) -> dict:
    """`"blocks"` and `"eigen"` on one graph of part 6: bound, gap to the reference, seconds."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from frustration import resnet18_graph
    from peers import digits_family

    from jaxflow.signed.bounds import lower_bound

    if name == "digits-cnn":
        ((_, graph),) = digits_family(2 if quick else 20, ("cnn",))
    else:
        graph = resnet18_graph(16)
    reference = EIGEN_REFERENCES[name]
    row = {"nodes": graph.num_nodes, "edges": graph.num_edges(), "reference_normalized": reference}
    for method in ("blocks", "eigen"):
        t = time.perf_counter()
        res = lower_bound(graph, method=method)
        seconds = time.perf_counter() - t
        gap = (reference - res.normalized) / reference
        row[method] = {"bound_normalized": res.normalized, "gap": gap, "seconds": seconds}
    return row


def _in_child(*argv: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------- main


def _table(title: str, r: dict) -> None:
    print(title)
    print("{:<8} {:>9} {:>10} {:>7} {:>7}".format("bound", "mean gap", "worst gap", "<=15%", "exact"))
    for name in CANDIDATES:
        if name in r:
            s = r[name]
            print(
                f"{name:<8} {100 * s['mean_gap']:8.2f}% {100 * s['worst_gap']:9.2f}% "
                f"{100 * s['within_15pct']:6.0f}% {100 * s['exact']:6.0f}%"
            )
    print(f"  {r['seconds']:.3f} s per bound")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    p.add_argument("--part", choices=("resnet18", *EIGEN_REFERENCES), help=argparse.SUPPRESS)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts (default all: {PARTS})")
    p.add_argument("--sparse-instances", type=int, default=20, help="graphs of the sparse part (~4 min each)")
    args = p.parse_args()
    parts = args.parts.split(",")
    if args.part == "resnet18":
        print(json.dumps(part_resnet18(16 if args.quick else 224)))
        return
    if args.part in EIGEN_REFERENCES:
        print(json.dumps(part_eigen(args.part, args.quick)))
        return

    n_proven, n_sparse, lo, hi = (3, 2, 300, 600) if args.quick else (100, args.sparse_instances, 300, 2000)
    record = {"quick": args.quick}
    if "proven" in parts:
        record["proven"] = q = proven(n_proven)
        _table(f"proven: {n_proven} dense layered graphs, gaps to the exact optimum", q)
    if "sparse" in parts:
        record["sparse"] = s = sparse(n_sparse, lo, hi)
        _table(f"sparse: {n_sparse} layered graphs of in-degree 3 ({s['proven']:.0%} proven)", s)
        highs = 100 * s["highs_bound_mean_gap"]
        print(f"  (HiGHS' own dual bound after {SPARSE_EXACT_SECONDS:.0f} s: mean gap {highs:.1f}%)")
    d = record["digits"] = digits(("mlp",) if args.quick else ("mlp", "cnn")) if "digits" in parts else {}
    for kind, r in d.items():
        print(
            f"digits {kind}: {r['edges']} edges, bound {r['bound_normalized']:.4f} vs estimate "
            f"{r['estimate_normalized']:.4f}: gap {100 * r['best']['gap']:.1f}% "
            f"(blocks {100 * r['blocks']['gap']:.1f}%, "
            f"stars {100 * r.get('stars', {'gap': np.nan})['gap']:.1f}%), "
            f"{r['seconds']:.2f} s"
        )
    if "resnet18" in parts:
        record["resnet18"] = r = _in_child("--part", "resnet18", *(["--quick"] if args.quick else []))
        print(
            f"resnet18 {r['input']}²: {r['edges']:.3g} edges, bound {r['bound_normalized']:.4f} in "
            f"{r['bound_seconds']:.1f} s (peak RSS {r['bound_peak_rss_gb']:.2f} GB) vs layerwise "
            f"{r['estimate_normalized']:.4f} in {r['estimate_seconds']:.1f} s: gap {100 * r['gap']:.1f}%, "
            f"time {r['time_ratio']:.2f}x (goal <= 2x)"
        )
    if "cycles" in parts:
        print("odd-cycle packing alone, sparse layered graphs of in-degree 3:")
        record["cycles"] = cycles_time(CYCLES_WIDTHS[:2] if args.quick else CYCLES_WIDTHS)
    if "eigen" in parts:
        names = list(EIGEN_REFERENCES)[: 1 if args.quick else None]
        eigen = {name: _in_child("--part", name, *(["--quick"] if args.quick else [])) for name in names}
        for name, r in eigen.items():
            print(
                f"{name}: {r['edges']} edges, blocks gap {100 * r['blocks']['gap']:.1f}% in "
                f"{r['blocks']['seconds']:.1f} s, eigen gap {100 * r['eigen']['gap']:.1f}% in "
                f"{r['eigen']['seconds']:.1f} s (reference {r['reference_normalized']:.4f})"
            )
        eigen.update(quick=args.quick, machine=machine_info())
        print(f"wrote {write_record('bounds-eigen', eigen, args.quick)}")
    if set(parts) - {"eigen"}:
        record["machine"] = machine_info()
        print(f"wrote {write_record('bounds', record, args.quick)}")


if __name__ == "__main__":
    main()
