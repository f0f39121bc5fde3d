"""Compile time of the frustration search on deep graphs, apart from run time.

Two synthetic graphs built with `SignedGraph.from_layers`, random He-scaled float32 weights:

- ResNet-50-shaped: conv 7×7/2, max pool 3×3/2, bottleneck blocks [3, 4, 6, 3] (1×1, 3×3 with the
  stage's stride, 1×1 ×4 expansion; a 1×1 strided projection skip on each stage's first block, an
  identity `Skip` on the others), global average pool folded into the 1000-way linear layer.
- DenseNet-121-shaped: conv 7×7/2, max pool 3×3/2, dense blocks [6, 12, 24, 16] of growth 32 (a 1×1
  bottleneck to 128 channels, then 3×3 to 32); each layer reads the channel concatenation of the
  block's input and every earlier layer of its block, held as one `Conv2d` block per source layer
  into the bottleneck (as the importer represents a concatenation feeding a convolution); the
  transitions (1×1 conv halving the channels, 2×2 average pool) and the final linear layer read
  every source of their block likewise.

For each graph and input size, in a fresh process: the layerwise estimate (default effort and
stopping rule) and then a small null-model batch (`--samples` block shuffles, default chunk size), as
`null_model_frustration` runs them. Each is called twice: compile = first call − second call, in wall
seconds and in process CPU seconds (less sensitive to other load on the machine; XLA compiles on one
thread), run = the second call. Drivers: the per-signature driver (the default for deep graphs: one
compiled function per distinct block signature and layer shape, loops in Python; the null search
reuses the estimate's functions) and, with `--old`, the single-program driver (one XLA program per
search, as before: its compile grows with depth; slow, so only at `--old-sizes`).

    python benchmarks/compile_time.py                 # 32 and 64 px, per-signature driver
    python benchmarks/compile_time.py --old           # also the single-program driver at 32 px
    python benchmarks/compile_time.py --quick         # ResNet-50 at 32 px: check that the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

NULL_SAMPLES = 4


def _conv(rng, c_out, in_shape, k, stride=1, pad=None, dtype=np.float32):
    from jaxflow.signed import Conv2d

    w = rng.standard_normal((c_out, in_shape[0], k, k), dtype) * np.sqrt(2 / (in_shape[0] * k * k))
    return Conv2d(w.astype(dtype), in_shape, stride, k // 2 if pad is None else pad)


def _stem(rng, side, dtype):
    from jaxflow.signed import Activation, Layer, Pool

    relu = Activation("relu", True)
    c1 = _conv(rng, 64, (3, side, side), 7, 2, 3, dtype)
    pool = Pool(3, c1.out_shape, 2, 1, mode="max", dtype=dtype)
    layers = [
        Layer("input", shape=(3, side, side)),
        Layer("conv1", {"input": c1}, activation=relu),
        Layer("maxpool", {"conv1": pool}),
    ]
    return layers, "maxpool", pool.out_shape


def _head(rng, sources: dict, dtype):
    """The global average pool folded into the 1000-way linear layer, one `Dense` block per source."""
    from jaxflow.signed import Dense, Layer

    total = sum(shape[0] for shape in sources.values())
    inputs = {}
    for name, shape in sources.items():
        w = rng.standard_normal((1000, shape[0]), dtype) / np.sqrt(total) / (shape[1] * shape[2])
        inputs[name] = Dense(np.repeat(w, shape[1] * shape[2], axis=1).astype(dtype), shape, (1000,))
    return Layer("fc", inputs)


def resnet50_graph(side: int, dtype=np.float32):
    """ResNet-50's layers on a `side`² RGB input (BatchNorm folded away, He-scaled Gaussian weights)."""
    from jaxflow.signed import Activation, Layer, SignedGraph, Skip

    rng = np.random.default_rng(0)
    relu = Activation("relu", True)
    layers, prev, shape = _stem(rng, side, dtype)
    for stage, (width, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            a = _conv(rng, width, shape, 1, dtype=dtype)
            b = _conv(rng, width, a.out_shape, 3, stride, dtype=dtype)
            c = _conv(rng, 4 * width, b.out_shape, 1, dtype=dtype)
            if block == 0:
                skip = _conv(rng, 4 * width, shape, 1, stride, 0, dtype)
            else:
                skip = Skip(shape, dtype=dtype)
            name = f"layer{stage + 1}.{block}"
            layers += [
                Layer(f"{name}.conv1", {prev: a}, activation=relu),
                Layer(f"{name}.conv2", {f"{name}.conv1": b}, activation=relu),
                Layer(name, {f"{name}.conv2": c, prev: skip}, activation=relu),
            ]
            prev, shape = name, c.out_shape
    layers.append(_head(rng, {prev: shape}, dtype))
    return SignedGraph.from_layers(layers)


def densenet121_graph(side: int, dtype=np.float32):
    """DenseNet-121's layers on a `side`² RGB input, concatenations as one block per source layer."""
    from jaxflow.signed import Activation, Layer, Pool, SignedGraph

    rng = np.random.default_rng(0)
    relu = Activation("relu", True)
    layers, prev, shape = _stem(rng, side, dtype)
    sources = {prev: shape}  # the current block's concatenated inputs: name -> shape
    for stage, count in enumerate((6, 12, 24, 16)):
        for i in range(count):
            name = f"denseblock{stage + 1}.layer{i + 1}"
            total = sum(s[0] for s in sources.values())
            inputs = {}
            for src, s in sources.items():  # the 1×1 bottleneck reads each source's channel slice
                w = rng.standard_normal((128, s[0], 1, 1), dtype) * np.sqrt(2 / total)
                inputs[src] = _conv_from(w.astype(dtype), s)
            layers.append(Layer(f"{name}.conv1", inputs, activation=relu))
            c = _conv(rng, 32, (128, *shape[1:]), 3, dtype=dtype)
            layers.append(Layer(f"{name}.conv2", {f"{name}.conv1": c}, activation=relu))
            sources[f"{name}.conv2"] = c.out_shape
        if stage == 3:
            break
        total = sum(s[0] for s in sources.values())
        inputs = {}
        for src, s in sources.items():
            w = rng.standard_normal((total // 2, s[0], 1, 1), dtype) * np.sqrt(2 / total)
            inputs[src] = _conv_from(w.astype(dtype), s)
        name = f"transition{stage + 1}"
        layers.append(Layer(f"{name}.conv", inputs, activation=relu))
        pool = Pool(2, (total // 2, *shape[1:]), 2, mode="avg", dtype=dtype)
        layers.append(Layer(f"{name}.pool", {f"{name}.conv": pool}))
        shape = pool.out_shape
        sources = {f"{name}.pool": shape}
    layers.append(_head(rng, sources, dtype))
    return SignedGraph.from_layers(layers)


def _conv_from(w, in_shape):
    from jaxflow.signed import Conv2d

    return Conv2d(w, in_shape)


GRAPHS = {"resnet50": resnet50_graph, "densenet121": densenet121_graph}


# ---------------------------------------------------------------------- timing


class _Clock:
    """Wall and process CPU seconds of a call, and the XLA compilations it triggered (count and their
    summed wall seconds, from `jax.monitoring`)."""

    def __init__(self):
        import jax

        self.compiles = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            self.compiles.append(duration)

    def __call__(self, fn):
        import jax

        self.compiles.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(fn())
        return out, {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "compiles": len(self.compiles),
            "xla_compile_wall": sum(self.compiles),
        }


def part(graph_name: str, side: int, driver: str, samples: int) -> dict:
    """Compile and run seconds of the estimate and of a `samples`-sample null batch, in this process:
    each is called twice; compile = first call − second call (wall and process CPU seconds)."""
    import importlib

    import jax

    fr = importlib.import_module(
        "jaxflow.signed.frustration"
    )  # the package re-exports a function of that name
    nm = importlib.import_module("jaxflow.signed.nullmodels")
    engine = importlib.import_module("jaxflow.signed._search")
    clock = _Clock()
    t = time.perf_counter()
    graph = GRAPHS[graph_name](side)
    build = time.perf_counter() - t
    settings = fr._settings(graph, "layerwise", None, None, None, 200, fr.ANNEAL_TEMPERATURES, None, None)
    key = jax.random.key(0)
    out = {
        "graph": graph_name,
        "input": side,
        "driver": driver,
        "layers": graph.num_layers,
        "blocks": len(graph.blocks),
        "signatures": len(engine.block_signatures(graph)),
        "layer_shapes": len(set(graph.shapes)),
        "nodes": graph.num_nodes,
        "edges": graph.num_edges(),
        "restarts": settings.restarts,
        "tol": settings.tol,
        "build_seconds": build,
    }
    keys = jax.random.split(jax.random.key(1), samples)
    chunk = nm.default_chunk_size(graph, samples)
    calls = {
        "estimate": lambda: fr._estimate(graph, key, settings, driver),
        "null": lambda: nm._null_blocks(graph, keys, "block", True, settings, chunk, driver),
    }
    for name, call in calls.items():
        result, first = clock(call)
        _, second = clock(call)
        out[name] = {
            "first": first,
            "second": second,
            "compile_wall": max(first["wall"] - second["wall"], 0.0),
            "compile_cpu": max(first["cpu"] - second["cpu"], 0.0),
            "run_wall": second["wall"],
        }
        if name == "estimate":
            out["total"] = float(result[2])
            out["normalized"] = float(result[1] / result[2])
            out["sweeps"] = int(result[4])
        else:
            out["null_samples"] = samples
            out["null_chunk_size"] = chunk
            out["null_mean_normalized"] = float(np.mean(np.sum(result, axis=1)) / out["total"])
    return out


def _in_child(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="ResNet-50, 32 px, 2 null samples")
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="input sides (default 32 64)")
    p.add_argument("--graphs", nargs="+", choices=tuple(GRAPHS), default=list(GRAPHS))
    p.add_argument("--samples", type=int, default=NULL_SAMPLES, help="null samples (default 4)")
    p.add_argument("--old", action="store_true", help="also time the single-program driver (slow to compile)")
    p.add_argument("--old-sizes", type=int, nargs="+", default=[32], help="its input sides (default 32)")
    p.add_argument("--part", nargs=3, metavar=("GRAPH", "SIDE", "DRIVER"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part:
        name, side, driver = args.part
        print(json.dumps(part(name, int(side), driver, args.samples)))
        return
    graphs, sizes, samples = args.graphs, args.sizes, args.samples
    if args.quick:
        graphs, sizes, samples = ["resnet50"], [32], 2
    rows = []
    head = ("graph", "px", "driver", "layers", "blocks", "sigs", "edges", "sweeps", "estimate: compile",
            "run", "null: compile", "run", "load")  # fmt: skip
    print("{:<12} {:>4} {:<10} {:>6} {:>6} {:>5} {:>9} {:>6} {:>22} {:>7} {:>22} {:>7} {:>5}".format(*head))
    for name in graphs:
        for side in sizes:
            for driver in ("signatures", "program"):
                if driver == "program" and not (args.old and side in args.old_sizes):
                    continue
                load = os.getloadavg()[0]
                r = _in_child("--part", name, str(side), driver, "--samples", str(samples))
                r["load_before"], r["load_after"] = load, os.getloadavg()[0]
                rows.append(r)
                e, n = r["estimate"], r["null"]
                print(
                    f"{name:<12} {side:>4} {driver:<10} {r['layers']:>6} {r['blocks']:>6} "
                    f"{r['signatures']:>5} {r['edges']:>9.3g} {r['sweeps']:>6} "
                    f"{e['compile_wall']:>7.1f}s ({e['compile_cpu']:5.1f}s cpu) {e['run_wall']:>6.1f}s "
                    f"{n['compile_wall']:>7.1f}s ({n['compile_cpu']:5.1f}s cpu) {n['run_wall']:>6.1f}s "
                    f"{max(load, r['load_after']):>5.1f}",
                    flush=True,
                )
    record = {"quick": args.quick, "null_samples": samples, "rows": rows, "machine": machine_info()}
    print(f"wrote {write_record('compile_time', record, args.quick)}")


if __name__ == "__main__":
    main()
