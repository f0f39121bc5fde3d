"""Frustration benchmark: estimator quality against exact optima, and scale.

1. Quality: 100 seeded random dense layered graphs of 200-2,000 edges (Gaussian weights) whose
   optimum `"exact"` proves (its vertex-cover enumeration fits); each method's relative gap to
   that optimum and its time per instance (the heuristics compiled already: the instances share
   10 shapes, each is run once untimed per shape), with the published greedy heuristic as the
   baseline. Beyond proof: 40 graphs of the same sizes whose covers are too large to enumerate
   (HiGHS' LP bound is 0 on such dense graphs), gaps to the best value found by any method or a
   long anneal.
2. Scale: a ResNet-18-shaped graph (random He-scaled weights, 224×224 input, about 1.8e9 edges),
   `"layerwise"` estimate in float32: time and peak RSS; a 64-sample null-model batch of a
   1e7-edge MLP. Each scale part runs in a fresh process so its peak RSS is its own, and its
   time is a first call's wall-clock time, compilation included (what a user waits).
3. Null batches over devices: 64 block shuffles of a ResNet-18-shaped graph at 112² (float32,
   the default method: layerwise at this size, 4 restarts, tol 1e-5) on 1 and 2 CPU devices
   (`--xla_force_host_platform_device_count`): time, peak RSS and samples/s; and the
   kill-and-resume overhead: a run into an output folder killed (SIGKILL) once
   half its samples are saved, then rerun to the end, against the uninterrupted 1-device time.
4. Restarts over devices (`--only restarts`): 8 restarts of the ResNet-18-shaped graph at 112² in
   chunks of one (`batch_size=1`, layerwise, tol 1e-5) on 1 and 2 CPU devices: time, peak RSS,
   and whether the restart values are bitwise the same.

    python benchmarks/frustration.py            # full run (coordinator)
    python benchmarks/frustration.py --quick    # a tiny check that the script works
    python benchmarks/frustration.py --only nulls [--quick]    # part 3 alone
    python benchmarks/frustration.py --only restarts [--quick]    # part 4 alone
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

METHODS = ("greedy", "layerwise", "anneal")
RESNET_TOL = 1e-5
REFERENCE_ANNEAL = {"restarts": 512, "anneal_steps": 1000}  # beyond proof: the best-known value's search


# ---------------------------------------------------------------------- quality


def _shapes(count: int, rng, lo: int, hi: int, provable: bool) -> list[tuple[int, ...]]:
    """`count` random layer widths `(d_0..d_h)`, `h` in 2..4, with `lo..hi` edges; `provable`: only
    those whose optimum `"exact"` proves by enumeration (`enumeration_work <= ENUMERATION_MAX_WORK`),
    else only those beyond it."""
    from jaxflow.signed._exact import ENUMERATION_MAX_WORK, enumeration_work, independent_set

    out = []
    while len(out) < count:
        h = int(rng.integers(2, 5))
        target = rng.uniform(lo, hi)
        widths = tuple(int(w) for w in rng.integers(3, 2 + 2 * int(np.sqrt(target / h)), h + 1))
        if not lo <= sum(a * b for a, b in zip(widths, widths[1:])) <= hi:
            continue
        chain = np.zeros((sum(widths),) * 2)  # the adjacency pattern of the dense chain
        ends = np.cumsum((0, *widths))
        for k in range(h):
            chain[ends[k + 1] : ends[k + 2], ends[k] : ends[k + 1]] = 1
        if (enumeration_work(independent_set(chain)) <= ENUMERATION_MAX_WORK) == provable:
            out.append(widths)
    return out


def quality(instances: int, lo: int, hi: int, provable: bool) -> dict:
    """Each method's gap `(δ − δ*)/δ*` and time on `instances` seeded graphs. `provable`: shapes within
    enumeration's reach and `δ*` the optimum `"exact"` proves; else shapes beyond it and `δ*` the best
    value found by any method or a long anneal (`REFERENCE_ANNEAL`), so gaps are then lower bounds."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxflow.signed import SignedGraph
    from jaxflow.signed.frustration import frustration

    rng = np.random.default_rng(0 if provable else 1)
    shapes = _shapes(min(10, instances), rng, lo, hi, provable)
    reference = "exact" if provable else "reference"
    values = {m: [] for m in (*METHODS, reference)}
    seconds = {m: [] for m in (*METHODS, reference)}
    warm = set()
    for i in range(instances):
        widths = shapes[i % len(shapes)]
        ws = [rng.normal(size=(b, a)) for a, b in zip(widths, widths[1:])]
        graph = SignedGraph.from_weights(ws)
        t = time.perf_counter()
        if provable:
            ref = frustration(graph, method="exact")
            if not ref.optimal:
                raise RuntimeError(f"exact did not prove the optimum of shape {widths}")
        else:
            ref = frustration(graph, method="anneal", key=jax.random.key(-1 - i), **REFERENCE_ANNEAL)
        seconds[reference].append(time.perf_counter() - t)
        values[reference].append(float(ref.value))
        for m in METHODS:
            key = jax.random.key(i)
            if (m, widths) not in warm:  # compile once per shape, outside the timing
                jax.block_until_ready(frustration(graph, method=m, key=key, bound=False))
                warm.add((m, widths))
            t = time.perf_counter()
            res = jax.block_until_ready(frustration(graph, method=m, key=key, bound=False))
            seconds[m].append(time.perf_counter() - t)
            values[m].append(float(res.value))
        print(f"  instance {i + 1}/{instances}: {graph.num_edges()} edges", end="\r")
    print()
    best = np.min([values[m] for m in values], axis=0)  # = the optimum when provable
    edges = [sum(a * b for a, b in zip(w, w[1:])) for w in shapes]
    out = {"shapes": [list(w) for w in shapes], "edges": [min(edges), max(edges)], "against": reference}
    for m in values:
        g = (np.asarray(values[m]) - best) / np.maximum(best, 1e-12)
        out[m] = {
            "mean_gap": float(g.mean()),
            "worst_gap": float(g.max()),
            "within_1pct": float(np.mean(g <= 0.01)),
            "optimal": float(np.mean(g <= 1e-9)),
            "seconds": float(np.mean(seconds[m])),
        }
    return out


# ---------------------------------------------------------------------- scale


def resnet18_graph(side: int, dtype=np.float32):
    """ResNet-18's layers (conv 7×7/2, max pool 3×3/2, 4 stages of 2 basic blocks with identity or
    1×1/2 projection skips, global average pool, 1000-way linear) on a `side`² RGB input;
    BatchNorm folded away, He-scaled Gaussian weights."""
    from jaxflow.signed import Activation, Conv2d, Dense, Layer, Pool, SignedGraph, Skip

    rng = np.random.default_rng(0)
    relu = Activation("relu", True)

    def conv(c_out, in_shape, k, stride=1, pad=None):
        w = rng.standard_normal((c_out, in_shape[0], k, k), dtype) * np.sqrt(2 / (in_shape[0] * k * k))
        return Conv2d(w.astype(dtype), in_shape, stride, k // 2 if pad is None else pad)

    c1 = conv(64, (3, side, side), 7, 2, 3)
    pool = Pool(3, c1.out_shape, 2, 1, mode="max", dtype=dtype)
    layers = [
        Layer("input", shape=(3, side, side)),
        Layer("conv1", {"input": c1}, activation=relu),
        Layer("maxpool", {"conv1": pool}),
    ]
    prev, shape = "maxpool", pool.out_shape
    for stage, c in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            a = conv(c, shape, 3, stride)
            b = conv(c, a.out_shape, 3)
            skip = Skip(shape, dtype=dtype) if stride == 1 and shape[0] == c else conv(c, shape, 1, stride, 0)
            name = f"layer{stage + 1}.{block}"
            layers += [
                Layer(f"{name}.conv1", {prev: a}, activation=relu),
                Layer(name, {f"{name}.conv1": b, prev: skip}, activation=relu),
            ]
            prev, shape = name, b.out_shape
    gap = Pool(shape[1:], shape, mode="avg", dtype=dtype)
    fc = Dense((rng.standard_normal((1000, 512)) / np.sqrt(512)).astype(dtype), gap.out_shape, (1000,))
    layers += [Layer("avgpool", {prev: gap}), Layer("fc", {"avgpool": fc})]
    return SignedGraph.from_layers(layers)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def part_resnet18(side: int, restarts: int) -> dict:
    import jax

    from jaxflow.signed.frustration import frustration

    t = time.perf_counter()
    graph = resnet18_graph(side)
    edges = graph.num_edges()
    build = time.perf_counter() - t
    t = time.perf_counter()
    key = jax.random.key(0)
    # tol: stop once a sweep gains < 1e-5 of Σ|a| (the long tail of tiny gains costs most sweeps)
    res = jax.block_until_ready(
        frustration(graph, method="layerwise", key=key, restarts=restarts, tol=RESNET_TOL, bound=False)
    )
    seconds = time.perf_counter() - t
    return {
        "resnet18_input": side,
        "resnet18_edges": edges,
        "resnet18_restarts": restarts,
        "resnet18_tol": RESNET_TOL,
        "resnet18_seconds": seconds,
        "resnet18_build_seconds": build,
        "resnet18_normalized": float(res.normalized),
        "resnet18_sweeps": int(res.iterations),
        "resnet18_peak_rss_gb": _peak_rss_gb(),
    }


def part_mlp_null(widths: tuple[int, ...], samples: int, restarts: int) -> dict:
    import jax

    from jaxflow.signed import SignedGraph
    from jaxflow.signed.nullmodels import null_model_frustration

    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((b, a)) / np.sqrt(a)).astype(np.float32) for a, b in zip(widths, widths[1:])]
    graph = SignedGraph.from_weights(ws)
    t = time.perf_counter()
    nul = null_model_frustration(
        graph, jax.random.key(0), samples=samples, model="block", method="layerwise", restarts=restarts
    )
    jax.block_until_ready(nul.values)
    return {
        "mlp_widths": list(widths),
        "mlp_edges": graph.num_edges(),
        "mlp_null_samples": samples,
        "mlp_null_restarts": restarts,
        "mlp_null64_seconds": time.perf_counter() - t,
        "mlp_null_mean_normalized": float(np.mean(nul.values) / float(graph.abs_sum())),
        "mlp_null_peak_rss_gb": _peak_rss_gb(),
    }


def part_resnet18_null(side: int, samples: int, restarts: int, out: str) -> dict:
    import jax

    from jaxflow.signed.nullmodels import null_model_frustration

    graph = resnet18_graph(side)
    t = time.perf_counter()
    nul = null_model_frustration(
        graph, jax.random.key(0), samples=samples, restarts=restarts, tol=RESNET_TOL, out=out or None
    )
    jax.block_until_ready(nul.values)
    seconds = time.perf_counter() - t
    return {
        "devices": jax.device_count(),
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "peak_rss_gb": _peak_rss_gb(),
        "null_mean_normalized": float(nul.values.mean() / nul.observed.total),
    }


def part_resnet18_restarts(side: int, restarts: int) -> dict:
    import jax

    from jaxflow.signed.frustration import frustration

    graph = resnet18_graph(side)
    t = time.perf_counter()
    res = frustration(graph, method="layerwise", restarts=restarts, batch_size=1, tol=RESNET_TOL, bound=False)
    values = np.asarray(res.restart_values)
    seconds = time.perf_counter() - t
    return {
        "devices": jax.device_count(),
        "seconds": seconds,
        "peak_rss_gb": _peak_rss_gb(),
        "normalized": float(res.normalized),
        "restart_values_hex": values.tobytes().hex(),
    }


def restart_scaling(side: int, restarts: int) -> dict:
    """Part 4: `restarts` chunks of one restart of one graph on 1 and 2 CPU devices."""
    argv = ("--part", "resnet18_restarts", "--side", str(side), "--resnet-restarts", str(restarts))
    runs = {d: _in_child(*argv, devices=d) for d in (1, 2)}
    same = runs[1].pop("restart_values_hex") == runs[2].pop("restart_values_hex")
    for d, r in runs.items():
        print(f"  {restarts} chunks of 1 restart, {d} device(s): {r['seconds']:.1f} s, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB, normalized {r['normalized']:.6f}")  # fmt: skip
    print(f"  restart values bitwise the same on 1 and 2 devices: {same}")
    devices = {str(d): r for d, r in runs.items()}
    return {"restart_graph": "resnet18", "restart_input": side, "restart_chunks": restarts,
            "restart_devices": devices, "restart_values_equal": same}  # fmt: skip


def _child_cmd(*argv: str) -> list[str]:
    return [sys.executable, __file__, *argv]


def _devices_env(devices: int) -> dict:
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _in_child(*argv: str, devices: int | None = None) -> dict:
    env = None if devices is None else _devices_env(devices)
    out = subprocess.run(
        _child_cmd(*argv), check=True, capture_output=True, text=True, env=env
    ).stdout.strip()
    return json.loads(out.splitlines()[-1])


def null_scaling(side: int, samples: int, restarts: int) -> dict:
    """Part 3: the null batch on 1 and 2 CPU devices, and a killed-then-resumed run on 1 device."""
    argv = ("--part", "resnet18_null", "--side", str(side), "--samples", str(samples),
            "--null-restarts", str(restarts))  # fmt: skip
    runs = {d: _in_child(*argv, devices=d) for d in (1, 2)}
    for d, r in runs.items():
        rate = r["samples_per_second"]
        print(f"  {samples} nulls, {d} device(s): {r['seconds']:.1f} s, {rate:.3f} samples/s, "
              f"peak RSS {r['peak_rss_gb']:.2f} GB")  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="nulls-"))
    try:
        t = time.perf_counter()
        proc = subprocess.Popen(_child_cmd(*argv, "--out", str(folder)), env=_devices_env(1),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        while len(list(folder.glob("chunks/*.npz"))) < max(1, samples // 2) and proc.poll() is None:
            time.sleep(0.05)
        killed = proc.poll() is None  # a quick run may end before half its samples are seen
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_after = time.perf_counter() - t
        saved = len(list(folder.glob("chunks/*.npz")))
        t = time.perf_counter()
        _in_child(*argv, "--out", str(folder), devices=1)
        resumed = time.perf_counter() - t
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = killed_after + resumed
    ended = "" if killed else " (it ended before the kill)"
    print(f"  killed after {killed_after:.1f} s ({saved} pieces saved), resumed in {resumed:.1f} s: "
          f"{total:.1f} s against {runs[1]['seconds']:.1f} s uninterrupted{ended}")  # fmt: skip
    return {
        "null_graph": "resnet18",
        "null_input": side,
        "null_samples": samples,
        "null_restarts": restarts,
        "null_devices": {str(d): r for d, r in runs.items()},
        "null_resume": {
            "killed": killed,
            "killed_after_seconds": killed_after,
            "pieces_saved": saved,
            "resume_seconds": resumed,
            "total_seconds": total,
            "uninterrupted_seconds": runs[1]["seconds"],
            "overhead_seconds": total - runs[1]["seconds"],
        },
    }


# ---------------------------------------------------------------------- main


def _table(q: dict) -> None:
    head = ("method", "mean gap", "worst gap", "<=1%", "optimal", "seconds", "vs greedy")
    print("{:<10} {:>9} {:>10} {:>6} {:>8} {:>9} {:>10}".format(*head))
    for m in (*METHODS, q["against"]):
        r = q[m]
        print(
            f"{m:<10} {100 * r['mean_gap']:8.3f}% {100 * r['worst_gap']:9.3f}% "
            f"{100 * r['within_1pct']:5.0f}% {100 * r['optimal']:7.0f}% {r['seconds']:9.4f} "
            f"{r['seconds'] / q['greedy']['seconds']:9.2f}x"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    p.add_argument("--resnet-restarts", type=int, default=8)
    p.add_argument("--null-restarts", type=int, default=4)
    p.add_argument("--only", choices=("nulls", "restarts"),
                   help="run only part 3 (null batches) or 4 (restarts) over devices")  # fmt: skip
    p.add_argument("--part", choices=("resnet18", "mlp_null", "resnet18_null", "resnet18_restarts"),
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--side", type=int, help=argparse.SUPPRESS)
    p.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    p.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part == "resnet18_restarts":
        print(json.dumps(part_resnet18_restarts(args.side, args.resnet_restarts)))
        return
    if args.only == "restarts":
        side, restarts = (16, 2) if args.quick else (112, 8)
        print(f"restarts over devices: ResNet-18-shaped graph at {side}², {restarts} chunks")
        record = {"quick": args.quick, **restart_scaling(side, restarts), "machine": machine_info()}
        print(f"wrote {write_record('frustration-restarts', record, args.quick)}")
        return
    if args.part == "resnet18_null":
        print(json.dumps(part_resnet18_null(args.side, args.samples, args.null_restarts, args.out)))
        return
    null_sizes = (16, 4, 2) if args.quick else (112, 64, args.null_restarts)
    if args.only == "nulls":
        print(f"null batches: ResNet-18-shaped graph at {null_sizes[0]}², {null_sizes[1]} samples")
        record = {"quick": args.quick, **null_scaling(*null_sizes), "machine": machine_info()}
        print(f"wrote {write_record('frustration-nulls', record, args.quick)}")
        return
    if args.part == "resnet18":
        print(json.dumps(part_resnet18(16 if args.quick else 224, args.resnet_restarts)))
        return
    if args.part == "mlp_null":
        widths = (64, 128, 128, 10) if args.quick else (784, 2500, 2500, 784, 10)
        print(json.dumps(part_mlp_null(widths, 8 if args.quick else 64, args.null_restarts)))
        return

    flags = ["--quick"] if args.quick else []
    instances, beyond_instances, lo, hi = (3, 2, 200, 600) if args.quick else (100, 40, 200, 2000)
    print(f"quality: {instances} layered graphs of {lo}-{hi} edges, gaps to the proven optimum")
    q = quality(instances, lo, hi, provable=True)
    _table(q)
    print(f"beyond proof: {beyond_instances} graphs too large to enumerate, gaps to the best known value")
    beyond = quality(beyond_instances, lo, hi, provable=False)
    _table(beyond)
    print("scale: ResNet-18-shaped graph, layerwise (float32)")
    resnet = _in_child("--part", "resnet18", "--resnet-restarts", str(args.resnet_restarts), *flags)
    print(
        f"  {resnet['resnet18_edges']:.3g} edges ({resnet['resnet18_input']}² input, "
        f"{resnet['resnet18_restarts']} restarts): {resnet['resnet18_seconds']:.1f} s, "
        f"peak RSS {resnet['resnet18_peak_rss_gb']:.2f} GB (goal <= 60 s, <= 4 GB)"
    )
    print("scale: null-model batch of an MLP, layerwise (float32)")
    mlp = _in_child("--part", "mlp_null", "--null-restarts", str(args.null_restarts), *flags)
    print(
        f"  {mlp['mlp_edges']:.3g} edges, {mlp['mlp_null_samples']} samples: "
        f"{mlp['mlp_null64_seconds']:.1f} s (goal <= 60 s for 64 samples of 1e7 edges)"
    )
    print(f"null batches: ResNet-18-shaped graph at {null_sizes[0]}², {null_sizes[1]} samples")
    nulls = null_scaling(*null_sizes)
    record = {
        "quick": args.quick,
        "quality": q,
        "quality_instances": instances,
        "quality_edges": [lo, hi],
        "beyond_proof": beyond,
        "beyond_proof_instances": beyond_instances,
        **resnet,
        **mlp,
        **nulls,
        "reference": {"exact_ip_edges_per_minute": 1.5e4, "largest_published_heuristic_edges": 2e7},
        "machine": machine_info(),
    }
    print(f"wrote {write_record('frustration', record, args.quick)}")


if __name__ == "__main__":
    main()
