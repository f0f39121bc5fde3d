"""`jaxflow landscape CONFIG`: the table of critical points, its files, and clear config errors."""

import csv
import json

import pytest

from jaxflow.cli import main

CONFIG = """
widths = [2, 2, 2]
probes = 4
[task]
singular_values = [3.0, 1.0]
"""


def test_landscape_job_writes_the_table(tmp_path, capsys):
    cfg = tmp_path / "land.toml"
    cfg.write_text(CONFIG)
    assert main(["landscape", str(cfg), "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    rows = json.loads((out / "landscape.json").read_text())["critical_points"]
    # Σ = diag(3, 1), h = 2 (the table of issue 3): values ½ Σ_{j∉S} σ_j², all saddles strict
    assert [(r["subset"], r["value"], r["kind"]) for r in rows] == [
        ([0, 1], 0.0, "global_minimum"),
        ([0], 0.5, "strict_saddle"),
        ([1], 4.5, "strict_saddle"),
        ([], 5.0, "strict_saddle"),
    ]
    assert [r["inertia"] for r in rows] == [[0, 4, 4], [1, 3, 4], [2, 3, 3], [4, 0, 4]]
    assert sorted(rows[3]["eigenvalues"]) == pytest.approx([-3, -3, -1, -1, 1, 1, 3, 3], abs=1e-13)
    with (out / "landscape.csv").open() as f:
        assert len(list(csv.reader(f))) == 1 + 4
    assert (out / "hessian_spectra.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "strict_saddle" in printed and "global_minimum" in printed


@pytest.mark.parametrize(
    "text, message",
    [
        (CONFIG.replace("probes = 4", "probes = 4\ncolour = 1"), "'colour': unknown key"),
        (CONFIG.replace("[2, 2, 2]", "[2, 0, 2]"), "'widths[1]': must be a positive integer"),
        (CONFIG.replace("[3.0, 1.0]", "[3.0, 1.0, 0.5]"), "'task.singular_values'"),
        (CONFIG.replace("probes = 4", "probes = 4\nmax_parameters = 4"), "more than max_parameters = 4"),
        (CONFIG.replace("probes = 4", "probes = 'many'"), "'probes': must be an integer"),
    ],
)
def test_bad_configs_fail_with_one_clear_line(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert main(["landscape", str(cfg), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
