"""`--dry-run` and the `"preview"` of a run: the graph's size, the estimator, memory per stage and a
time range, without running the search; the same numbers at the top of the run's JSON."""

import json

import numpy as np
import pytest

from jaxflow.cli import main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dry")
    rng = np.random.default_rng(3)
    ws = [rng.normal(size=(6, 4)), rng.normal(size=(3, 6))]
    np.savez(folder / "tiny.npz", W_1=ws[0], W_2=ws[1], activations=np.array(["Relu", "identity"]))
    config = 'method = "layerwise"\nrestarts = 4\nnull_samples = 3\nrobustness = false\nper_layer = false\n'
    (folder / "c.toml").write_text(config)
    (folder / "study.toml").write_text(
        'name = "tiny"\nmodel_file = "tiny.npz"\n[frustration]\nnull_samples = 3\n'
    )
    return folder


def test_dry_run_prints_the_preview_and_writes_nothing(model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--quiet", "frustration", str(model / "tiny.npz"), "--out", str(out), "--dry-run"]) == 0
    assert not out.exists()
    text = capsys.readouterr().out
    shown = ("3 layers, 13 nodes, 42 edges", "estimator 'ladder'", "rungs at the least", "memory: network")
    for words in (*shown, "time network:", "time total:", "time bound: not estimated"):
        assert words in text


def test_study_dry_run_writes_nothing(model, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["--quiet", "study", str(model / "study.toml"), "--out", str(out), "--dry-run"]) == 0
    assert not out.exists()
    assert "13 nodes, 42 edges" in capsys.readouterr().out


def test_a_run_has_the_preview_at_the_top(model, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--quiet", "frustration", str(model / "tiny.npz"), "--config", str(model / "c.toml")]
    assert main([*args, "--out", str(out)]) == 0
    result = json.loads((out / "frustration.json").read_text())
    assert next(iter(result)) == "preview"
    p = result["preview"]
    assert p["graph"]["num_edges"] == result["num_edges"] == 42
    assert p["estimator"] == {"name": "layerwise", "restarts": 4, "in_flight": 4}
    assert set(p["memory"]) == {"network", "null_models", "budget"}
    least, most = p["time"]["total"]
    assert 0 < least <= most
    assert p["time"]["per_null"] == p["time"]["network"]
