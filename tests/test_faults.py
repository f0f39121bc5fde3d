"""The fault suite: bad inputs and faults against the `jaxflow` command, each in its own process.
Every fault gives exit status 2 (130 when interrupted) and exactly one stderr line
`jaxflow CMD: error: …`, never a traceback; a second run into a folder in use is refused; an
interrupted sweep resumes to the same bytes."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_cli import TOML

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from interrupts import default_sigint  # noqa: E402

import jaxflow.cli
from jaxflow import _progress
from jaxflow._checks import InputError

ENV = {**os.environ, "JAXFLOW_DEBUG": "", "JAXFLOW_MAX_MEMORY": ""}


def _jaxflow(*args, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jaxflow", *map(str, args)],
        cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _onnx_model(shape=(1, 2, 6, 6), dense: bool = True) -> onnx.ModelProto:
    """Conv-Relu-Flatten-Gemm (Conv-Relu unless `dense`), float32."""
    rng = np.random.default_rng(0)
    out = (shape[2] - 2) * (shape[3] - 2) * 3
    inits = [numpy_helper.from_array(rng.standard_normal((3, shape[1], 3, 3)).astype(np.float32), "k")]
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"]),
        helper.make_node("Relu", ["c"], ["r" if dense else "y"]),
    ]
    if dense:
        inits.append(numpy_helper.from_array(rng.standard_normal((4, out)).astype(np.float32), "w"))
        nodes += [
            helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
        ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [1, 4] if dense else [1, 3, *(s - 2 for s in shape[2:])]
    )
    graph = helper.make_graph(nodes, "small", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external(folder, location: str) -> str:
    """A model in `folder` whose weights' external data is at `location` (relative to `folder`)."""
    folder.mkdir(exist_ok=True)
    model = _onnx_model()
    onnx.save_model(model, folder / "m.onnx", save_as_external_data=True, location="m.bin", size_threshold=0)
    model = onnx.load(folder / "m.onnx", load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            e.value = location if e.key == "location" else e.value
    onnx.save(model, folder / "m.onnx")
    return str(folder / "m.onnx")


FAULTS = (
    "malformed TOML", "unknown key", "NaN value", "random model bytes", "truncated model", "pickled npz",
    "external data outside the folder", "external data through a symlink", "huge declared input",
    "out is a file", "max-memory too small", "max-memory not a size",
)  # fmt: skip


def _cases(tmp):
    """Fault → (command line, a phrase its error line holds), files made under `tmp`."""
    (tmp / "malformed.toml").write_text("[flow\nt1 = 1")
    (tmp / "unknown.toml").write_text(TOML + "colour = 3\n")
    (tmp / "nan.toml").write_text(TOML.replace("t1 = 20.0", "t1 = nan"))
    (tmp / "ok.toml").write_text(TOML)
    (tmp / "wide.toml").write_text(TOML.replace("widths = [2, 3, 3, 2]", "widths = [2, 300, 300, 2]"))
    (tmp / "random.onnx").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp / "truncated.onnx").write_bytes(_onnx_model().SerializeToString()[:150])
    np.savez(tmp / "pickled.npz", W_1=np.array([{"a": 1}], dtype=object))
    onnx.save(_onnx_model((1, 2, 10**7, 10**7), dense=False), tmp / "huge.onnx")
    _external(tmp / "data", "m.bin")  # the data file outside the next two models' folders
    (tmp / "link").mkdir()
    (tmp / "link" / "link.bin").symlink_to(tmp / "data" / "m.bin")
    (tmp / "a_file").write_text("not a folder")
    out = ("--out", tmp / "out")
    return {
        "malformed TOML": (("sweep", "malformed.toml", *out), "is not valid TOML"),
        "unknown key": (("sweep", "unknown.toml", *out), "'sweep.colour': unknown key"),
        "NaN value": (("sweep", "nan.toml", *out), "'flow.t1'"),
        "random model bytes": (("frustration", "random.onnx", *out), "random.onnx is not a readable ONNX"),
        "truncated model": (("frustration", "truncated.onnx", *out), "truncated.onnx is not a readable ONNX"),
        "pickled npz": (("frustration", "pickled.npz", *out), "pickled.npz is not a readable npz"),
        "external data outside the folder": (
            ("frustration", _external(tmp / "up", "../data/m.bin"), *out), "'../data/m.bin' points outside",
        ),
        "external data through a symlink": (
            ("frustration", _external(tmp / "link", "link.bin"), *out), "link.bin, but it is a symbolic link",
        ),
        "huge declared input": (
            ("frustration", "huge.onnx", *out),
            "huge.onnx with input shape [1, 2, 10000000, 10000000] (its largest",
        ),
        "out is a file": (("sweep", "ok.toml", "--out", tmp / "a_file"), "a_file is a file, not a folder"),
        "max-memory too small": (("sweep", "wide.toml", "--max-memory", "1M", *out), "raise --max-memory"),
        "max-memory not a size": (("sweep", "ok.toml", "--max-memory", "x", *out), "must be a memory size"),
    }  # fmt: skip


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """Every case of `_cases` run at once (three processes at a time): name → (process, phrase)."""
    tmp = tmp_path_factory.mktemp("faults")
    cases = _cases(tmp)
    assert tuple(cases) == FAULTS
    with ThreadPoolExecutor(3) as pool:
        runs = {name: pool.submit(_jaxflow, *argv, cwd=tmp) for name, (argv, _) in cases.items()}
        return {name: (runs[name].result(), cases[name][1]) for name in cases}


@pytest.mark.parametrize("name", FAULTS)
def test_a_fault_is_one_line_and_status_2(faults, name):
    done, phrase = faults[name]
    command = done.args[3]
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"jaxflow {command}: error: ") and phrase in done.stderr, done.stderr


def test_an_unwritable_out_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    (tmp_path / "ok.toml").write_text(TOML)
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0o500)
    done = _jaxflow("sweep", "ok.toml", "--out", tmp_path / "locked" / "x", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "cannot be created (Permission denied); choose another path" in done.stderr


FULL_DISK = """
import errno, sys
import numpy as np
import jaxflow.cli

savez, written = np.savez, []
def savez_until_full(f, **arrays):  # the disk fills up after the first chunk
    if written:
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    written.append(savez(f, **arrays))
np.savez = savez_until_full
sys.exit(jaxflow.cli.main(sys.argv[1:]))
"""


def test_a_full_disk_is_one_line_keeps_no_partial_file_and_a_rerun_resumes(tmp_path):
    (tmp_path / "ok.toml").write_text(TOML)
    argv = ("--quiet", "sweep", "ok.toml", "--out", "run")
    full = subprocess.run(
        [sys.executable, "-c", FULL_DISK, *argv], cwd=tmp_path, env=ENV, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert full.returncode == 2 and full.stderr.count("\n") == 1, full.stderr
    assert full.stderr.startswith("jaxflow sweep: error: no space left on device while writing run")
    assert full.stderr.endswith("; free space and run the same command again to resume\n")
    chunks = tmp_path / "run" / "chunks"
    assert len(list(chunks.iterdir())) == 1  # the chunk written before the disk filled, nothing partial
    resumed = _jaxflow(*argv, cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    assert len(list(chunks.glob("*.npz"))) == 2 and (tmp_path / "run" / "trajectories.csv").stat().st_size


SLOW = TOML.replace("widths = [2, 3, 3, 2]", "widths = [2, 48, 48, 48, 2]").replace(
    "inits = 4\nchunk = 2", "inits = 64\nchunk = 2"
)


def test_a_concurrent_run_is_refused_and_sigint_then_resume_gives_the_same_bytes(tmp_path):
    """Of two runs started at once into one folder, one is refused (the folder is in use); SIGINT
    stops the other, keeping its finished chunks; the same command resumes to the bytes of an
    uninterrupted run."""
    (tmp_path / "slow.toml").write_text(SLOW)
    argv = ("--quiet", "sweep", "slow.toml", "--out")
    start = lambda: subprocess.Popen(
        [sys.executable, "-m", "jaxflow", *argv, "cut"], cwd=tmp_path, env=ENV, stderr=subprocess.PIPE,
        text=True, preexec_fn=default_sigint,
    )  # fmt: skip
    with ThreadPoolExecutor(1) as pool:
        reference = pool.submit(_jaxflow, *argv, "whole", cwd=tmp_path)
        runs = [start(), start()]
        chunks, deadline = tmp_path / "cut" / "chunks", time.monotonic() + 120
        while all(r.poll() is None for r in runs) and time.monotonic() < deadline:
            time.sleep(0.02)
        (refused,) = [r for r in runs if r.poll() is not None]
        (run,) = [r for r in runs if r is not refused]
        while not any(chunks.glob("*.npz")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the sweep ended before the interrupt: make SLOW slower"
        run.send_signal(signal.SIGINT)
        stderr = run.communicate(timeout=60)[1]
        assert reference.result().returncode == 0
    refusal = refused.communicate()[1]
    assert refused.returncode == 2 and refusal.count("\n") == 1, refusal
    assert refusal.startswith(f"jaxflow sweep: error: out folder cut is in use by process {run.pid} on")
    saved = len(list(chunks.glob("a*-c*.npz")))
    assert run.returncode == 130 and stderr == (
        f"jaxflow sweep: interrupted; {saved} chunks saved in cut; run the same command again to resume\n"
    ), stderr
    assert 0 < saved < 32
    resumed = _jaxflow(*argv, "cut", cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    whole, cut = (tmp_path / d / "trajectories.csv" for d in ("whole", "cut"))
    assert cut.read_bytes() == whole.read_bytes()


class _Terminal:
    """A terminal's lines: `\\r` moves back to the start of the line, later text overwrites it."""

    def __init__(self):
        self.lines, self.line, self.col = [], [], 0

    @property
    def text(self) -> str:
        return "".join(self.line)

    def isatty(self):
        return True

    def write(self, s):
        for ch in s:
            if ch == "\n":
                self.lines.append(self.text)
                self.line, self.col = [], 0
            elif ch == "\r":
                self.col = 0
            else:
                self.line[self.col : self.col + 1] = [ch]
                self.col += 1

    def flush(self):
        pass


def test_no_bar_is_left_before_an_error_line(monkeypatch, capsys):
    screen = _Terminal()

    def fails(args):
        with _progress.progress_bar(total=3, desc="reading the model", file=screen) as bar:
            bar.update()
            assert "reading the model" in screen.text  # drawn on the terminal
            raise InputError("model.onnx: bad")

    monkeypatch.setattr(jaxflow.cli.COMMANDS["landscape"], "main", fails)
    monkeypatch.setattr(jaxflow.cli, "_cores_as_devices", lambda: None)
    assert jaxflow.cli.main(["landscape", "any.toml"]) == 2
    assert screen.text.strip() == "" and screen.lines == []  # the bar is gone, not left above the error
    assert capsys.readouterr().err == "jaxflow landscape: error: model.onnx: bad\n"


def test_a_log_gets_no_bar_line_before_an_early_error(monkeypatch, capsys):
    """Not a terminal: progress lines start after `LOG_INTERVAL`; an error before then is alone."""

    def fails(args):
        for _ in _progress.progress_bar(range(3), desc="chunks"):
            raise InputError("chunk 0: bad")

    monkeypatch.setattr(jaxflow.cli.COMMANDS["landscape"], "main", fails)
    assert jaxflow.cli.main(["landscape", "any.toml"]) == 2
    assert capsys.readouterr().err == "jaxflow landscape: error: chunk 0: bad\n"
