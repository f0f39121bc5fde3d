"""`jaxflow sweep`: writes its summary, CSV and plots; bad configs give one line and exit code 2."""

import csv
import json

import numpy as np
import pytest

import jaxflow.cli
from jaxflow.cli import main


@pytest.fixture(autouse=True)
def _keep_devices(monkeypatch):
    # The command makes one CPU device per core before JAX starts; inside the test process that
    # would change the devices every later test sees.
    monkeypatch.setattr(jaxflow.cli, "_cores_as_devices", lambda: None)


# Same shapes as tests/test_sweep.py's config, so the compiled sweep is reused in one process.
TOML = """
[task]
singular_values = [2.0, 1.0]
[network]
widths = [2, 3, 3, 2]
scale = 0.2
[flow]
t1 = 20.0
saves = 41
gtol = 1e-6
[sweep]
inits = 4
chunk = 2
seed = 3
"""


def test_sweep_command_writes_results(tmp_path, capsys):
    config = tmp_path / "tiny.toml"
    config.write_text(TOML)
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--out", str(out)]) == 0
    for name in ("summary.json", "trajectories.csv", "losses.png", "learning_times.png", "manifest.json"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    (arch,) = summary["architectures"]
    # Critical values of Σ = diag(2, 1) with min width 2: ½(4 + 1), ½·1, ½·4, 0.
    assert arch["critical_levels"] == [0.0, 0.5, 2.0, 2.5]
    assert arch["trajectories"] == 4 and sum(arch["status"].values()) == 4
    rows = list(csv.DictReader((out / "trajectories.csv").open()))
    assert [int(r["init"]) for r in rows] == [0, 1, 2, 3]
    assert all(r["widths"] == "2x3x3x2" and r["depth"] == "3" for r in rows)
    assert all(float(r["final_loss"]) < 1e-6 and r["critical_value"] == "0" for r in rows)
    assert all(np.isfinite([float(r["learning_time_1"]), float(r["learning_time_2"])]).all() for r in rows)
    assert "4 trajectories" in capsys.readouterr().out


def test_bad_config_is_one_line(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(TOML.replace("t1 = 20.0", "t1 = -1.0"))
    assert main(["sweep", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'flow.t1'" in err, err


def test_missing_config_is_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not found" in err, err


def test_only_input_errors_are_one_line(monkeypatch, capsys):
    """An `InputError` is one line and status 2; any other exception is a bug and propagates."""
    from jaxflow._checks import InputError

    def fails(error):
        def main(args):
            raise error

        return main

    monkeypatch.setattr(jaxflow.cli.COMMANDS["landscape"], "main", fails(InputError("widths: bad")))
    assert jaxflow.cli.main(["landscape", "any.toml"]) == 2
    assert capsys.readouterr().err == "jaxflow landscape: error: widths: bad\n"
    with pytest.raises(InputError, match="widths: bad"):  # --debug shows the traceback
        jaxflow.cli.main(["--debug", "landscape", "any.toml"])
    monkeypatch.setattr(jaxflow.cli.COMMANDS["landscape"], "main", fails(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        jaxflow.cli.main(["landscape", "any.toml"])
    assert "ValueError: a bug\nthis is a bug in jaxflow" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_an_out_that_cannot_be_a_folder_is_one_line(tmp_path, capsys, kind):
    import os

    config = tmp_path / "landscape.toml"
    config.write_text("widths = [2, 2, 2]\nprobes = 4\n[task]\nsingular_values = [3.0, 1.0]\n")
    out = tmp_path / "taken"
    if kind == "file":
        out.write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root may write anywhere")
        out.mkdir()
        out.chmod(0o500)
    assert jaxflow.cli.main(["landscape", str(config), "--out", str(out / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "choose another path" in err, err


def test_quiet_writes_no_progress(tmp_path, capsys):
    config = tmp_path / "landscape.toml"
    config.write_text("widths = [2, 2, 2]\nprobes = 4\n[task]\nsingular_values = [3.0, 1.0]\n")
    assert jaxflow.cli.main(["--quiet", "landscape", str(config), "--out", str(tmp_path / "q")]) == 0
    assert capsys.readouterr().err == ""
    assert jaxflow.cli.main(["landscape", str(config), "--out", str(tmp_path / "p")]) == 0
    assert "critical points" in capsys.readouterr().err  # the progress, when not quiet
