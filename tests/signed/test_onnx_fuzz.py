"""Fuzzing the ONNX import: seeded mutations of small models built with `onnx.helper` (attributes,
declared dims, initializers' shapes, dtypes and values, dropped and rewired nodes, op types, the
opset, and shape blow-ups: huge pads, strides, dilations, kernel shapes, Reshape targets, Resize
scales and input dims). Each mutant imports or raises `InputError` within `LIMIT` seconds: never
another exception, a hang or a crash (the batch runs in a process of its own, with a memory budget
of `BUDGET`, which no mutant may exceed by more than its import's own arrays)."""

import collections
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MUTANTS = 240
LIMIT = 5.0  # seconds per mutant
BUDGET = 2**30  # the max_memory of each import
HUGE = 10**6
node = helper.make_node


def _init(rng, name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def _models(rng) -> list[onnx.ModelProto]:
    """Small models as torch exports them: a CNN, an MLP with a reshape, a residual block with a gate."""
    f = TensorProto.FLOAT
    x4 = helper.make_tensor_value_info("x", f, [1, 2, 6, 6])
    cnn = helper.make_graph(
        [node("Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1], kernel_shape=[3, 3]),
         node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-5),
         node("Relu", ["n"], ["r"]),
         node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
         node("Flatten", ["p"], ["fl"], axis=1),
         node("Gemm", ["fl", "w", "wb"], ["y"], transB=1, alpha=1.0)],
        "cnn", [x4], [helper.make_tensor_value_info("y", f, [1, 5])],
        [_init(rng, "k", 4, 2, 3, 3), _init(rng, "kb", 4), _init(rng, "s", 4), _init(rng, "b", 4),
         _init(rng, "m", 4), numpy_helper.from_array(np.ones(4, np.float32), "v"), _init(rng, "w", 5, 36),
         _init(rng, "wb", 5)],
    )  # fmt: skip
    mlp = helper.make_graph(
        [node("Reshape", ["x", "shape"], ["flat"]),
         node("MatMul", ["flat", "w1"], ["h"]), node("Add", ["h", "b1"], ["a"]),
         node("Sigmoid", ["a"], ["g"]), node("Mul", ["a", "g"], ["silu"]),
         node("MatMul", ["silu", "w2"], ["y"])],
        "mlp", [helper.make_tensor_value_info("x", f, [1, 2, 3])],
        [helper.make_tensor_value_info("y", f, [1, 4])],
        [numpy_helper.from_array(np.array([1, 6], np.int64), "shape"), _init(rng, "w1", 6, 8),
         _init(rng, "b1", 8), _init(rng, "w2", 8, 4)],
    )  # fmt: skip
    res = helper.make_graph(
        [node("Conv", ["x", "k1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
         node("Conv", ["r1", "k2"], ["c2"], pads=[1, 1, 1, 1], group=2), node("Add", ["c2", "x"], ["s"]),
         node("Relu", ["s"], ["r2"]), node("Concat", ["r2", "x"], ["cat"], axis=1),
         node("GlobalAveragePool", ["cat"], ["gp"]), node("Flatten", ["gp"], ["fl"]),
         node("Gemm", ["fl", "w"], ["y"], transB=1)],
        "res", [x4], [helper.make_tensor_value_info("y", f, [1, 3])],
        [_init(rng, "k1", 2, 2, 3, 3), _init(rng, "k2", 2, 1, 3, 3),
         _init(rng, "w", 3, 4)],
    )  # fmt: skip
    up = helper.make_graph(
        [node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1], dilations=[1, 1], strides=[1, 1]),
         node("Resize", ["c", "", "scales"], ["u"], mode="nearest"), node("Relu", ["u"], ["r"]),
         node("GlobalAveragePool", ["r"], ["gp"]), node("Flatten", ["gp"], ["fl"]),
         node("Gemm", ["fl", "w"], ["y"], transB=1)],
        "up", [x4], [helper.make_tensor_value_info("y", f, [1, 3])],
        [_init(rng, "k", 4, 2, 3, 3), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
         _init(rng, "w", 3, 4)],
    )  # fmt: skip
    return [helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]) for g in (cnn, mlp, res, up)]


OPS = ["Relu", "Conv", "Gemm", "MatMul", "Add", "Mul", "Sigmoid", "Reshape", "Flatten", "MaxPool",
       "AveragePool", "Concat", "Transpose", "Identity", "Softmax", "Tanh", "Einsum", "LSTM",
       "Slice"]  # fmt: skip
T = TensorProto
DTYPES = [T.UNDEFINED, T.INT64, T.DOUBLE, T.FLOAT16, T.STRING, T.BOOL, T.INT8, T.COMPLEX64, T.BFLOAT16, 99]
DIMS = [0, -1, 1, 2, 3, 7, 10**9, 2**40]


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _values(t) -> np.ndarray | None:
    """A writable copy of an initializer's values, or None when earlier mutations broke it."""
    try:
        return numpy_helper.to_array(t).copy()
    except Exception:  # noqa: BLE001 - a mutated dtype or dims fails in several ways
        return None


def blow_up(rng, model: onnx.ModelProto) -> str:
    """Make one of `model`'s shapes huge in place: a window attribute, a Reshape target, Resize
    scales or an input dimension (`HUGE`); what it did."""
    g = model.graph
    windows = [(n, a) for n in g.node for a in n.attribute
               if a.name in ("pads", "strides", "dilations", "kernel_shape")]  # fmt: skip
    targets = {i for n in g.node if n.op_type in ("Reshape", "Resize") for i in n.input[1:]}
    stored = [t for t in g.initializer if t.name in targets and len(t.dims) == 1 and t.dims[0] > 1
              and t.data_type in (T.INT64, T.FLOAT)]  # fmt: skip
    kind = _pick(rng, ["window", "target", "input dims"])
    if kind == "window" and windows:
        n, a = _pick(rng, windows)
        a.ints[int(rng.integers(len(a.ints)))] = HUGE
        return f"huge {n.op_type}.{a.name}"
    if kind == "target" and stored:
        t = _pick(rng, stored)
        a = _values(t)
        if a is None or a.size < 2:
            return "unchanged"
        a.flat[int(rng.integers(1, a.size))] = HUGE
        t.CopyFrom(numpy_helper.from_array(a, t.name))
        return f"huge {t.name}"
    dims = g.input[0].type.tensor_type.shape.dim
    dims[int(rng.integers(1, len(dims)))].dim_value = HUGE
    return "huge input dims"


def _mutate(rng, model: onnx.ModelProto) -> str:
    """Apply one random mutation to `model` in place; what it did."""
    g = model.graph
    kind = _pick(rng, ["attribute", "drop attribute", "input dims", "initializer dims", "dtype", "values",
                       "drop node", "rewire", "op type", "opset", "input dtype", "output dims",
                       "blow up"])  # fmt: skip
    if kind == "blow up":
        return blow_up(rng, model)
    n = _pick(rng, g.node)
    if kind == "attribute" and n.attribute:
        a = _pick(rng, n.attribute)
        if a.type == onnx.AttributeProto.INTS:
            a.ints[:] = [int(_pick(rng, [-2, 0, 1, 2, 5, 10**6])) for _ in range(int(rng.integers(0, 6)))]
        elif a.type == onnx.AttributeProto.INT:
            a.i = int(_pick(rng, [-3, -1, 0, 2, 4, 10**6]))
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = float(_pick(rng, [np.nan, np.inf, -1.0, 0.0, 1e30]))
        return f"{kind} {n.op_type}.{a.name}"
    if kind == "drop attribute" and n.attribute:
        a = _pick(rng, n.attribute)
        n.attribute.remove(a)
        return f"{kind} {n.op_type}.{a.name}"
    if kind == "input dims":
        dims = g.input[0].type.tensor_type.shape.dim
        d = _pick(rng, dims)
        if rng.random() < 0.2:
            d.dim_param = "N"
        else:
            d.dim_value = int(_pick(rng, DIMS))
        return kind
    if kind == "output dims":
        g.output[0].type.tensor_type.shape.dim[-1].dim_value = int(_pick(rng, DIMS))
        return kind
    if kind in ("initializer dims", "dtype", "values") and g.initializer:
        t = _pick(rng, g.initializer)
        if kind == "initializer dims":
            t.dims[:] = [int(_pick(rng, DIMS[:6])) for _ in range(int(rng.integers(0, 5)))]
        elif kind == "dtype":
            t.data_type = int(_pick(rng, DTYPES))
        else:
            a = _values(t)
            if a is None:
                return "unchanged"
            if a.dtype.kind == "f" and a.size:
                a.flat[int(rng.integers(a.size))] = _pick(rng, [np.nan, np.inf, -np.inf, 1e38])
            else:
                a = a * 0 - 7 if a.size else a
            t.CopyFrom(numpy_helper.from_array(a, t.name))
        return f"{kind} {t.name}"
    if kind == "drop node":
        g.node.remove(n)
        return f"{kind} {n.op_type}"
    if kind == "rewire" and n.input:
        names = (
            [i.name for i in g.input]
            + [t.name for t in g.initializer]
            + [o for m in g.node for o in m.output]
        )
        i = int(rng.integers(len(n.input)))
        n.input[i] = _pick(rng, names + ["", "nowhere"])
        return f"{kind} {n.op_type}"
    if kind == "op type":
        n.op_type = _pick(rng, OPS)
        return f"{kind} {n.op_type}"
    if kind == "opset":
        model.opset_import[0].version = int(_pick(rng, [1, 6, 9, 11, 13, 18, 21, 23, 99]))
        return kind
    if kind == "input dtype":
        g.input[0].type.tensor_type.elem_type = int(_pick(rng, DTYPES[1:]))
        return kind
    return "unchanged"


def _timeout(signum, frame):
    raise TimeoutError(f"a mutant took more than {LIMIT} s")


def run(count: int = MUTANTS, seed: int = 0) -> dict:
    """Import `count` mutants (one to three mutations each); counts, the unexpected failures and
    the peak RSS (MB) of the batch."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxflow._checks import InputError
    from jaxflow.signed import from_onnx

    rng = np.random.default_rng(seed)
    bases = _models(rng)
    for m in bases:  # the unmutated models import
        from_onnx(m, max_memory=BUDGET)
    bases_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    signal.signal(signal.SIGALRM, _timeout)
    outcome, bad, slowest = collections.Counter(), [], 0.0
    for case in range(count):
        model = onnx.ModelProto()
        model.CopyFrom(bases[case % len(bases)])
        what = [_mutate(rng, model) for _ in range(int(rng.integers(1, 4)))]
        start = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, LIMIT)
        try:
            from_onnx(model, max_memory=BUDGET)
            outcome["imported"] += 1
        except InputError:
            outcome["refused"] += 1
        except Exception as e:  # noqa: BLE001 - what the test reports
            bad.append(f"case {case} ({'; '.join(what)}): {type(e).__name__}: {str(e)[:300]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**outcome, "other": bad, "slowest": slowest, "peak_mb": peak, "bases_mb": bases_mb}


def test_onnx_mutants_import_or_give_an_input_error():
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_onnx_fuzz as f; "
    )
    code += "print(json.dumps(f.run()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]  # no crash
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["other"] == [], "\n".join(result["other"])
    assert result["imported"] + result["refused"] == MUTANTS and result["imported"] > 0
    assert result["slowest"] < LIMIT
    assert result["peak_mb"] - result["bases_mb"] < 1024  # no mutant allocated past the budget
    print(f"{MUTANTS} mutants: {result['imported']} imported, {result['refused']} refused")
