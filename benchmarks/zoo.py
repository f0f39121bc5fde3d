"""The model zoo: torchvision CNNs exported by both torch ONNX exporters, imported and studied.

Needs the `zoo` extra (torch, torchvision, onnxscript, onnx; never needed by the tests):

    pip install -e '.[zoo]'
    python benchmarks/zoo.py                  # every architecture, both exporters (hours on 2 cores)
    python benchmarks/zoo.py --quick          # smoke run: squeezenet1_0 and resnet18 at 32 px
    python benchmarks/zoo.py --no-estimate    # coverage only: export and import, no search
    python benchmarks/zoo.py --models resnet18,vgg16 --exporters dynamo   # a subset
    python benchmarks/zoo.py --export-only --sizes 32,64,224   # only write the ONNX files
    python benchmarks/zoo.py --ops ops.json                    # op census of the cached exports
    python benchmarks/zoo.py --memory --timeout 900            # import + default estimate at 224 px
    python benchmarks/zoo.py --render benchmarks/results/zoo-YYYYMMDD.json   # redo table and figure

Every architecture gets random weights (`torch.manual_seed(0)`, `weights=None`, eval mode) and
is exported with `torch.onnx.export(..., dynamo=True)` (the default exporter; `external_data=False`)
and `dynamo=False` (the legacy TorchScript exporter) to `CACHE/NAME-EXPORTER-SIDE.onnx` (`--cache`,
default `benchmarks/.zoo-cache/`), next to a sidecar `NAME-EXPORTER-SIDE.json` saying how the
export went and whether onnxruntime reproduces torch's output (an exporter failure is recorded
there; a cached export, good or failed, is reused unless `--force`). inception_v3 takes 299 px
where 224 is asked (96 for 32, 128 for 64), alexnet 64 where 32 is asked; vit_b_16 is built
for the input side.

Each import and each estimate runs in its own subprocess, so that its peak RSS (`os.wait4`) and a
crash or timeout stay its own; failures are recorded with their message, never raised. Defaults:
the estimate at 224 px (`frustration(graph, restarts=8, tol=1e-5)`), the null models at 64 px
(16 block sign-shuffles, each searched with the same effort, next to the graph's own estimate at
64 px, through jaxflow's cross-model runner `jaxflow.experiments.frustration.model_frustration` when its
config takes every setting, else `null_model_frustration` directly), then the goals of issue 10:
vgg16 at 224² import + layerwise estimate (8 restarts, tol 1e-5) ≤ 5 min and ≤ 4 GB peak RSS,
and resnet50 at 224² default estimate ≤ 2 min. Compile and run time are reported apart.

Writes `benchmarks/results/zoo-YYYYMMDD[-quick].json` (machine, settings, coverage, estimates,
goals), `.md` (coverage table, cross-model table, goals), `.csv` (the cross-model table in the
columns of `jaxflow frustration a.onnx b.onnx …`) and `.png` (every model's frustration against
its null distribution, drawn by `jaxflow.plots.plot_models`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 0
EXPORTERS = ("dynamo", "legacy")

# name -> keyword arguments for torchvision.models.<name>(weights=None, **kwargs)
ARCHITECTURES: dict[str, dict] = {
    "alexnet": {},
    "vgg11": {},
    "vgg16": {},
    "resnet18": {},
    "resnet50": {},
    "squeezenet1_0": {},
    "densenet121": {},
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "mobilenet_v2": {},
    "mobilenet_v3_small": {},
    "mobilenet_v3_large": {},
    "mnasnet1_0": {},
    "efficientnet_b0": {},
    "shufflenet_v2_x1_0": {},
    "regnet_y_400mf": {},
    "convnext_tiny": {},
    "vit_b_16": {},  # attention: the importer is expected to refuse it
}
QUICK_MODELS = ("squeezenet1_0", "resnet18")  # small and quick to compile
# models that need a larger input than asked: inception_v3 needs >= 75 px, alexnet >= 63 px
SIZE_MAP = {"inception_v3": {32: 96, 64: 128, 224: 299}, "alexnet": {32: 64}}


def input_size(name: str, size: int) -> int:
    """The input side used for `name` when `size` px is asked (inception_v3: 32→96, 64→128, 224→299)."""
    return SIZE_MAP.get(name, {}).get(size, size)


def export_path(cache: Path, name: str, exporter: str, size: int) -> Path:
    return Path(cache) / f"{name}-{exporter}-{input_size(name, size)}.onnx"


# ---------------------------------------------------------------------- export (torch)


def build_model(name: str, side: int):
    """torchvision's `name` with seeded random weights, in eval mode."""
    import torch
    import torchvision

    torch.manual_seed(SEED)
    kwargs = dict(ARCHITECTURES[name])
    if name.startswith("vit_"):
        kwargs["image_size"] = side  # the position embedding is sized for the input
    return getattr(torchvision.models, name)(weights=None, **kwargs).eval()


def _export_one(name: str, exporter: str, side: int, path: Path) -> dict:
    """Export one model; returns the sidecar record (status "ok" or the exporter's error)."""
    import warnings

    import torch

    rec: dict = {"model": name, "exporter": exporter, "input": [1, 3, side, side], "torch": torch.__version__}
    try:
        model = build_model(name, side)
        rec["parameters"] = int(sum(p.numel() for p in model.parameters()))
        gen = torch.Generator().manual_seed(SEED)
        x = torch.randn(1, 3, side, side, generator=gen)
        with torch.no_grad():
            expected = model(x).numpy()
    except Exception as e:  # noqa: BLE001 - the model itself refuses this input size
        rec.update(status="model-error", error=f"{type(e).__name__}: {e}".strip()[:2000])
        return rec
    tmp = path.with_suffix(".tmp.onnx")
    start = time.perf_counter()
    try:
        # not under no_grad: there, torch's MultiheadAttention takes its fused fast path
        # (`aten::_native_multi_head_attention`), which the legacy exporter cannot write
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if exporter == "dynamo":
                torch.onnx.export(model, (x,), str(tmp), dynamo=True, external_data=False)
            else:
                torch.onnx.export(model, (x,), str(tmp), dynamo=False)
        rec["warnings"] = sorted({str(w.message).splitlines()[0][:300] for w in caught})[:10]
    except Exception as e:  # noqa: BLE001 - record the exporter's own failure
        rec.update(
            status="export-error",
            seconds=time.perf_counter() - start,
            error=f"{type(e).__name__}: {e}".strip()[:4000],
            traceback=traceback.format_exc()[-4000:],
        )
        with contextlib.suppress(OSError):
            tmp.unlink()
        return rec
    rec["seconds"] = time.perf_counter() - start
    sidefiles = [p.name for p in tmp.parent.glob(tmp.name + "*") if p != tmp]
    if sidefiles:
        rec["external_data"] = sidefiles
    tmp.rename(path)
    rec["status"] = "ok"
    rec["bytes"] = path.stat().st_size
    rec["onnxruntime"] = _check_runtime(path, x.numpy(), expected)
    return rec


def _check_runtime(path: Path, x, expected) -> dict:
    """Run the export in onnxruntime and compare with torch (an exporter bug shows up here)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"ok": None, "skipped": "onnxruntime is not installed"}
    try:
        import numpy as np

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x})[:1]
        err = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
        return {"ok": bool(err < 1e-3), "max_rel_error": err}
    except Exception as e:  # noqa: BLE001
        return {"ok": False, "error": f"{type(e).__name__}: {e}"[:1000]}


def _worker_export(args: dict) -> dict:
    """Subprocess: export one architecture with the given exporters and sizes (cached sidecars kept)."""
    import torch

    torch.set_num_threads(int(args.get("threads", 1)))
    cache = Path(args["cache"])
    cache.mkdir(parents=True, exist_ok=True)
    done = {}
    for exporter in args["exporters"]:
        for size in args["sizes"]:
            side = input_size(args["model"], size)
            path = export_path(cache, args["model"], exporter, size)
            side_json = path.with_suffix(".json")
            if side_json.exists() and not args.get("force"):
                done[path.name] = json.loads(side_json.read_text())["status"]
                continue
            rec = _export_one(args["model"], exporter, side, path)
            side_json.write_text(json.dumps(rec, indent=2))
            done[path.name] = rec["status"]
            print(f"  {path.name}: {rec['status']} ({rec.get('seconds', 0):.1f} s)", flush=True)
    return done


def export_all(cache: Path, models, exporters, sizes, *, force=False, timeout=3600, threads=1) -> dict:
    """Export every (model, exporter, size) not yet in `cache`, one subprocess per model."""
    status = {}
    for name in models:
        todo = [
            (e, s)
            for e in exporters
            for s in sizes
            if force or not export_path(cache, name, e, s).with_suffix(".json").exists()
        ]
        if todo:
            print(
                f"exporting {name} ({', '.join(f'{e}@{input_size(name, s)}' for e, s in todo)})", flush=True
            )
            args = dict(model=name, exporters=list(exporters), sizes=list(sizes), cache=str(cache))
            args.update(force=force, threads=threads)
            res = run_worker("export", args, timeout=timeout)
            if res["status"] != "ok":  # the whole subprocess died: record it for what is missing
                for e, s in todo:
                    side = export_path(cache, name, e, s).with_suffix(".json")
                    if not side.exists():
                        rec = {
                            "model": name,
                            "exporter": e,
                            "input": [1, 3, input_size(name, s), input_size(name, s)],
                        }
                        rec.update(status="export-error", error=res.get("error", res["status"]))
                        side.write_text(json.dumps(rec, indent=2))
        for e in exporters:
            for s in sizes:
                side = export_path(cache, name, e, s).with_suffix(".json")
                status[(name, e, s)] = (
                    json.loads(side.read_text()) if side.exists() else {"status": "missing"}
                )
    return status


# ---------------------------------------------------------------------- op census (onnx only)

_SMALL = 16  # constants with at most this many elements are shown by value


def _census_file(path: Path) -> dict:
    """Op types of one ONNX file and the distinct patterns of each op: attributes, and for every
    operand whether it is the graph input, an initializer, a Constant node's output or computed (a
    depth-limited expression of what computes it, `#i` standing for the node's operand i)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(path))
    with contextlib.suppress(Exception):
        model = shape_inference.infer_shapes(model)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant":
            with contextlib.suppress(Exception):
                consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
    inputs = [i.name for i in g.input if i.name not in inits]

    def value(a: np.ndarray):
        if a.size <= _SMALL:
            return np.asarray(a).tolist()
        return f"<{a.dtype}{list(a.shape)}>"

    def operand(name: str) -> dict:
        if not name:
            return {"kind": "absent"}
        if name in inits:
            a = numpy_helper.to_array(inits[name])
            return {"kind": "initializer", "shape": list(a.shape), "value": value(a)}
        if name in consts:
            a = consts[name]
            return {"kind": "Constant", "shape": list(a.shape), "value": value(a)}
        if name in inputs:
            return {"kind": "graph-input", "shape": shapes.get(name)}
        prod = producer.get(name)
        return {"kind": "computed", "producer": prod.op_type if prod else "?", "shape": shapes.get(name)}

    def expr(name: str, depth: int, own: dict) -> str:
        if name in own:
            return own[name]
        if name in inputs:
            return "INPUT"
        if name in inits or name in consts:
            a = numpy_helper.to_array(inits[name]) if name in inits else consts[name]
            return repr(np.asarray(a).tolist()) if a.size <= 4 else f"W{list(a.shape)}"
        n = producer.get(name)
        if n is None:
            return "?"
        if depth == 0:
            return f"{n.op_type}(…)"
        return f"{n.op_type}(" + ", ".join(expr(i, depth - 1, own) for i in n.input if i) + ")"

    def attrs(n) -> dict:
        out = {}
        for a in n.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = value(numpy_helper.to_array(v))
            elif isinstance(v, bytes):
                v = v.decode(errors="replace")
            elif isinstance(v, list | tuple):
                v = [x.decode(errors="replace") if isinstance(x, bytes) else x for x in v]
            elif not isinstance(v, int | float | str):
                v = repr(v)[:100]
            out[a.name] = v
        return out

    ops = Counter(n.op_type for n in g.node)
    patterns: dict[str, dict] = {}
    for n in g.node:
        if n.op_type == "Constant":
            continue
        a = attrs(n)
        ins = [operand(i) for i in n.input]
        sig_attrs = {k: v for k, v in a.items() if k not in ("value",)}
        sig = json.dumps(
            [
                n.domain,
                sig_attrs if n.op_type in _ATTR_OPS else sorted(sig_attrs),
                [
                    (o["kind"], o.get("producer"), None if o["kind"] == "computed" else o.get("shape"))
                    for o in ins
                ],
            ],
            sort_keys=True,
            default=str,
        )
        per = patterns.setdefault(n.op_type, {})
        if sig in per:
            per[sig]["count"] += 1
            continue
        if len(per) >= 6:
            per.setdefault("__more__", {"count": 0})["count"] += 1
            continue
        own = {name: f"#{i}" for i, name in enumerate(n.input) if name}
        computed = [
            f"#{i} = " + expr(name, 5, {k: v for k, v in own.items() if k != name})[:400]
            for i, name in enumerate(n.input)
            if name and operand(name)["kind"] == "computed"
        ]
        per[sig] = {
            "count": 1,
            "example": {
                "node": n.name,
                "domain": n.domain or "ai.onnx",
                "attributes": a,
                "operands": ins,
                "computed_operands": computed,
                "output_shapes": [shapes.get(o) for o in n.output],
            },
        }
    return {
        "file": path.name,
        "ir_version": model.ir_version,
        "opset_import": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": {i: shapes.get(i) for i in inputs},
        "outputs": {o.name: shapes.get(o.name) for o in g.output},
        "num_nodes": len(g.node),
        "num_initializers": len(g.initializer),
        "local_functions": [f"{f.domain}::{f.name}" for f in model.functions],
        "ops": dict(sorted(ops.items())),
        "op_multiset": sorted(ops.elements()),
        "patterns": {
            op: [
                dict(count=v["count"], **({"example": v["example"]} if "example" in v else {"more": True}))
                for v in per.values()
            ]
            for op, per in sorted(patterns.items())
        },
    }


# ops whose attribute values are part of a pattern (for the others only the attribute names are)
_ATTR_OPS = {
    "Transpose",
    "Reshape",
    "Resize",
    "Pad",
    "Slice",
    "Split",
    "Concat",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "ReduceMean",
    "ReduceSum",
    "Gemm",
    "Gather",
    "Softmax",
    "LayerNormalization",
    "Clip",
    "HardSigmoid",
    "Cast",
    "Expand",
    "Tile",
    "Upsample",
    "LeakyRelu",
    "Gelu",
    "AveragePool",
    "MaxPool",
}


def op_census(cache: Path, out: Path) -> dict:
    """`ops.json`: the census of every export in `cache` (file name -> `_census_file` + its export record)."""
    files = {}
    for path in sorted(Path(cache).glob("*.onnx")):
        if path.name.endswith(".tmp.onnx"):
            continue
        rec = _census_file(path)
        side = path.with_suffix(".json")
        if side.exists():
            meta = json.loads(side.read_text())
            rec["export"] = {k: meta.get(k) for k in ("model", "exporter", "input", "seconds", "onnxruntime")}
        files[path.name] = rec
        print(f"  {path.name}: {rec['num_nodes']} nodes, {len(rec['ops'])} op types", flush=True)
    failures = {}
    for side in sorted(Path(cache).glob("*.json")):
        meta = json.loads(side.read_text())
        if meta.get("status") != "ok":
            failures[side.with_suffix(".onnx").name] = {
                "status": meta.get("status"),
                "error": meta.get("error"),
            }
    record = {"files": files, "export_failures": failures}
    Path(out).write_text(json.dumps(record, indent=1, default=str))
    return record


# ---------------------------------------------------------------------- subprocesses


def run_worker(kind: str, args: dict, *, timeout: float) -> dict:
    """Run `zoo.py --worker KIND` in a subprocess; its JSON result plus `peak_rss_mb` and `wall_s`.

    The result carries `status`: "ok", "error" (the worker raised: `error` has the message),
    "timeout" or "crashed" (killed or died: `error` has the exit status and the output's tail).
    """
    with tempfile.TemporaryDirectory(prefix="zoo-") as tmp:
        result_file = Path(tmp) / "result.json"
        log_file = Path(tmp) / "log.txt"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            kind,
            "--worker-args",
            json.dumps(args),
        ]
        cmd += ["--worker-result", str(result_file)]
        start = time.perf_counter()
        with open(log_file, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            timed_out = False
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > timeout:
                    timed_out = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, 9)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
            proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        tail = log_file.read_text(errors="replace")[-3000:]
        if result_file.exists():
            res = json.loads(result_file.read_text())
        elif timed_out:
            res = {"status": "timeout", "error": f"killed after {timeout:.0f} s", "log_tail": tail}
        else:
            res = {"status": "crashed", "error": f"exit status {proc.returncode}", "log_tail": tail}
        res["peak_rss_mb"] = usage.ru_maxrss / 1024  # kB on Linux
        res["wall_s"] = wall
        if kind == "export":
            for line in tail.splitlines():
                if line.startswith("  ") and ".onnx: " in line:
                    print(line, flush=True)
        return res


def _worker_main(kind: str, args: dict, result_file: str) -> None:
    try:
        out = {"status": "ok", **WORKERS[kind](args)}
    except Exception as e:  # noqa: BLE001 - recorded, not raised
        msg = f"{type(e).__name__}: {e}".strip()
        out = {"status": "error", "error": msg[:4000], "traceback": traceback.format_exc()[-3000:]}
    Path(result_file).write_text(json.dumps(out, default=float))


# ---------------------------------------------------------------------- import and estimate (jax)


class _CompileClock:
    """Seconds JAX spends tracing, lowering and compiling (its own monitoring events), so that a
    timed call splits into compile and run."""

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self):
        import jax

        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if event in self.EVENTS:
            self.seconds += duration


def _jax_setup(args: dict):
    import jax

    jax.config.update("jax_enable_x64", bool(args.get("x64", True)))  # as `jaxflow frustration` does
    if args.get("jax_cache"):  # both exporters give graphs of the same shapes: compile once for both
        jax.config.update("jax_compilation_cache_dir", args["jax_cache"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return jax


def _import(path: str, args: dict):
    """`load_graph(path)` timed; returns (graph, record)."""
    from jaxflow.signed.importers import load_graph

    kwargs = {}
    if args.get("dtype"):
        kwargs["dtype"] = args["dtype"]
    start = time.perf_counter()
    graph = load_graph(path, **kwargs)
    seconds = time.perf_counter() - start
    acts = list(getattr(graph, "activations", ()))
    rec = {
        "import_s": seconds,
        "layers": graph.num_layers,
        "nodes": int(graph.num_nodes),
        "edges": int(graph.num_edges()),
        "blocks": len(graph.blocks),
        "learned_blocks": sum(1 for b in graph.blocks if getattr(b, "learned", False)),
        "dtype": str(graph.dtype),
        "nonmonotone_layers": sum(1 for a in acts if not getattr(a, "monotone", True)),
        "activations": dict(Counter(getattr(a, "name", str(a)) for a in acts)),
    }
    return graph, rec


def _worker_import(args: dict) -> dict:
    _jax_setup(args)
    _, rec = _import(args["path"], args)
    rec["rss_after_import_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rec


def _search_options(args: dict) -> dict:
    opts = {}
    for k in ("method", "restarts", "tol", "max_iterations"):
        if args.get(k) is not None:
            opts[k] = args[k]
    if args.get("search_dtype"):
        import jax.numpy as jnp

        opts["dtype"] = getattr(jnp, args["search_dtype"])
    return opts


def _worker_estimate(args: dict) -> dict:
    """Import, then the graph's frustration (no nulls): `frustration(graph, **options)`."""
    jax = _jax_setup(args)
    from jaxflow.signed.frustration import frustration

    clock = _CompileClock()
    graph, rec = _import(args["path"], args)
    rec["import_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    compiled_before = clock.seconds
    start = time.perf_counter()
    res = frustration(graph, key=jax.random.key(SEED), **_search_options(args))
    value = float(res.value)  # blocks until done
    seconds = time.perf_counter() - start
    compile_s = clock.seconds - compiled_before
    rec.update(
        value=value,
        normalized=float(res.normalized),
        total=float(res.total),
        restarts=int(res.settings.restarts),
        tol=float(res.settings.tol),
        method=res.settings.method,
        iterations=int(res.iterations),
        converged=bool(res.converged),
        estimate_s=seconds,
        compile_s=compile_s,
        run_s=seconds - compile_s,
        search_dtype=str(res.value.dtype),
        rungs=[list(r) for r in res.settings.rungs],
        lower_bound=float(res.lower_bound / res.total),
    )
    return rec


def _runner_config(args: dict):
    """A `FrustrationConfig` for jaxflow's own runner (`jaxflow.experiments.frustration.model_frustration`,
    what `jaxflow frustration a.onnx b.onnx …` runs per model), or `(None, why not)` when the
    runner is missing or cannot take every requested setting."""
    import dataclasses

    try:
        from jaxflow.config import FrustrationConfig
        from jaxflow.experiments.frustration import model_frustration  # noqa: F401
    except ImportError as e:
        return None, f"no cross-model runner ({e})"
    fields = {f.name for f in dataclasses.fields(FrustrationConfig)}
    want = {"null_samples": int(args["samples"]), "null_model": args.get("null_model", "block")}
    want.update(seed=SEED, per_layer=False)
    want.update(
        {k: args[k] for k in ("method", "restarts", "tol", "max_iterations") if args.get(k) is not None}
    )
    missing = sorted(set(want) - fields)
    if args.get("search_dtype"):
        missing.append("search_dtype")
    if missing:
        return None, f"FrustrationConfig has no {', '.join(missing)}"
    return FrustrationConfig(**want), None


def _worker_nulls(args: dict) -> dict:
    """The graph's own estimate and `samples` sign-shuffled nulls searched with the same effort:
    through jaxflow's cross-model runner (`model_frustration(path, config)`) when it takes every
    setting, else `null_model_frustration(graph, key, samples=…, **options)` directly."""
    jax = _jax_setup(args)
    import numpy as np

    clock = _CompileClock()
    config, why = (None, "--direct") if args.get("direct") else _runner_config(args)
    if config is not None:
        from jaxflow.experiments.frustration import model_frustration

        start = time.perf_counter()
        result = model_frustration(args["path"], config)
        seconds = time.perf_counter() - start
        fr = result["frustration"]
        null = np.asarray(fr["null_normalized"], float)
        return {
            "runner": "jaxflow.experiments.frustration.model_frustration",
            "layers": result["num_layers"],
            "nodes": int(result["num_nodes"]),
            "edges": int(result["num_edges"]),
            "dtype": result.get("dtype"),
            "value": fr.get("value"),
            "normalized": fr["normalized"],
            "total": fr.get("total"),
            "restarts": result.get("restarts"),
            "tol": getattr(config, "tol", None),
            "method": config.method,
            "null_model": config.null_model,
            "null_samples": int(null.size),
            "null_normalized": null.tolist(),
            "null_mean": fr["null_mean"],
            "null_std": fr["null_std"],
            "zscore": fr["zscore"],
            "pvalue": fr["pvalue"],
            "nulls_s": seconds,
            "compile_s": clock.seconds,
            "run_s": seconds - clock.seconds,
        }
    from jaxflow.signed.nullmodels import null_model_frustration

    graph, rec = _import(args["path"], args)
    rec["runner"] = f"jaxflow.signed.nullmodels.null_model_frustration ({why})"
    compiled_before = clock.seconds
    start = time.perf_counter()
    nul = null_model_frustration(
        graph,
        jax.random.key(SEED),
        samples=int(args["samples"]),
        model=args.get("null_model", "block"),
        **_search_options(args),
    )
    values = np.asarray(nul.values, float)  # blocks until done
    seconds = time.perf_counter() - start
    compile_s = clock.seconds - compiled_before
    obs = nul.observed
    total = float(obs.total)
    null = values / total
    rec.update(
        value=float(obs.value),
        normalized=float(obs.normalized),
        total=total,
        restarts=int(obs.settings.restarts),
        tol=float(obs.settings.tol),
        method=obs.settings.method,
        converged=bool(obs.converged),
        null_model=nul.model,
        null_samples=int(values.size),
        null_normalized=null.tolist(),
        null_mean=float(null.mean()),
        null_std=float(null.std(ddof=1)) if null.size > 1 else float("nan"),
        zscore=float(nul.zscore()),
        pvalue=float(nul.pvalue()),
        nulls_s=seconds,
        compile_s=compile_s,
        run_s=seconds - compile_s,
        search_dtype=str(obs.value.dtype),
    )
    return rec


def _worker_default_vs_benchmark(args: dict) -> dict:
    """The default `frustration(graph)` of the export (library defaults, what `jaxflow frustration`
    runs for the network itself) against `benchmarks/frustration.py`'s ResNet-18-shaped graph at
    the same side (8 restarts, tol 1e-5), in the same process, each timed with its compile."""
    rec = _worker_estimate({k: v for k, v in args.items() if k not in ("restarts", "tol", "method")})
    import jax  # (set up by the estimate)
    import numpy as np

    from jaxflow.signed.frustration import frustration

    sys.path.insert(0, str(HERE))
    from frustration import RESNET_TOL, resnet18_graph

    side = int(args["side"])
    t = time.perf_counter()
    bench = resnet18_graph(side, np.float32)
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    res = frustration(bench, method="layerwise", key=jax.random.key(SEED), restarts=8, tol=RESNET_TOL)
    normalized = float(res.normalized)  # blocks until done
    bench_s = time.perf_counter() - t
    rec["benchmark_graph"] = {
        "edges": int(bench.num_edges()),
        "build_s": build_s,
        "estimate_s": bench_s,
        "normalized": normalized,
        "restarts": 8,
        "tol": RESNET_TOL,
        "iterations": int(res.iterations),
    }
    rec["ratio"] = rec["estimate_s"] / bench_s
    return rec


def _worker_study(args: dict) -> dict:
    """`jaxflow study` of the model file with the settings in `args["study"]` (a TOML body),
    through the command's own entry point, in this process (its peak RSS is the goal's)."""
    with tempfile.TemporaryDirectory(prefix="zoo-study-") as tmp:
        cfg = Path(tmp) / "study.toml"
        cfg.write_text(f'model_file = "{args["path"]}"\n' + args["study"])
        from jaxflow.cli import main as jaxflow_main

        start = time.perf_counter()
        status = jaxflow_main(["study", str(cfg), "--out", str(Path(tmp) / "out")])
        seconds = time.perf_counter() - start
        if status:
            raise RuntimeError(f"jaxflow study exited with status {status}")
        study = json.loads((Path(tmp) / "out" / "study.json").read_text())
    fr = study.get("frustration", {})
    return {"study_s": seconds, "normalized": fr.get("normalized"), "edges": study.get("num_edges")}


WORKERS = {
    "export": lambda a: {"exports": _worker_export(a)},
    "import": _worker_import,
    "estimate": _worker_estimate,
    "nulls": _worker_nulls,
    "default_vs_benchmark": _worker_default_vs_benchmark,
    "study": _worker_study,
}


# ---------------------------------------------------------------------- the benchmark


def _short_error(res: dict) -> str:
    err = (res.get("error") or res.get("status") or "?").strip()
    return err.splitlines()[0][:300] if err else "?"


def _fmt(v, spec=".4f", none="–"):
    if v is None or (isinstance(v, float) and v != v):
        return none
    return format(v, spec)


def _fmt_count(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2e}" if v >= 1e5 else str(v)


def _goal(name: str, res: dict, limits: dict) -> dict:
    """A goal record: the measured values next to the limits, and whether each holds."""
    rec = {"goal": limits, "status": res.get("status"), "measured": {}}
    if res.get("status") != "ok":
        rec.update(met=False, error=_short_error(res))
        return rec
    m = rec["measured"]
    m["import_s"] = res.get("import_s")
    m["estimate_s"] = res.get("estimate_s", res.get("nulls_s"))
    m["compile_s"] = res.get("compile_s")
    m["run_s"] = res.get("run_s")
    m["total_s"] = res["wall_s"]
    m["ratio"] = res.get("ratio")
    m["benchmark_graph"] = res.get("benchmark_graph")
    m["peak_rss_mb"] = res["peak_rss_mb"]
    m["restarts"] = res.get("restarts")
    m["tol"] = res.get("tol")
    m["normalized"] = res.get("normalized")
    m["edges"] = res.get("edges")
    checks = {}
    if "seconds" in limits:
        key = limits.get("timed", "total_s")
        checks["seconds"] = m[key] is not None and m[key] <= limits["seconds"]
    if "ratio" in limits:
        checks["ratio"] = m["ratio"] is not None and m["ratio"] <= limits["ratio"]
    if "peak_rss_mb" in limits:
        checks["peak_rss_mb"] = m["peak_rss_mb"] <= limits["peak_rss_mb"]
    rec["checks"] = checks
    rec["met"] = all(checks.values())
    return rec


def run_benchmark(args, partial: Path) -> dict:
    """Export, import, estimate every (model, exporter) in turn, then the goals; the record so far
    is saved to `partial` after each pair (a later run can `--resume` from it)."""
    sys.path.insert(0, str(HERE))
    from _machine import machine_info

    cache = Path(args.cache)
    models = (
        args.models.split(",") if args.models else (list(QUICK_MODELS) if args.quick else list(ARCHITECTURES))
    )
    if args.goals_only:
        models = []
    exporters = args.exporters.split(",")
    size, null_size = args.size, args.null_size
    sizes = sorted({size, null_size})
    t0 = time.perf_counter()
    exports = export_all(cache, models, exporters, sizes, threads=args.threads)
    search = {"method": args.method, "restarts": args.restarts, "tol": args.tol}
    if args.search_dtype:
        search["search_dtype"] = args.search_dtype
    common = {"x64": not args.no_x64, "dtype": args.dtype}
    if not args.no_jax_cache:
        common["jax_cache"] = str(cache / "jax-cache")
    settings = {
        "seed": SEED,
        "size": size,
        "null_size": null_size,
        "input_sizes": {m: {s: input_size(m, s) for s in sizes} for m in models},
        "search": search,
        "null_samples": args.samples,
        "null_model": args.null_model,
        "x64": common["x64"],
        "import_dtype": args.dtype or "library default",
        "jax_compilation_cache": common.get("jax_cache"),
        "timeout_s": args.timeout,
        "notes": (
            f"frustration estimated at {size} px; null models (and the graph's own estimate next to "
            f"them, for a like-for-like z and p) at {null_size} px, every sample searched with the "
            "same effort as the graph. inception_v3 takes 299 px where 224 is asked (96 for 32, 128 "
            "for 64), alexnet 64 for 32; vit_b_16 is built with image_size equal to the input side."
        ),
    }
    coverage, estimates = [], []
    done_cov, done_est = {}, {}
    if args.resume:  # pairs already measured with the same settings are taken as they are
        old = json.loads(Path(args.resume).read_text())
        keys = ("size", "null_size", "search", "null_samples", "null_model", "x64", "import_dtype")
        ours = json.loads(json.dumps(settings))
        if any(old["settings"].get(k) != ours[k] for k in keys):
            raise SystemExit(f"--resume {args.resume}: its settings differ from this run's")
        done_cov = {(r["model"], r["exporter"]): r for r in old["coverage"]}
        done_est = {(r["model"], r["exporter"]): r for r in old["estimates"]}
    machine = machine_info()

    def record() -> dict:
        return {
            "benchmark": "zoo",
            "machine": machine,
            "settings": settings,
            "quick": bool(args.quick),
            "coverage": coverage,
            "estimates": estimates,
            "goals": goals,
            "seconds": time.perf_counter() - t0,
        }

    goals: dict = {}
    jobs = [(m, e) for m in models for e in exporters]
    for i, (m, e) in enumerate(jobs):
        print(f"[{i + 1}/{len(jobs)}] {m} ({e})", flush=True)
        wanted = args.estimate_exporters.split(",") if args.estimate_exporters else exporters
        needs_estimate = not args.no_estimate and e in wanted
        if (m, e) in done_cov and (not needs_estimate or (m, e) in done_est):
            coverage.append(done_cov[(m, e)])
            if (m, e) in done_est and not args.no_estimate:
                estimates.append(done_est[(m, e)])
            print("    (from --resume)", flush=True)
            continue
        row = {"model": m, "exporter": e}
        for s in sizes:
            side = input_size(m, s)
            exp = exports[(m, e, s)]
            cell = {"input": side, "export_status": exp.get("status"), "export_s": exp.get("seconds")}
            cell["file"] = str(export_path(cache, m, e, s))
            if exp.get("status") != "ok":
                cell.update(imports=False, stage="export", error=_short_error(exp))
            else:
                path = export_path(cache, m, e, s)
                res = run_worker("import", {"path": str(path), **common}, timeout=args.timeout)
                cell["peak_rss_mb"] = res["peak_rss_mb"]
                if res["status"] == "ok":
                    cell.update(imports=True, **{k: res[k] for k in ("nodes", "edges", "layers", "import_s")})
                    cell.update(nonmonotone_layers=res.get("nonmonotone_layers"), dtype=res.get("dtype"))
                else:
                    cell.update(imports=False, stage="import", error=_short_error(res))
            row[str(s)] = cell
            status = "imports" if cell["imports"] else f"{cell['stage']} fails: {cell['error'][:120]}"
            print(f"    {side} px: {status}", flush=True)
        coverage.append(row)
        if not needs_estimate:
            partial.write_text(json.dumps(record(), indent=1, default=float))
            continue
        est = {"model": m, "exporter": e}
        if row[str(size)]["imports"] and size != null_size:
            path = export_path(cache, m, e, size)
            r = run_worker("estimate", {"path": str(path), **common, **search}, timeout=args.timeout)
            est["estimate"] = {"input": input_size(m, size), **_slim(r)}
            print(f"    estimate at {input_size(m, size)} px: {_brief(r)}", flush=True)
        if row[str(null_size)]["imports"] and args.samples > 0:
            path = export_path(cache, m, e, null_size)
            nargs = {
                "path": str(path),
                **common,
                **search,
                "samples": args.samples,
                "null_model": args.null_model,
                "direct": args.direct,
            }
            r = run_worker("nulls", nargs, timeout=args.timeout)
            est["nulls"] = {"input": input_size(m, null_size), **_slim(r)}
            print(f"    nulls at {input_size(m, null_size)} px: {_brief(r)}", flush=True)
        estimates.append(est)
        partial.write_text(json.dumps(record(), indent=1, default=float))
    if not args.no_goals:
        goals.update(run_goals(cache, common, args))
    return record()


def _slim(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in ("traceback", "log_tail") or r.get("status") != "ok"}


def _brief(r: dict) -> str:
    if r.get("status") != "ok":
        return f"{r.get('status')}: {_short_error(r)[:160]}"
    parts = [f"F = {r['normalized']:.4f}"]
    if "null_mean" in r:
        parts.append(f"null {r['null_mean']:.4f} ± {r['null_std']:.4f}, z = {r['zscore']:.2f}")
    parts.append(f"{r['wall_s']:.0f} s (compile {r.get('compile_s', 0):.0f} s), {r['peak_rss_mb']:.0f} MB")
    return ", ".join(parts)


def run_memory(args) -> dict:
    """`--memory`: the import and the default estimate (`frustration(graph)`: the ladder and its
    proven bound; `--no-estimate`: the import only) of every architecture's dynamo export at
    `--size` px, one process each (its peak RSS covers both; `import_peak_rss_mb` is the peak when
    the import ends), with the load average before and after."""
    sys.path.insert(0, str(HERE))
    from _machine import machine_info

    cache = Path(args.cache)
    models = args.models.split(",") if args.models else list(ARCHITECTURES)
    exports = export_all(cache, models, ["dynamo"], [args.size], threads=args.threads)
    rows = []
    for name in models:
        row = {"model": name, "input": input_size(name, args.size), "load_before": os.getloadavg()}
        exp = exports[(name, "dynamo", args.size)]
        if exp.get("status") != "ok":
            row.update(status="export-error", error=_short_error(exp))
        else:
            wargs = {"path": str(export_path(cache, name, "dynamo", args.size)), "x64": True}
            kind = "import" if args.no_estimate else "estimate"
            res = run_worker(kind, wargs, timeout=args.timeout)  # (its error stays, not the traceback,
            row.update({k: v for k, v in res.items() if k not in ("traceback", "log_tail")})  # for the docs)
        row["load_after"] = os.getloadavg()
        rows.append(row)
        peak, wall = row.get("peak_rss_mb", 0), row.get("wall_s", 0)
        print(f"  {name}: {row.get('status')}, {peak:.0f} MB, {wall:.0f} s", flush=True)
    settings = {"size": args.size, "exporter": "dynamo", "timeout_s": args.timeout, "x64": True,
                "estimate": "none" if args.no_estimate else "default"}  # fmt: skip
    return {"benchmark": "zoo-memory", "machine": machine_info(), "settings": settings, "models": rows}


# the study of the memory goal: every part runs (the nulls one at a time, so their number does not
# change the peak), with as few samples as the config allows so that it fits the benchmark's time
STUDY_GOAL_TOML = """
[frustration]
restarts = 8
null_samples = 2
[monotonicity]
inputs = 2
sizes = [0.1]
perturbations = 2
null_samples = 2
active_inputs = 2
"""

GOALS = {
    "vgg16_import_layerwise": {
        "model": "vgg16",
        "size": 224,
        "search": {"method": "layerwise", "restarts": 8, "tol": 1e-5},
        "limits": {"seconds": 300, "peak_rss_mb": 4096, "timed": "total_s"},
        "what": "import + layerwise estimate (8 restarts, tol 1e-5) of vgg16 at 224², one process",
    },
    "resnet50_default_estimate": {
        "model": "resnet50",
        "size": 224,
        "search": {},
        "limits": {"seconds": 120, "timed": "estimate_s"},
        "what": "default `frustration(graph)` of resnet50 at 224² (timed: the estimate; import apart)",
    },
    "resnet18_default_vs_benchmark": {
        "model": "resnet18",
        "size": 224,
        "worker": "default_vs_benchmark",
        "search": {"side": 224},
        "limits": {"ratio": 2.0},
        "what": "default `frustration(graph)` of resnet18 at 224² against the ResNet-18-shaped "
        "benchmark graph (8 restarts, tol 1e-5), same process: time ratio <= 2",
    },
    "resnet18_study_memory": {
        "model": "resnet18",
        "size": 224,
        "worker": "study",
        "search": {"study": STUDY_GOAL_TOML},
        "limits": {"peak_rss_mb": 4096},
        "what": "`jaxflow study` of resnet18 at 224² (8 restarts, 2 null samples; 2 inputs, 2 null "
        "networks, 2 perturbations, 2 active inputs), one process: peak RSS <= 4 GB",
    },
    # issue 10, 3b: compiling the search and the null batch of a deep graph takes <= 60 s
    **{
        f"{m}_compile": {
            "model": m,
            "size": 64,
            "worker": "nulls",
            "search": {"method": "layerwise", "restarts": 8, "tol": 1e-5, "samples": 2, "direct": True},
            "limits": {"seconds": 60, "timed": "compile_s"},
            "what": f"compile time of {m}'s search and null batch (2 samples, 8 restarts) at 64 px",
        }
        for m in ("densenet121", "resnet50")
    },
}


def run_goals(cache: Path, common: dict, args) -> dict:
    """The goal runs, each in a fresh process with a cold compile (no persistent JAX cache)."""
    common = {k: v for k, v in common.items() if k != "jax_cache"}
    out = {}
    exporter = args.goal_exporter
    for name in args.goals.split(",") if args.goals else list(GOALS):
        g = GOALS[name]
        rec = {"what": g["what"], "exporter": exporter}
        st = export_all(cache, [g["model"]], [exporter], [g["size"]], threads=args.threads)[
            (g["model"], exporter, g["size"])
        ]
        if st.get("status") != "ok":
            rec.update(met=False, error=f"export failed: {_short_error(st)}", goal=g["limits"])
        else:
            path = export_path(cache, g["model"], exporter, g["size"])
            wargs = {"path": str(path), **common, **g["search"]}
            res = run_worker(g.get("worker", "estimate"), wargs, timeout=args.timeout)
            rec.update(_goal(name, res, g["limits"]))
        verdict = "met" if rec.get("met") else "NOT met"
        print(f"goal {name}: {verdict} {rec.get('measured') or rec.get('error')}", flush=True)
        out[name] = rec
    return out


# ---------------------------------------------------------------------- tables and figure


def _cell(c: dict | None) -> str:
    if c is None:
        return "–"
    if c["imports"]:
        return (
            f"✓ {_fmt_count(c['nodes'])} nodes, {_fmt_count(c['edges'])} edges, "
            f"{c['import_s']:.1f} s, {c['peak_rss_mb']:.0f} MB"
        )
    return f"✗ {c['stage']}: " + c["error"].replace("|", "\\|")[:160]


def _coverage_lines(record: dict, sizes, exporters) -> list[str]:
    lines = [
        "## Coverage (architecture × exporter)",
        "",
        "| model | " + " | ".join(f"{e} {sz} px" for sz in sizes for e in exporters) + " |",
        "|---|" + "---|" * (len(sizes) * len(exporters)),
    ]
    by = {(r["model"], r["exporter"]): r for r in record["coverage"]}
    for m in dict.fromkeys(r["model"] for r in record["coverage"]):
        marks = []
        for sz in sizes:
            for e in exporters:
                c = by.get((m, e), {}).get(str(sz))
                marks.append("–" if c is None else "✓" if c["imports"] else f"✗ {c['stage']}")
        lines.append(f"| {m} | " + " | ".join(marks) + " |")
    for sz in sizes:
        ok = sum(1 for r in record["coverage"] if r.get(str(sz), {}).get("imports"))
        lines.append(f"\n{ok} of {len(record['coverage'])} exports at {sz} px import.")
    lines += [
        "",
        "Each import in its own process (peak RSS of that process), or the first error:",
        "",
        "| model | exporter | " + " | ".join(f"{sz} px" for sz in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for row in record["coverage"]:
        lines.append(
            f"| {row['model']} | {row['exporter']} | "
            + " | ".join(_cell(row.get(str(sz))) for sz in sizes)
            + " |"
        )
    lines.append("")
    return lines


def markdown(record: dict) -> str:
    st = record["settings"]
    size, null_size = st["size"], st["null_size"]
    sizes = [size] if size == null_size else [size, null_size]
    s = st["search"]
    exporters = list(dict.fromkeys(r["exporter"] for r in record["coverage"]))
    lines = [
        f"# Model zoo: frustration of torchvision CNNs ({record['machine']['date'][:10]})",
        "",
        f"Machine: {record['machine']['cpu']}, {record['machine']['cores_available']} cores; "
        f"jax {record['machine']['jax']}. Random weights (seed {st['seed']}), torch exporters: "
        f"{', '.join(exporters)} (dynamo: `torch.onnx.export(..., dynamo=True)`, the default; legacy: "
        "`dynamo=False`). inception_v3 takes 299 px where 224 is asked (96 for 32, 128 for 64), "
        "alexnet 64 for 32.",
        f"Search: method {s.get('method') or 'default'}, restarts {s.get('restarts') or 'default'}, "
        f"tol {s.get('tol') if s.get('tol') is not None else 'default'}; "
        f"{st['null_samples']} {st['null_model']!r} null samples at {null_size} px.",
        "",
    ]
    if record["coverage"]:
        lines += _coverage_lines(record, sizes, exporters)
    if record["estimates"]:
        lines += [
            "## Frustration against null models",
            "",
            f"F: normalized frustration δ/Σ|a| (an upper bound: the best of the search's restarts). The null "
            f"models (sign shuffles, searched with the graph's own effort) and the graph's own F next to "
            f"them are at {null_size} px, so z and p compare like with like"
            + (f"; F at {size} px is the same search on the full-size graph." if size != null_size else ".")
            + " s: wall seconds of the subprocess (import included); compile: JAX tracing and compiling"
            + (
                " (with a persistent compilation cache: an architecture's second exporter, whose graph "
                "has the same shapes, mostly reuses the first's programs; the goals compile cold)."
                if st.get("jax_compilation_cache")
                else "."
            ),
            "",
        ]
        head = "| model | exporter |"
        if size != null_size:
            head += f" edges ({size}) | F ({size}) | s | compile s |"
        head += f" nodes ({null_size}) | edges ({null_size}) | F ({null_size}) | null mean ± std | z | p "
        head += "| restarts | samples | s | compile s | peak MB |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        for e in record["estimates"]:
            a, n = e.get("estimate", {}), e.get("nulls", {})
            cells = [e["model"], e["exporter"]]
            if size != null_size:
                if a.get("status") == "ok":
                    cells += [_fmt_count(a["edges"]), f"{a['normalized']:.4f}", f"{a['wall_s']:.0f}"]
                    cells += [f"{a['compile_s']:.0f}"]
                else:
                    cells += [f"✗ {_short_error(a)[:80]}" if a else "✗ not imported", "", "", ""]
            if n.get("status") == "ok":
                cells += [_fmt_count(n["nodes"]), _fmt_count(n["edges"]), f"{n['normalized']:.4f}"]
                cells += [f"{n['null_mean']:.4f} ± {_fmt(n['null_std'])}", _fmt(n["zscore"], ".2f")]
                cells += [f"{n['pvalue']:.3g}", str(n["restarts"]), str(n["null_samples"])]
                cells += [f"{n['wall_s']:.0f}", f"{n['compile_s']:.0f}", f"{n['peak_rss_mb']:.0f}"]
            else:
                cells += [f"✗ {_short_error(n)[:80]}" if n else "✗ not imported"] + [""] * 10
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    if record.get("goals"):
        lines += ["## Goals", "", "| goal | measured | limit | met |", "|---|---|---|---|"]
        for g in record["goals"].values():
            m = g.get("measured") or {}
            lim = g.get("goal", {})
            meas = (
                f"total {_fmt(m.get('total_s'), '.0f')} s (import {_fmt(m.get('import_s'), '.0f')}, estimate "
                f"{_fmt(m.get('estimate_s'), '.0f')}: compile {_fmt(m.get('compile_s'), '.0f')}), "
                f"peak {_fmt(m.get('peak_rss_mb'), '.0f')} MB"
                if m
                else g.get("error", "")
            )
            limit = ", ".join(f"{k} ≤ {v}" for k, v in lim.items() if k != "timed") + (
                f" ({lim['timed']})" if "timed" in lim else ""
            )
            lines.append(
                f"| {g['what']} ({g['exporter']}) | {meas} | {limit} | {'yes' if g.get('met') else 'no'} |"
            )
        lines.append("")
    lines.append(f"Whole run: {record['seconds'] / 60:.1f} min.")
    return "\n".join(lines) + "\n"


def cross_rows(record: dict) -> list[dict]:
    """One row per architecture and exporter in the columns of jaxflow's cross-model table (at the
    null size), plus `exporter`, `input`, `null_normalized` and the estimate at the full size."""
    from jaxflow.experiments.models import COLUMNS as CSV_COLUMNS

    cover = {(r["model"], r["exporter"]): r for r in record["coverage"]}
    null_size = str(record["settings"]["null_size"])
    rows = []
    for e in record["estimates"]:
        n, a = e.get("nulls", {}), e.get("estimate", {})
        row = dict.fromkeys(CSV_COLUMNS)
        row.update(model=f"{e['model']} ({e['exporter']})", exporter=e["exporter"], null_normalized=[])
        cell = cover.get((e["model"], e["exporter"]), {}).get(null_size, {})
        row.update(file=cell.get("file"), input=cell.get("input"))
        if n.get("status") == "ok":
            row.update({k: n.get(k) for k in CSV_COLUMNS if k in n})
            row.update(null_normalized=n["null_normalized"], seconds=n["wall_s"], error="")
        elif n:
            row["error"] = f"{n.get('status')}: {_short_error(n)}"
        else:
            row["error"] = f"{cell.get('stage', '?')}: {cell.get('error', 'not run')}"
        if a.get("status") == "ok":
            row.update(
                full_input=a.get("input"), full_edges=a.get("edges"), full_normalized=a.get("normalized")
            )
            row.update(full_seconds=a.get("wall_s"))
        rows.append(row)
    return rows


def write_csv(record: dict, path: Path) -> Path:
    import csv

    from jaxflow.experiments.models import COLUMNS as CSV_COLUMNS

    rows = cross_rows(record)
    extra = ["exporter", "input", "full_input", "full_edges", "full_normalized", "full_seconds"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*CSV_COLUMNS, *extra])
        for r in rows:
            w.writerow(["" if r.get(c) is None else r.get(c) for c in (*CSV_COLUMNS, *extra)])
    return path


def figure(record: dict, path: Path) -> Path | None:
    """The cross-model figure: jaxflow's own (`jaxflow.plots.plot_models`, as `jaxflow frustration
    a.onnx b.onnx …` draws it) when it exists, else `_own_figure`."""
    if not record["estimates"]:
        return None
    try:
        from jaxflow.plots import plot_models
    except ImportError:
        return _own_figure(record, path)
    st = record["settings"]
    title = (
        f"torchvision CNNs, random weights: frustration vs {st['null_samples']} {st['null_model']}-shuffled "
        f"null models each, at {st['null_size']} px"
    )
    return Path(plot_models(cross_rows(record), path, title=title))


def _own_figure(record: dict, path: Path) -> Path | None:
    """Every model's frustration against its null distribution, side by side: per model and exporter
    (one row each), the null samples (dots and box) and the graph itself (●), as % deviations from
    the null mean so that models of different scales share one axis; the z-score and the estimate
    at the full size are written on the right."""
    rows = [e for e in record["estimates"] if e.get("nulls", {}).get("status") == "ok"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    st = record["settings"]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.7))
    colors = {"dynamo": "tab:blue", "legacy": "tab:orange"}
    for y, e in enumerate(rows):
        n = e["nulls"]
        null = 100 * (np.asarray(n["null_normalized"]) / n["null_mean"] - 1)
        c = colors.get(e["exporter"], "gray")
        style = {"color": c, "alpha": 0.7}
        box = dict(positions=[y], widths=0.5, showfliers=False, manage_ticks=False, boxprops=style)
        box.update(whiskerprops=style, capprops=style, medianprops={"color": c})
        try:
            ax.boxplot(null, orientation="horizontal", **box)
        except TypeError:  # matplotlib < 3.10
            ax.boxplot(null, vert=False, **box)
        jitter = np.random.default_rng(y).uniform(-0.15, 0.15, null.size)
        ax.scatter(null, y + jitter, s=6, color=c, alpha=0.5)
        ax.scatter([100 * (n["normalized"] / n["null_mean"] - 1)], [y], marker="o", s=36, color="k", zorder=3)
        note = f"z = {_fmt(n['zscore'], '.2f')}"
        a = e.get("estimate", {})
        if a.get("status") == "ok" and a.get("input") != n.get("input"):
            note += f";  F({a['input']} px) = {a['normalized']:.4f}"
        ax.annotate(note, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{e['model']} ({e['exporter']})" for e in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("normalized frustration relative to the null mean (%)")
    ax.set_title(
        f"frustration (●) vs {st['null_samples']} sign-shuffled nulls ({st['null_model']}), "
        f"graphs at {st['null_size']} px",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {', '.join(QUICK_MODELS)} at 32 px, 2 restarts, 3 null samples, no goals",
    )
    p.add_argument("--cache", default=str(HERE / ".zoo-cache"), help="ONNX export folder (reused)")
    p.add_argument("--models", default=None, help="comma-separated architectures (default: all)")
    p.add_argument("--exporters", default=",".join(EXPORTERS))
    p.add_argument("--size", type=int, default=None, help="input side of the estimate (default 224)")
    p.add_argument("--null-size", type=int, default=None, help="input side of the null models (default 64)")
    p.add_argument("--method", default=None, help="search method (default: the library's)")
    p.add_argument("--restarts", type=int, default=None, help="restarts (default 8)")
    p.add_argument("--tol", type=float, default=None, help="stopping tolerance (default 1e-5)")
    p.add_argument("--samples", type=int, default=None, help="null samples per model (default 16)")
    p.add_argument("--null-model", default="block")
    p.add_argument(
        "--direct",
        action="store_true",
        help="call null_model_frustration directly, not jaxflow's cross-model runner",
    )
    p.add_argument("--dtype", default=None, help="import dtype (default: the library's)")
    p.add_argument("--search-dtype", default=None, help="search dtype, e.g. float32 (default: the library's)")
    p.add_argument("--no-x64", action="store_true", help="leave jax_enable_x64 off (default on, as the CLI)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per subprocess (default 3600)")
    p.add_argument("--no-estimate", action="store_true", help="coverage only")
    p.add_argument(
        "--estimate-exporters",
        default=None,
        help="estimate only these exporters' graphs (coverage still covers --exporters); both give "
        "the same graph for every architecture here, so 'dynamo' halves the run",
    )
    p.add_argument("--resume", default=None, help="a zoo-*.partial.json to go on from (same settings)")
    p.add_argument("--no-goals", action="store_true", help="skip the vgg16/resnet50 goal runs")
    p.add_argument(
        "--no-jax-cache",
        action="store_true",
        help="no persistent JAX compilation cache (CACHE/jax-cache) in the table's runs (goals: never)",
    )
    p.add_argument("--goal-exporter", default="dynamo", help="the export the goals run on")
    p.add_argument("--goals", default=None, help=f"comma-separated goals (default all: {', '.join(GOALS)})")
    p.add_argument("--goals-only", action="store_true", help="only the goal runs, no table")
    p.add_argument("--out", default=str(HERE / "results"), help="results folder")
    p.add_argument("--export-only", action="store_true", help="only write the ONNX files")
    p.add_argument("--sizes", default="224", help="input sides to export with --export-only")
    p.add_argument("--force", action="store_true", help="re-export even if cached")
    p.add_argument("--render", default=None, help="rewrite the table and figure of a saved zoo JSON")
    p.add_argument("--ops", default=None, help="write the op census of the cached exports to this JSON")
    p.add_argument("--threads", type=int, default=1, help="torch threads while exporting")
    p.add_argument(
        "--memory",
        action="store_true",
        help="peak RSS and time of the import and default estimate of every architecture at --size px "
        "(writes zoo-memory-YYYYMMDD.json)",
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-args", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker_main(args.worker, json.loads(args.worker_args), args.worker_result)
        return 0
    cache = Path(args.cache)
    if args.render:
        src = Path(args.render)
        record = json.loads(src.read_text())
        src.with_suffix(".md").write_text(markdown(record))
        print(markdown(record))
        write_csv(record, src.with_suffix(".csv"))
        fig = figure(record, src.with_suffix(".png"))
        print(f"  {src.with_suffix('.md')}\n  {src.with_suffix('.csv')}\n  {fig}")
        return 0
    if args.ops:
        op_census(cache, Path(args.ops))
        return 0
    if args.export_only:
        models = args.models.split(",") if args.models else list(ARCHITECTURES)
        sizes = [int(s) for s in args.sizes.split(",")]
        export_all(cache, models, args.exporters.split(","), sizes, force=args.force, threads=args.threads)
        return 0
    if args.memory:
        args.size, args.timeout = args.size or 224, args.timeout or 3600
        sys.path.insert(0, str(HERE))
        from _machine import write_record

        print(f"wrote {write_record('zoo-memory', run_memory(args), quick=False)}")
        return 0
    quick = args.quick
    unknown = [g for g in (args.goals or "").split(",") if g and g not in GOALS]
    if unknown:
        p.error(f"--goals: unknown {', '.join(unknown)}; the goals are {', '.join(GOALS)}")
    defaults = dict(
        size=32 if quick else 224,
        null_size=32 if quick else 64,
        restarts=2 if quick else 8,
        tol=1e-5,
        samples=3 if quick else 16,
        timeout=600 if quick else 3600,
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if quick:
        args.no_goals = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"zoo-{datetime.date.today().strftime('%Y%m%d')}{'-quick' if quick else ''}"
    partial = out / f"{stem}.partial.json"
    record = run_benchmark(args, partial)
    files = [out / f"{stem}.json", out / f"{stem}.md"]
    files[0].write_text(json.dumps(record, indent=2, default=float))
    files[1].write_text(markdown(record))
    files.append(write_csv(record, out / f"{stem}.csv"))
    fig = figure(record, out / f"{stem}.png")
    if fig:
        files.append(fig)
    partial.unlink(missing_ok=True)
    print(markdown(record))
    for f in files:
        print(f"  {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
