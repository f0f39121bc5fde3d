"""Interrupts on a schedule: `jaxflow sweep`, `frustration` and `study` on small inputs, each
stopped by SIGINT and SIGTERM (in turn) at moments spread evenly over the length of an
uninterrupted run, from the import of JAX to the writing of the results.

Every stop must exit 130 within `DEADLINE` seconds with the one interrupt line alone on stderr,
its count of saved pieces the number in the folder.
The stopped runs of a command share one folder, each resuming what the one before it left; a run
that ends before its moment (it had less left to do) must give the numbers of the uninterrupted run
exactly, and the moment is tried again from an empty folder; so must the run after the last moment.
`tests/test_interrupts.py` runs `schedule` at 3 moments per command in the suite (`make test`),
at 10 with `make test-interrupts`.

The interrupt's thread needs the GIL to write its line and end the process, so one more run of
each command (`holds`) measures the longest a thread beside it could not run, and the longest full
garbage collection (which holds the GIL). The record has the machine and its load average before
and after each command.

    python benchmarks/interrupts.py                # 30 moments per command; record in results/
    python benchmarks/interrupts.py --moments 12   # fewer
    python benchmarks/interrupts.py --quick        # 4 moments per command: a check that it runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

DEADLINE = 2.0
"""Seconds from the signal to the end of the process."""
SPAN = 0.9
"""The share of the uninterrupted run's length the moments spread over: the length of a run varies."""
LINE = re.compile(r"jaxflow( \w+)?: interrupted; [^\n]*\n")
"""The one line an interrupted run writes on stderr."""
SAVED = re.compile(r"; (\d+) (?:chunks|pieces of null samples) saved in ")
"""The count of saved pieces in that line: the sweep's chunks, the null batches' pieces."""
ENV = {**os.environ, "JAXFLOW_DEBUG": "", "JAXFLOW_MAX_MEMORY": ""}
SWEEP = """
[task]
singular_values = [2.0, 1.0]
[network]
widths = [2, 8, 8, 2]
scale = 0.2
[flow]
t1 = 20.0
saves = 41
[sweep]
inits = 8
chunk = 2
seed = 3
"""
FRUSTRATION = 'method = "layerwise"\nrestarts = 4\nnull_samples = 4\n'
STUDY = """
name = "interrupts"
model_file = "net.npz"
[frustration]
restarts = 4
null_samples = 3
robustness = false
[monotonicity]
inputs = 8
sizes = [0.1, 1.0]
perturbations = 2
null_samples = 2
active_inputs = 2
"""


COMMANDS = ("sweep", "frustration", "study")


def _numbers(name: str, *keys: str) -> Callable[[Path], str]:
    """The entries `keys` of the JSON file `name` in a results folder, as JSON text (NaN included)."""
    return lambda out: json.dumps([json.loads((out / name).read_text())[k] for k in keys])


def commands(folder: Path, robustness: bool) -> dict[str, tuple[list[str], Callable[[Path], object]]]:
    """Command name → (its arguments before `--out`, the numbers of a results folder: the same
    for the same results), with the inputs written in `folder`; `frustration` with or without
    its robustness runs."""
    rng = np.random.default_rng(0)
    (folder / "sweep.toml").write_text(SWEEP)
    np.savez(folder / "m.npz", W_1=rng.normal(size=(24, 24)), W_2=rng.normal(size=(4, 24)))
    (folder / "frustration.toml").write_text(f"{FRUSTRATION}robustness = {str(robustness).lower()}\n")
    np.savez(folder / "net.npz", W_1=rng.normal(size=(6, 5)), W_2=rng.normal(size=(3, 6)))
    (folder / "study.toml").write_text(STUDY)
    return {
        "sweep": (["sweep", "sweep.toml"], lambda out: (out / "trajectories.csv").read_bytes()),
        "frustration": (
            ["frustration", "m.npz", "--config", "frustration.toml"],
            _numbers("frustration.json", "frustration", "layers"),
        ),
        "study": (["study", "study.toml"], _numbers("study.json", "frustration", "layers", "monotonicity")),
    }


def default_sigint() -> None:
    """In the child: SIGINT as a terminal delivers it (a background job of a shell ignores it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    with warnings.catch_warnings():  # the child runs `default_sigint` and execs: no JAX thread in it
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        return subprocess.Popen(
            [sys.executable, "-m", "jaxflow", "--quiet", *argv], cwd=cwd, env=ENV, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip


def _finished(run: subprocess.Popen, timeout: float) -> None:
    """Wait up to `timeout` seconds for `run`, which must end with status 0 and nothing on stderr."""
    stderr = run.communicate(timeout=timeout)[1]
    assert run.returncode == 0 and stderr == "", stderr


def _stop(argv: list[str], cwd: Path, moment: float, sig: signal.Signals, numbers, reference) -> float | None:
    """Start `ARGV --out cut` and send it `sig` after `moment` seconds; the seconds it took to end,
    or None when it ended before (then with the whole result, and `cut` is removed). The pieces
    the interrupt line counts must be those in `cut`."""
    run, cut = _start([*argv, "--out", "cut"], cwd), cwd / "cut"
    try:
        run.wait(moment)
    except subprocess.TimeoutExpired:
        run.send_signal(sig)
        sent = time.monotonic()
        stderr = run.communicate(timeout=60)[1]
        took = time.monotonic() - sent
        assert run.returncode == 130, f"at {moment:.2f} s: status {run.returncode}\n{stderr}"
        assert LINE.fullmatch(stderr), f"at {moment:.2f} s: stderr {stderr!r}"
        assert took < DEADLINE, f"at {moment:.2f} s: {took:.2f} s to end"
        if saved := SAVED.search(stderr):
            pieces = len(list(cut.glob("**/chunks/*.npz")))
            assert int(saved[1]) == pieces, f"at {moment:.2f} s: {pieces} pieces in {cut}; {stderr}"
        return took
    _finished(run, timeout=60)
    assert numbers(cut) == reference, f"at {moment:.2f} s: the numbers differ"
    shutil.rmtree(cut)
    return None


HOLDS = """
import gc, json, sys, threading, time
from jaxflow import __main__ as command, _interrupt

longest = {"wait": 0.0, "collection": 0.0}

def watch():  # a thread like the interrupt's: the longest it could not run
    while True:
        start = time.perf_counter()
        time.sleep(0.002)
        longest["wait"] = max(longest["wait"], time.perf_counter() - start - 0.002)

def collection(phase, info, began=[0.0]):  # CPU seconds of each full collection
    if phase == "start":
        began[0] = time.thread_time()
    elif info["generation"] == 2:
        longest["collection"] = max(longest["collection"], time.thread_time() - began[0])

def finish(status, finish=_interrupt.finish):
    print(json.dumps(longest), file=sys.stderr)
    finish(status)

gc.callbacks.append(collection)
threading.Thread(target=watch, daemon=True).start()
_interrupt.finish = finish
sys.argv = ["jaxflow", *sys.argv[1:]]
command.main()
"""


def holds(argv: list[str], cwd: Path) -> dict:
    """Run `jaxflow --quiet ARGV --out holds` once, as the command runs it, with a thread beside it
    that, like the interrupt's, needs the GIL to run: the longest it could not (`wait`, wall-clock
    seconds: a native call holding the GIL, or the machine's load) and the longest full garbage
    collection (`collection`, CPU seconds: it holds the GIL throughout)."""
    run = subprocess.run(
        [sys.executable, "-c", HOLDS, "--quiet", *argv, "--out", "holds"], cwd=cwd, env=ENV,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True,
    )  # fmt: skip
    return json.loads(run.stderr)


def schedule(argv: list[str], numbers: Callable[[Path], object], cwd: Path, moments: int) -> dict:
    """Run `jaxflow --quiet ARGV --out whole` once to learn its length and numbers, then stop
    `ARGV --out cut` at `moments` moments spread evenly over `SPAN` of that length (SIGINT and SIGTERM in
    turn), each run resuming the last (a run that ends before its moment, having less left to do,
    is checked and tried again from an empty folder), and finish it. Asserts what the module says;
    returns the length and, per moment, its signal, whether it took a second try, and the seconds
    the process took to end (None: past the end of the run)."""
    start = time.monotonic()
    _finished(_start([*argv, "--out", "whole"], cwd), timeout=600)
    length = time.monotonic() - start
    reference = numbers(cwd / "whole")
    rows = []
    for i in range(moments):
        moment, sig = SPAN * length * (i + 0.5) / moments, (signal.SIGINT, signal.SIGTERM)[i % 2]
        took = _stop(argv, cwd, moment, sig, numbers, reference)
        retried = took is None
        if retried:
            took = _stop(argv, cwd, moment, sig, numbers, reference)
        rows.append({"moment": moment, "signal": sig.name, "retried": retried, "seconds": took})
    _finished(_start([*argv, "--out", "cut"], cwd), timeout=600)
    assert numbers(cwd / "cut") == reference, "the resumed numbers differ from the uninterrupted run's"
    return {"length": length, "moments": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 moments per command: check that it runs")
    p.add_argument("--moments", type=int, default=30, help="moments per command (default 30)")
    args = p.parse_args()
    moments = 4 if args.quick else args.moments
    record = {"machine": machine_info(), "quick": args.quick, "deadline": DEADLINE, "commands": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in COMMANDS:
            folder = Path(tmp) / name
            folder.mkdir()
            argv, numbers = commands(folder, robustness=True)[name]
            load = os.getloadavg()
            done = record["commands"][name] = schedule(argv, numbers, folder, moments)
            done["holds"] = holds(argv, folder)
            done["load"] = {"before": load, "after": os.getloadavg()}
            took = [r["seconds"] for r in done["moments"] if r["seconds"] is not None]
            done["slowest"] = max(took, default=None)
            wait, collection = done["holds"]["wait"], done["holds"]["collection"]
            print(
                f"{name}: run {done['length']:.1f} s, {len(took)} stops, slowest {done['slowest']:.3f} s; "
                f"a thread beside it waited up to {wait:.3f} s, a full collection took up to "
                f"{collection:.3f} s of CPU; load {load[0]:.1f} to {os.getloadavg()[0]:.1f}"
            )
    print(f"wrote {write_record('interrupts', record, args.quick)}")


if __name__ == "__main__":
    main()
