"""The memory guard: sizes and budgets, refusals before allocating, and estimates within 2x of the
peak RSS that runs really reach (measured in fresh processes). The budget is an argument: nothing
reads it from the process's state."""

import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jaxflow import _memory, cli
from jaxflow._checks import InputError
from jaxflow._memory import Budget
from jaxflow.config import parse
from jaxflow.experiments import sweep as sweep_experiment
from jaxflow.experiments.sweep import SweepConfig
from jaxflow.signed import from_onnx
from jaxflow.signed.nullmodels import frustration_bytes


@pytest.mark.parametrize(
    "text, nbytes", [("8G", 8 * 2**30), ("512m", 512 * 2**20), ("1.5GB", 3 * 2**29), ("64GiB", 64 * 2**30),
                     ("1000000", 10**6), (" 2 T ", 2 * 2**40)],
)  # fmt: skip
def test_sizes(text, nbytes):
    assert _memory.parse_size(text, "--max-memory") == nbytes


@pytest.mark.parametrize("text", ["lots", "", "-1G", "0", "8X", "1e9"])
def test_bad_sizes_name_the_option(text):
    with pytest.raises(InputError, match="--max-memory must be a memory size such as 8G"):
        _memory.parse_size(text, "--max-memory")


def test_the_command_line_budget_comes_from_the_option_then_the_environment(monkeypatch):
    monkeypatch.delenv(cli.MEMORY_ENV, raising=False)
    assert cli._budget(None) is None  # the memory available
    monkeypatch.setenv(cli.MEMORY_ENV, "3G")
    assert cli._budget(None) == (3 * 2**30, "JAXFLOW_MAX_MEMORY=3G", "JAXFLOW_MAX_MEMORY")
    assert cli._budget("1K") == (1024, "--max-memory 1K", "--max-memory")


def test_a_budget_is_given_as_bytes_a_budget_or_none_for_what_is_available():
    available = _memory.available_bytes()
    assert 2**20 < available < 2**50
    assert _memory.budget(None).nbytes == pytest.approx(available, rel=0.2)
    assert _memory.budget(2048) == (2048, "max_memory=2048", "max_memory")
    with pytest.raises(InputError, match="max_memory must be a positive integer, got 0"):
        _memory.budget(0)
    with pytest.raises(InputError) as e:
        _memory.check_fits(2048, Budget(1024, "--max-memory 1K", "--max-memory"), "this run", "run.size")
    assert str(e.value) == (
        "this run needs about 2.05 kB of memory (estimate), 1.02 kB allowed by --max-memory 1K; "
        "lower run.size, or raise --max-memory"
    )
    bytes_given = r"1.02 kB allowed by max_memory=1024; lower run.size, or raise max_memory"
    with pytest.raises(InputError, match=bytes_given):
        _memory.check_fits(2048, 1024, "this run", "run.size")
    _memory.check_fits(1024, 1024, "this run", "run.size")  # fits: no error


class _Accelerator:
    platform = "gpu"

    def __init__(self, limit, in_use):
        self.stats = {"bytes_limit": limit, "bytes_in_use": in_use}

    def memory_stats(self):
        return self.stats


def test_on_accelerators_the_budget_is_their_free_memory_together(monkeypatch):
    import jax

    assert _memory.device_bytes() is None  # CPU only: the host's memory
    gib = 2**30
    monkeypatch.setattr(jax, "local_devices", lambda: [_Accelerator(16 * gib, 4 * gib)] * 2)
    assert _memory.device_bytes() == 24 * gib
    assert _memory.budget(None).nbytes == min(24 * gib, _memory.host_bytes())
    monkeypatch.setattr(jax, "local_devices", lambda: [_Accelerator(2 * gib, gib)])
    with pytest.raises(InputError, match=r"needs about 2.15 GB of memory \(estimate\), 1.07 GB available"):
        _memory.check_fits(2 * gib, None, "this run", "run.size")


def test_a_sweep_too_large_is_refused_before_compiling():
    config = parse(SweepConfig, {"network": {"widths": [3, 200000, 200000, 3]}})
    start = time.perf_counter()
    with pytest.raises(InputError, match=r"this sweep needs about \d+ TB .* available; lower sweep.batch"):
        sweep_experiment.run(config)
    assert time.perf_counter() - start < 1  # no compilation


def test_a_huge_declared_input_is_refused_before_the_builder_allocates():
    k = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "k")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10**7, 10**7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 10**7 - 2, 10**7 - 2])
    graph = helper.make_graph([helper.make_node("Conv", ["x", "k"], ["y"])], "huge", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    shape = r"input shape \[1, 3, 10000000, 10000000\]"
    needs = r"\(its largest tensor: the input, .*\) needs about 6 PB of memory"  # 12 B a value
    with pytest.raises(InputError, match=rf"importing the ONNX model with {shape} {needs}"):
        from_onnx(model)


def test_frustration_estimate_follows_its_formula():
    from jaxflow.signed import SignedGraph

    graph = SignedGraph.from_weights([np.ones((4, 3)), -np.ones((2, 4))])
    b = graph.dtype.itemsize
    assert frustration_bytes(graph, restarts=8, samples_in_flight=5) == (
        (2 + 8 * 5) * 20 * b + 4 * 5 * 8 * 9 * b
    )


def test_the_finiteness_check_of_weights_allocates_no_mask():
    """`check_array` finds a NaN or inf by the extremes (NaN propagates), not by a mask of the array
    (a quarter of a float32 block's bytes: 0.1 GB for VGG-16's first dense layer)."""
    import tracemalloc

    from jaxflow._checks import check_array

    w = np.ones((1000, 1000), np.float32)
    tracemalloc.start()
    try:
        check_array(w, "w")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < w.nbytes / 16
    for bad in (np.nan, np.inf, -np.inf):
        w[3, 4] = bad
        with pytest.raises(InputError, match=r"w contains 1 non-finite value\(s\)"):
            check_array(w, "w")


# --------------------------------------------------------------- estimate vs. peak RSS

MEASURE = """
import os, sys
import jax
jax.config.update("jax_enable_x64", True)
{setup}
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
base = rss()
{run}
peak = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(peak - base, estimate)  # VmHWM: this image's peak (ru_maxrss keeps the forking parent's)
"""
SWEEP = (
    """
from jaxflow.config import parse
from jaxflow.experiments.sweep import SweepConfig, run
from jaxflow.linear.sweep import sweep_bytes
table = {"flow": {"t1": 5.0, "max_steps": 8, "saves": 11}, "sweep": {"inits": 8, "chunk": 8, "sort": False}}
config = parse(SweepConfig, {"network": {"widths": [3, 1000, 1000, 3]}, **table})
""",
    """
run(config)
estimate = sweep_bytes(config.network, config.flow, config.sweep, jax.device_count())
""",
)
IMPORT = (
    """
import jaxflow.signed._onnx, onnx.reference
from jaxflow.signed import from_onnx
messages = []
jaxflow.signed._onnx.check_fits = lambda estimate, budget, what, lower: messages.append(estimate)
""",
    """
from_onnx(sys.argv[1])
estimate, = messages
""",
)


def _peak_and_estimate(case: tuple[str, str], *args) -> tuple[int, int]:
    """The peak RSS a run adds to its process's (after `case`'s setup), and its estimate."""
    setup, run = case
    out = subprocess.run(
        [sys.executable, "-c", MEASURE.format(setup=setup, run=run), *map(str, args)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(map(int, out.stdout.split()))


def _cnn(size: int, channels: int = 16) -> onnx.ModelProto:
    """Conv-ReLU-Conv-ReLU-MaxPool-Flatten-Gemm on a `size`×`size` RGB image."""
    rng = np.random.default_rng(0)
    dims = {
        "k1": (channels, 3, 3, 3),
        "k2": (channels, channels, 3, 3),
        "w": (10, channels * (size // 2) ** 2),
    }
    inits = [numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), n) for n, d in dims.items()]
    same = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "k1"], ["h1"], **same), helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Conv", ["a1", "k2"], ["h2"], **same), helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("MaxPool", ["a2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]  # fmt: skip
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph(nodes, "cnn", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dense(width: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (width, width)), ("w2", (10, width)))]  # fmt: skip
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2"], ["y"], transB=1)]  # fmt: skip
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])
    return helper.make_model(
        helper.make_graph(nodes, "mlp", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )


def test_sweep_estimate_is_within_2x_of_the_peak_rss():
    measured, estimate = _peak_and_estimate(SWEEP)
    assert 0.5 < estimate / measured < 2, (measured, estimate)


@pytest.mark.parametrize("name", ["cnn512", "dense4096"])
def test_import_estimate_is_within_2x_of_the_peak_rss(tmp_path, name):
    path = tmp_path / f"{name}.onnx"
    onnx.save(_cnn(512) if name == "cnn512" else _dense(4096), path)
    measured, estimate = _peak_and_estimate(IMPORT, path)
    assert 0.5 < estimate / measured < 2, (measured, estimate)


def test_import_holds_at_most_three_copies_of_the_weights(tmp_path):
    """A weights-dominated import peaks at the parsed model, the array read from it and its copy
    on the device: the checker's own parse of the file is over before ours, and the copy to the
    device is made once (it was 4.2 copies)."""
    path = tmp_path / "dense.onnx"
    onnx.save(_dense(6144), path)  # 151 MB of float32 weights
    measured, _ = _peak_and_estimate(IMPORT, path)
    assert measured < 3.4 * path.stat().st_size, measured / path.stat().st_size


NULLS = (
    "",
    """
import numpy as np
from jaxflow.signed import SignedGraph, null_model_frustration
from jaxflow.signed.nullmodels import frustration_bytes
rng = np.random.default_rng(0)
widths = (64, 2048, 2048, 2048, 64)  # 8.6e6 edges, float32: the weights outweigh XLA's own memory
weights = [rng.standard_normal((b, a), np.float32) for a, b in zip(widths, widths[1:])]
graph = SignedGraph.from_weights(weights)
null_model_frustration(graph, jax.random.key(0), samples=2, chunk_size=2, restarts=8, tol=1e-3, bound=False)
estimate = frustration_bytes(graph, 8, 2 * jax.device_count())
""",
)


def test_null_model_estimate_is_within_2x_of_the_peak_rss():
    measured, estimate = _peak_and_estimate(NULLS)
    assert 0.5 < estimate / measured < 2, (measured, estimate)
