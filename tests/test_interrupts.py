"""Interrupts on a schedule (`benchmarks/interrupts.py`): `jaxflow sweep`, `frustration` and
`study`, each stopped by SIGINT and SIGTERM in turn at moments spread over 90% of the length of
an uninterrupted run, exit 130 within 2 s with the one interrupt line alone on stderr, and the run
that resumes their folder gives the uninterrupted numbers. The suite stops each command at 3
moments; `make test-interrupts` (marker `interrupts`) at 10; the benchmark at 30, with the
robustness runs of `frustration`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from interrupts import COMMANDS, commands, schedule  # noqa: E402


def _stopped(folder: Path, name: str, moments: int) -> list[str]:
    """The signals of the moments at which `schedule` stopped a run of command `name` (the others
    fell past the end of a faster run: it gave the uninterrupted numbers)."""
    argv, numbers = commands(folder, robustness=False)[name]
    done = schedule(argv, numbers, folder, moments)
    return [m["signal"] for m in done["moments"] if m["seconds"] is not None]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_interrupt_at_3_moments_is_status_130_within_2_s_and_resumes(tmp_path, name):
    stopped = _stopped(tmp_path, name, 3)
    assert len(stopped) >= 2 and {"SIGINT", "SIGTERM"} <= set(stopped), stopped  # the last may fall past


@pytest.mark.interrupts
@pytest.mark.parametrize("name", COMMANDS)
def test_an_interrupt_at_10_moments_is_status_130_within_2_s_and_resumes(tmp_path, name):
    assert len(_stopped(tmp_path, name, 10)) >= 8  # the last moments may fall past the end of a faster run
