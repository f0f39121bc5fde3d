"""`jaxflow frustration MODEL_FILE`: exact values against brute force, files written, clear errors."""

import itertools
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from jaxflow._checks import InputError
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
    config.write_text('method = "exact"\nnull_samples = 6\nseed = 3\nrobustness = false\n')
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


def test_cli_reads_onnx_without_per_layer_and_names_the_output_head(tmp_path, capsys):
    rng = np.random.default_rng(8)
    w1, w2 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    inits = [numpy_helper.from_array(w.astype(np.float32), n) for w, n in ((w1, "w1"), (w2, "w2"))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h"], "fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], "relu"),
        helper.make_node("Gemm", ["r", "w2"], ["logits"], "fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], "probs", axis=1),
    ]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in (("x", [1, 3]), ("y", [1, 2]))]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", io[:1], io[1:], inits)), tmp_path / "m.onnx")
    config = tmp_path / "c.toml"
    config.write_text('method = "exact"\nnull_samples = 4\nper_layer = false\nrobustness = false\n')
    out = tmp_path / "out"
    assert main(["frustration", str(tmp_path / "m.onnx"), "--config", str(config), "--out", str(out)]) == 0
    result = json.loads((out / "frustration.json").read_text())
    ws = [w1.astype(np.float32).astype(float), w2.astype(np.float32).astype(float)]
    assert result["frustration"]["value"] == pytest.approx(brute_force(ws), rel=1e-6)  # float32 weights
    assert result["layers"] == [] and not (out / "frustration_layers.png").exists()
    assert result["output_head"] == "Softmax 'probs'"
    assert "output head set aside: Softmax 'probs' (the graph ends at its input)" in capsys.readouterr().out


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


# ------------------------------------------------------------------ a study across models

SMALL = 'method = "layerwise"\nrestarts = 4\nnull_samples = 3\nseed = 1\n'


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two working models of one shape (compiled once) and a broken file, beside a config."""
    folder = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(9)
    for name in ("deep", "other"):
        ws = [rng.normal(size=(6, 4)), rng.normal(size=(6, 6)), rng.normal(size=(2, 6))]
        acts = np.array(["Relu", "Relu", "identity"])
        np.savez(folder / f"{name}.npz", W_1=ws[0], W_2=ws[1], W_3=ws[2], activations=acts)
    (folder / "broken.onnx").write_bytes(b"this is not an ONNX file")
    (folder / "c.toml").write_text(SMALL)
    return folder


def _read_csv(path):
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_models_table_figure_and_failure(zoo, tmp_path, capsys):
    out = tmp_path / "out"
    models = [str(zoo / n) for n in ("deep.npz", "broken.onnx", "other.npz")]
    status = main(["frustration", *models, "--config", str(zoo / "c.toml"), "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 2  # a model failed: documented exit status, after every other model ran
    assert "1 of 3 models failed" in captured.err and "Traceback" not in captured.err
    table = json.loads((out / "models.json").read_text())
    rows = {r["model"]: r for r in table["models"]}
    assert list(rows) == ["deep", "broken", "other"] and table["failed"] == 1
    assert "broken.onnx" in rows["broken"]["error"]  # the importer's message, naming the file
    assert rows["broken"]["normalized"] is None and not (out / "broken").exists()
    for name in ("deep", "other"):
        r = rows[name]
        assert r["error"] == "" and r["null_samples"] == 3 and len(r["null_normalized"]) == 3
        # each model's own results, as the single-model command writes them
        own = json.loads((out / name / "frustration.json").read_text())
        fr = own["frustration"]
        assert (r["normalized"], r["null_mean"], r["null_std"], r["zscore"], r["pvalue"]) == (
            fr["normalized"], fr["null_mean"], fr["null_std"], fr["zscore"], fr["pvalue"]
        )  # fmt: skip
        # the proven interval [lower_bound, normalized] and its relative gap
        assert 0 < r["lower_bound"] == fr["lower_bound"] <= r["normalized"]
        assert r["gap"] == pytest.approx(1 - r["lower_bound"] / r["normalized"], rel=1e-9, abs=1e-12)
        # the z-score of the command's own search (one rung), then under the independent estimator
        runs = fr["robustness"]["runs"]
        assert [(x["method"], x["rung"], x["restarts"], x["sweeps"], x["samples"]) for x in runs] == [
            ("layerwise", 0, 4, 0, 3), ("anneal", None, 64, None, 3)
        ]  # fmt: skip
        # the rung holds the search's ½(Σ|a| − sᵀAs), the value δ summed block by block: ulps apart
        assert runs[0]["zscore"] == pytest.approx(fr["zscore"], rel=1e-9, abs=1e-9)
        assert all(x["significant"] == (abs(x["zscore"]) >= 2) for x in runs)
        verdicts = {("below" if x["zscore"] < 0 else "above") if x["significant"] else "none" for x in runs}
        agree = len(verdicts) == 1  # significantly below, above, or neither: an insignificant sign is noise
        assert r["z_agree"] is fr["robustness"]["agree"] is agree
        assert (r["nodes"], r["edges"], r["layers"]) == (
            own["num_nodes"],
            own["num_edges"],
            own["num_layers"],
        )
        for f in ("frustration_null.png", "frustration_layers.png", "frustration_layers.csv"):
            assert (out / name / f).stat().st_size > 0, f
    assert rows["deep"]["edges"] == 6 * 4 + 6 * 6 + 2 * 6
    # CSV: the same numbers exactly; Markdown: the same numbers rounded
    csv_rows = _read_csv(out / "models.csv")
    assert [c["model"] for c in csv_rows] == ["deep", "broken", "other"]
    numeric = ("normalized", "null_mean", "null_std", "zscore", "pvalue", "seconds")
    for c in csv_rows:
        r = rows[c["model"]]
        assert c["error"] == r["error"]
        for k in numeric:
            assert (c[k] == "" and r[k] is None) or float(c[k]) == r[k], k
        for k in ("nodes", "edges", "restarts", "null_samples"):
            assert (c[k] == "" and r[k] is None) or int(c[k]) == r[k], k
    md = (out / "models.md").read_text().splitlines()
    assert md[0].startswith("| model |") and len(md) == 2 + 3
    for line in md[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        r = rows[cells[0]]
        if r["error"]:
            assert cells[-1] == r["error"] and cells[4] == ""
            continue
        lower, value = (float(v) for v in cells[4].strip("[]").split(","))
        assert value == pytest.approx(r["normalized"], abs=5e-5)
        assert lower == pytest.approx(r["lower_bound"], abs=5e-5)
        assert float(cells[5].rstrip("%")) == pytest.approx(100 * r["gap"], abs=0.05)
        mean, std = cells[6].split("±")
        assert float(mean) == pytest.approx(r["null_mean"], abs=5e-5)
        assert float(std) == pytest.approx(r["null_std"], abs=5e-5)
        assert float(cells[7]) == pytest.approx(r["zscore"], abs=5e-3)
        assert cells[9] == {True: "yes", False: "no"}[r["z_agree"]]
        assert int(cells[3].replace(",", "")) == r["edges"]
    assert (out / "models.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| deep |" in captured.out

    # the single-model command on one of them gives the same numbers as its row
    single = tmp_path / "single"
    assert main(["frustration", models[0], "--config", str(zoo / "c.toml"), "--out", str(single)]) == 0
    alone = json.loads((single / "frustration.json").read_text())["frustration"]
    assert alone["normalized"] == rows["deep"]["normalized"] and alone["zscore"] == rows["deep"]["zscore"]
    layer_rows = _read_csv(single / "frustration_layers.csv")
    # one row per learned block (the three weight matrices), numbered as on the plot's x axis
    assert [int(c["index"]) for c in layer_rows] == [1, 2, 3]
    assert [(c["source"], c["destination"]) for c in layer_rows] == [
        ("input", "layer1"), ("layer1", "layer2"), ("layer2", "layer3")
    ]  # fmt: skip
    layers = json.loads((single / "frustration.json").read_text())["layers"]
    for c, lay in zip(layer_rows, layers):
        for k in ("normalized", "null_mean", "null_std", "zscore"):
            assert float(c[k]) == lay[k], k


def test_models_from_config_relative_paths(zoo, tmp_path, capsys):
    config = zoo / "list.toml"
    config.write_text(SMALL + 'models = ["deep.npz", {file = "other.npz", name = "three layers"}]\n')
    out = tmp_path / "out"
    assert main(["frustration", "--config", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    rows = _read_csv(out / "models.csv")
    assert [r["model"] for r in rows] == ["deep", "three layers"] and all(r["error"] == "" for r in rows)
    assert (out / "three_layers" / "frustration.json").exists()  # the folder name is made path-safe
    # the same file twice gets two names; without models anywhere the command says so
    assert main(["frustration", str(zoo / "deep.npz"), str(zoo / "deep.npz"), "--config", str(zoo / "c.toml"),
                 "--out", str(tmp_path / "twice")]) == 0  # fmt: skip
    assert [r["model"] for r in _read_csv(tmp_path / "twice" / "models.csv")] == ["deep", "deep-2"]
    capsys.readouterr()
    assert main(["frustration", "--config", str(zoo / "c.toml")]) == 2
    assert "no model given" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["1,3,x,8", "3", "1,0,8,8", "", "1;3;8;8", "-1,3"])
def test_bad_input_shape_is_one_line(npz_model, tmp_path, text, capsys):
    path, _ = npz_model
    assert main(["frustration", str(path), f"--input-shape={text}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--input-shape must be the full input shape" in err, err


def test_input_shape_reaches_the_importer(zoo, tmp_path, monkeypatch, capsys):
    import jaxflow.experiments.frustration as frustration

    seen = []

    def spy(path, **kwargs):  # records what the importer is asked for, then fails the model
        seen.append(kwargs.get("input_shape"))
        raise InputError(f"{path}: stop here")  # as the importer does for a bad file

    monkeypatch.setattr(frustration, "load_graph", spy)
    config = zoo / "shaped.toml"  # (the spy needs no files)
    config.write_text(
        SMALL
        + 'input_shape = [1, 3]\nmodels = ["x.onnx", {file = "y.onnx", input_shape = [1, 4]}, "z.npz"]\n'
    )
    assert main(["frustration", "--config", str(config), "--out", str(tmp_path / "a")]) == 2
    assert seen == [(1, 3), (1, 4), None]  # an npz model's shapes are fixed by its arrays
    seen.clear()  # the command line's shape applies to every ONNX model
    assert (
        main(["frustration", "--config", str(config), "--out", str(tmp_path / "b"), "--input-shape", "1, 5"])
        == 2
    )
    assert seen == [(1, 5), (1, 5), None]
    seen.clear()  # one model: the shape given, or none (the importer then reads the file's own)
    path = str(zoo / "m.onnx")
    assert main(["frustration", path, "--out", str(tmp_path / "c"), "--input-shape", "[1,4]"]) == 2
    assert main(["frustration", path, "--out", str(tmp_path / "c")]) == 2
    assert seen == [(1, 4), None]
    assert "stop here" in capsys.readouterr().err


class _TimedLog:
    """A stderr that is a file, not a terminal: each written line with the time it came."""

    def __init__(self):
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        import time

        self.lines += [(time.monotonic(), line) for line in text.splitlines() if line.strip()]
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_every_stage_shows_progress_in_a_log(npz_model, tmp_path, monkeypatch):
    """With stderr a file, each stage of the default study (the network's ladder rung by rung,
    the bound, the null models, the robustness run, per layer) writes lines, and the log never
    goes quiet for longer than its interval, compilation included (a heartbeat rewrites the
    current stage). The interval is 1 s here instead of 10 s, to see gaps in a small run."""
    import jaxflow._progress as progress

    path, _ = npz_model
    log = _TimedLog()
    monkeypatch.setattr(progress, "LOG_INTERVAL", 1.0)
    monkeypatch.setattr("sys.stderr", log)
    config = tmp_path / "c.toml"
    config.write_text("null_samples = 8\n")
    assert main(["frustration", str(path), "--config", str(config), "--out", str(tmp_path / "out")]) == 0
    text = "\n".join(line for _, line in log.lines)
    for stage in ("rung 0 (", "rung 1 (", "proving a lower bound", "null models: 8 of 8 done",
                  "robustness: null models", "per layer"):  # fmt: skip
        assert stage in text
    times = [t for t, _ in log.lines]
    # 1 s between heartbeats, plus what a busy 2-core machine may delay a thread by
    assert max(np.diff(times)) < 3.0
