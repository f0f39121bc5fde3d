"""`jaxflow frustration MODEL_FILE`: exact values against brute force, files written, clear errors."""

import itertools
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jaxflow.cli import main


def brute_force(weights) -> float:
    """`min_s Σ_{s_p a_pq s_q < 0} |a_pq|` over all gauges of the layered graph of `weights`."""
    widths = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    offsets = np.cumsum([0, *widths])
    edges = [
        (offsets[i + 1] + p, offsets[i] + q, w[p, q])
        for i, w in enumerate(weights)
        for p, q in itertools.product(*map(range, w.shape))
    ]
    gauges = np.array(list(itertools.product((-1.0, 1.0), repeat=offsets[-1])))
    return min(sum(abs(a) for p, q, a in edges if s[p] * a * s[q] < 0) for s in gauges[: len(gauges) // 2])


@pytest.fixture(scope="module")
def npz_model(tmp_path_factory):
    rng = np.random.default_rng(7)
    ws = [rng.normal(size=(5, 4)), rng.normal(size=(3, 5))]
    path = tmp_path_factory.mktemp("model") / "tiny.npz"
    np.savez(path, W_1=ws[0], W_2=ws[1], b_1=np.zeros(5), activations=np.array(["Relu", "identity"]))
    return path, ws


def test_cli_exact_frustration_matches_brute_force(npz_model, tmp_path, capsys):
    path, ws = npz_model
    config = tmp_path / "c.toml"
    config.write_text('method = "exact"\nnull_samples = 6\nseed = 3\n')
    assert main(["frustration", str(path), "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "frustration.json").read_text())
    fr, total = result["frustration"], sum(np.abs(w).sum() for w in ws)
    assert fr["value"] == pytest.approx(brute_force(ws), rel=1e-9)
    assert fr["total"] == pytest.approx(total, rel=1e-12)
    assert fr["normalized"] == pytest.approx(fr["value"] / total, rel=1e-12)
    null = np.array(fr["null_normalized"])
    # a random gauge frustrates half the weight on average, so every optimum is <= 1/2
    assert null.shape == (6,) and np.all((null >= 0) & (null <= 0.5))
    assert fr["zscore"] == pytest.approx((fr["normalized"] - null.mean()) / null.std(ddof=1), rel=1e-9)
    # per layer: the frustrated share of each weight matrix under the best gauge; the shares add up
    layers = result["layers"]
    assert [(lay["source"], lay["destination"]) for lay in layers] == [
        ("input", "layer1"),
        ("layer1", "layer2"),
    ]
    shares = [lay["normalized"] * np.abs(w).sum() for lay, w in zip(layers, ws)]
    assert sum(shares) == pytest.approx(fr["value"], rel=1e-9)
    assert result["num_edges"] == 4 * 5 + 5 * 3 and result["config"]["method"] == "exact"
    for name in ("frustration_null.png", "frustration_layers.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "overall" in shown and "z =" in shown and "layer1 -> layer2" in shown


def test_cli_reads_onnx_without_per_layer(tmp_path):
    rng = np.random.default_rng(8)
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    inits = [numpy_helper.from_array(w.astype(np.float32), n) for w, n in ((w1, "w1"), (w2, "w2"))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], "fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], "relu"),
        helper.make_node("Gemm", ["r", "w2"], ["y"], "fc2", transB=1),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("x", [1, 3]), ("y", [1, 2]))]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits)), tmp_path / "m.onnx")
    config = tmp_path / "c.toml"
    config.write_text('method = "exact"\nnull_samples = 4\nper_layer = false\n')
    out = tmp_path / "out"
    assert main(["frustration", str(tmp_path / "m.onnx"), "--config", str(config), "--out", str(out)]) == 0
    result = json.loads((out / "frustration.json").read_text())
    ws = [w1.astype(np.float32).astype(float), w2.astype(np.float32).astype(float)]
    assert result["frustration"]["value"] == pytest.approx(brute_force(ws), rel=1e-6)  # float32 weights
    assert result["layers"] == [] and not (out / "frustration_layers.png").exists()


def test_cli_errors_are_one_line(npz_model, tmp_path, capsys):
    path, _ = npz_model
    assert main(["frustration", str(tmp_path / "missing.npz")]) == 2
    assert "model file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("restarts = 0\n")
    assert main(["frustration", str(path), "--config", str(bad)]) == 2
    assert "config key 'restarts': must be a positive integer" in capsys.readouterr().err
    bad.write_text("sample = 3\n")
    assert main(["frustration", str(path), "--config", str(bad)]) == 2
    assert "config key 'sample': unknown key" in capsys.readouterr().err
