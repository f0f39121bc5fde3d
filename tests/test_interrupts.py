"""Interrupts on a schedule (`benchmarks/interrupts.py`): `jaxflow sweep`, `frustration` and
`study`, each stopped by SIGINT and SIGTERM in turn at 10 moments spread over 90% of the length of
an uninterrupted run, exit 130 within 2 s with the one interrupt line alone on stderr, and the run
that resumes their folder gives the uninterrupted numbers (the robustness runs of `frustration`:
in the benchmark only)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from interrupts import COMMANDS, commands, schedule  # noqa: E402

MOMENTS = 10


@pytest.mark.interrupts
@pytest.mark.parametrize("name", COMMANDS)
def test_an_interrupt_at_any_moment_is_status_130_within_2_s_and_resumes(tmp_path, name):
    argv, numbers = commands(tmp_path, robustness=False)[name]
    done = schedule(argv, numbers, tmp_path, MOMENTS)
    stopped = sum(m["seconds"] is not None for m in done["moments"])
    assert stopped >= MOMENTS - 2, done  # the last moments may fall past the end of a faster run
