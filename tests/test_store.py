"""The resumable output folder: manifest, atomic pieces, full disk, and the lock."""

import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxflow import _store
from jaxflow._checks import InputError
from jaxflow._store import Store

INPUTS = {"graph": "ab12", "samples": 4}


def _lock(path, pid):
    (path / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_pieces_are_written_listed_and_read_back(tmp_path):
    with Store(tmp_path / "out", INPUTS, kind="test") as store:
        assert store.pieces() == [] and (tmp_path / "out" / ".lock").exists()
        store.write("p1", {"x": np.arange(3.0)})
        store.write("p0", {"x": np.ones(2)})
        assert store.pieces() == ["p0", "p1"] and store.has("p1") and not store.has("p2")
    assert not (tmp_path / "out" / ".lock").exists()  # released on exit
    with Store(tmp_path / "out", INPUTS, kind="test") as store:  # the same inputs: resumes
        np.testing.assert_array_equal(store.read("p1")["x"], np.arange(3.0))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest == {"hash": _store.digest(INPUTS), "inputs": INPUTS}


def test_other_inputs_are_refused_naming_what_differs(tmp_path):
    with Store(tmp_path, INPUTS, kind="test"):
        pass
    message = rf"folder {tmp_path} holds a different test \(differs in: samples\)"
    with pytest.raises(InputError, match=message):
        with Store(tmp_path, {**INPUTS, "samples": 5}, kind="test"):
            pass
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file, not a folder"):
        with Store(tmp_path / "file", INPUTS, kind="test"):
            pass


def test_lock_refused_while_its_holder_lives_and_taken_over_once_dead(tmp_path):
    with Store(tmp_path, INPUTS, kind="test"):
        pass
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _lock(tmp_path, holder.pid)
        with pytest.raises(InputError, match=f"in use by process {holder.pid} on {socket.gethostname()}"):
            with Store(tmp_path, INPUTS, kind="test"):
                pass
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid  # left to its holder
    finally:
        holder.kill()
        holder.wait()
    with Store(tmp_path, INPUTS, kind="test"):  # stale: its process is gone
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_lock_released_on_an_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with Store(tmp_path, INPUTS, kind="test"):
            raise RuntimeError
    assert not (tmp_path / ".lock").exists()


def test_full_disk_leaves_no_partial_file_and_a_rerun_resumes(tmp_path, monkeypatch):
    savez = np.savez

    def full(f, **arrays):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with Store(tmp_path, INPUTS, kind="test") as store:
        store.write("p0", {"x": np.zeros(2)})
        monkeypatch.setattr(np, "savez", full)
        with pytest.raises(InputError) as err:
            store.write("p1", {"x": np.ones(2)})
    assert str(err.value) == (
        f"no space left on device while writing {tmp_path / 'chunks' / 'p1.npz'}; free space and run "
        "the same command again to resume"
    )
    assert sorted(p.name for p in (tmp_path / "chunks").iterdir()) == ["p0.npz"]  # no partial file
    monkeypatch.setattr(np, "savez", savez)
    with Store(tmp_path, INPUTS, kind="test") as store:
        assert store.pieces() == ["p0"]
        store.write("p1", {"x": np.ones(2)})
        assert store.pieces() == ["p0", "p1"]


def test_other_write_errors_are_one_line(tmp_path, monkeypatch):
    def denied(f, **arrays):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(np, "savez", denied)
    with Store(tmp_path, INPUTS, kind="test") as store:
        with pytest.raises(InputError, match=r"cannot write .*p0\.npz \(Permission denied\); fix it"):
            store.write("p0", {"x": np.ones(2)})
    assert list((tmp_path / "chunks").iterdir()) == []


def test_tree_digest_sees_weights_dtype_and_structure():
    a = {"w": np.ones((2, 3))}
    assert _store.tree_digest(a) == _store.tree_digest({"w": np.ones((2, 3))})
    assert _store.tree_digest(a) != _store.tree_digest({"w": np.ones((3, 2))})
    assert _store.tree_digest(a) != _store.tree_digest({"w": np.ones((2, 3), np.float32)})
    assert _store.tree_digest(a) != _store.tree_digest({"v": np.ones((2, 3))})
    b = np.ones((2, 3))
    b[1, 2] = np.nextafter(1.0, 2.0)
    assert _store.tree_digest(a) != _store.tree_digest({"w": b})
