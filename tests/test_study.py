import json
from pathlib import Path

import numpy as np
import pytest

from jaxflow._checks import InputError
from jaxflow.cli import main
from jaxflow.experiments.study import FILES

CONFIGS = Path(__file__).parent / "configs"


@pytest.mark.parametrize("config, source", [("study_tiny.toml", "model"), ("study_tiny_dln.toml", "dln")])
def test_study_writes_every_promised_file(config, source, tmp_path, capsys):
    assert main(["study", str(CONFIGS / config), "--out", str(tmp_path)]) == 0
    print(capsys.readouterr().out)
    for name in FILES[source]:
        assert (tmp_path / name).stat().st_size > 0, name
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((tmp_path / "study.json").read_text())
    assert result["source"] == source and result["files"] == list(FILES[source])
    if source == "model":
        fr, mono = result["frustration"], result["monotonicity"]
        assert 0 <= fr["normalized"] <= 0.5  # the all-plus gauge or its flip frustrates <= half the mass
        assert len(fr["null_normalized"]) == 3 and 0 < fr["pvalue"] <= 1
        assert 0 < fr["lower_bound"] <= fr["normalized"]  # a proven bound, never above the value
        runs = fr["robustness"]["runs"]  # each rung of the study's ladder, then the independent estimator
        assert [x["method"] for x in runs] == ["ladder"] * (len(runs) - 1) + ["layerwise"]
        assert runs[-2]["zscore"] == pytest.approx(fr["zscore"], rel=1e-9, abs=1e-9)  # the ladder's last rung
        assert [x["rung"] for x in runs[:-1]] == list(range(len(runs) - 1))
        assert isinstance(fr["robustness"]["agree"], bool)
        assert [c["epoch"] for c in result["training"]] == [0, 1, 2]
        assert 0 <= mono["score"] <= 1 and len(mono["null_scores"]) == 3
        # 10 outputs, at most `lines` (64) rows: every row is taken, the scores are exact
        assert (
            mono["score_error"] == 0
            and mono["null_score_errors"] == mono["random_orthant_errors"] == [0.0] * 3
        )
        assert len(mono["active"]["normalized"]) == 4
        assert np.shape(mono["perturbation"]["null_coordinate"]) == (3, 2)  # null samples × sizes
        agreement = np.asarray(mono["active"]["agreement"])
        np.testing.assert_allclose(np.diag(agreement), 1.0, rtol=1e-12)  # a gauge agrees with itself
    else:
        dln = result["dln"]
        assert np.shape(dln["frustration"]) == np.shape(dln["loss"]) == (2, 4)
        loss = np.asarray(dln["loss"])
        assert np.all(np.diff(loss, axis=1) <= 1e-9)  # gradient flow never increases the loss


def test_study_of_an_npz_file(tmp_path):
    rng = np.random.default_rng(0)
    ws = {"W_1": rng.normal(size=(6, 5)), "W_2": rng.normal(size=(3, 6))}
    np.savez(tmp_path / "net.npz", **ws, activations=np.array(["Relu", "identity"]))
    (tmp_path / "study.toml").write_text((CONFIGS / "study_tiny_npz.toml").read_text())
    assert main(["study", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "study.json").read_text())
    assert result["files"] == list(FILES["model_file"])
    for name in FILES["model_file"]:
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    mono = result["monotonicity"]
    assert 0 <= mono["score"] <= 1 and len(mono["active"]["normalized"]) == 3


def test_bad_study_config_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('model_file = "net.npz"\n[model]\nkind = "mlp"\n')
    assert main(["study", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "exactly one of [model], model_file or [dln]" in err and "Traceback" not in err


def test_layer_table_has_one_row_per_learned_block(tmp_path):
    import csv

    rng = np.random.default_rng(1)
    np.savez(tmp_path / "net.npz", W_1=rng.normal(size=(6, 5)), W_2=rng.normal(size=(3, 6)),
             activations=np.array(["Relu", "identity"]))  # fmt: skip
    (tmp_path / "study.toml").write_text((CONFIGS / "study_tiny_npz.toml").read_text())
    assert main(["study", str(tmp_path / "study.toml"), "--out", str(tmp_path / "out")]) == 0
    layers = json.loads((tmp_path / "out" / "study.json").read_text())["layers"]
    with open(tmp_path / "out" / "frustration_layers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == [1, 2] == [lay["index"] for lay in layers]
    assert [(r["source"], r["destination"]) for r in rows] == [("input", "layer1"), ("layer1", "layer2")]
    for r, lay in zip(rows, layers):
        assert float(r["zscore"]) == pytest.approx((lay["normalized"] - lay["null_mean"]) / lay["null_std"])


def test_study_input_shape(tmp_path, monkeypatch, capsys):
    import jaxflow.experiments.study as study

    seen = []

    def spy(path, **kwargs):  # records the shape the importer is asked for, then stops the study
        seen.append(kwargs.get("input_shape"))
        raise InputError(f"{path}: stop here")  # as the importer does for a bad file

    monkeypatch.setattr(study, "load_graph", spy)
    config = tmp_path / "study.toml"
    config.write_text('model_file = "net.onnx"\ninput_shape = [1, 3, 16, 16]\n')
    assert main(["study", str(config), "--out", str(tmp_path / "out")]) == 2
    assert main(["study", str(config), "--out", str(tmp_path / "out"), "--input-shape", "1,3,32,32"]) == 2
    assert seen == [(1, 3, 16, 16), (1, 3, 32, 32)]
    assert "stop here" in capsys.readouterr().err
    for args, words in [
        (["--input-shape", "1,3,a"], "--input-shape must be the full input shape"),
        (["--input-shape=-1,3"], "--input-shape must be the full input shape"),
    ]:
        assert main(["study", str(config), "--out", str(tmp_path / "out"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err, err
    dln = CONFIGS / "study_tiny_dln.toml"
    assert main(["study", str(dln), "--out", str(tmp_path / "out"), "--input-shape", "1,3"]) == 2
    assert "--input-shape is the input shape of a model_file" in capsys.readouterr().err
    config.write_text("input_shape = [1, 3]\n[dln]\n")
    assert main(["study", str(config), "--out", str(tmp_path / "out")]) == 2
    assert "'input_shape': is only allowed with model_file" in capsys.readouterr().err


def test_null_summary_places_the_network_among_its_nulls():
    from jaxflow.experiments.nulls import null_summary

    s = null_summary(1.0, [2.0, 4.0, 3.0], 4.0)  # δ = 1 and null δ = 2, 4, 3 of Σ|a| = 4
    assert s["normalized"] == 0.25 and s["null_normalized"] == [0.5, 1.0, 0.75]
    assert s["null_mean"] == pytest.approx(0.75) and s["null_std"] == pytest.approx(0.25)
    assert s["zscore"] == pytest.approx(-2.0)
    assert np.isnan(null_summary(1.0, [2.0, 2.0], 4.0)["zscore"])  # no null spread: no z-score
