"""Resumable output folders: a manifest naming the inputs' hash, one npz per finished piece and a
lock file, so a killed or interrupted run resumes (the lock of a process that is gone is taken over)
and two runs never write the same folder; every file written whole or not at all (`write_atomic`,
for the results' files too).

    out/manifest.json   {"hash": ..., "inputs": {...}}: a rerun must bring the same inputs
    out/chunks/*.npz    the finished pieces
    out/.lock           pid and host of the run writing the folder
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import socket
from pathlib import Path

import jax
import numpy as np

from . import _interrupt
from ._checks import InputError, output_folder


def digest(data) -> str:
    """A short sha256 of `data` (bytes, or anything JSON can write with sorted keys)."""
    raw = data if isinstance(data, bytes) else json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def tree_digest(tree) -> str:
    """A short sha256 of a pytree: its structure (static fields included) and every leaf's dtype,
    shape and bytes."""
    leaves, treedef = jax.tree.flatten(tree)
    h = hashlib.sha256(str(treedef).encode())
    for x in leaves:
        x = np.asarray(x)
        h.update(f"{x.dtype}{x.shape}".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_atomic(path, write, *, text: bool = False) -> Path:
    """`write(file)` into a temporary file (binary, or text with `text`), then renamed to `path`
    (under `_interrupt.renaming`): a killed, interrupted or failed write leaves either no file or a
    whole one. An `OSError` is an `InputError` that says how to go on."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", newline="") if text else open(tmp, "wb") as f:
            write(f)
        with _interrupt.renaming:
            os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise InputError(
                f"no space left on device while writing {path}; free space and run the same command "
                "again to resume"
            ) from None
        raise InputError(
            f"cannot write {path} ({e.strerror}); fix it and run the same command again to resume"
        ) from None
    return path


def write_text(path, text: str) -> Path:
    """`text` written to `path` whole or not at all (`write_atomic`)."""
    return write_atomic(path, lambda f: f.write(text), text=True)


def write_csv_rows(path, rows) -> Path:
    """`rows` (lists of cells) written as CSV to `path` whole or not at all (`write_atomic`)."""
    return write_atomic(path, lambda f: csv.writer(f).writerows(rows), text=True)


class Store:
    """The output folder `path` of a run of `kind` (named in messages) with `inputs` (a JSON-able
    dict; its hash names the run).

    Use as a context manager: entering creates the folder, checks or writes the manifest (a folder
    holding other inputs is refused, naming the entries that differ) and takes the lock; leaving
    (also on an exception) releases it. `writer=False` (the processes other than 0 of a multi-host
    run) only reads: no folder, manifest or lock is written.
    """

    def __init__(self, path, inputs: dict, *, kind: str, writer: bool = True, name: str = "out"):
        self.path, self.inputs, self.kind, self.writer, self.name = Path(path), inputs, kind, writer, name
        self.hash = digest(inputs)
        self.chunks = self.path / "chunks"
        self._lock = self.path / ".lock"

    def __enter__(self) -> Store:
        manifest = self.path / "manifest.json"
        if manifest.exists():
            found = json.loads(manifest.read_text())
            if found.get("hash") != self.hash:
                old = found.get("inputs", {})
                differ = sorted(k for k in {*old, *self.inputs} if old.get(k) != self.inputs.get(k))
                raise InputError(
                    f"{self.name} folder {self.path} holds a different {self.kind} (differs in: "
                    f"{', '.join(differ) or 'format'}); choose another folder or delete it"
                )
        if not self.writer:
            return self
        output_folder(self.path, self.name)
        output_folder(self.chunks, self.name)
        self._take_lock()
        if not manifest.exists():
            text = json.dumps({"hash": self.hash, "inputs": self.inputs}, indent=1, sort_keys=True)
            try:
                write_atomic(manifest, lambda f: f.write(text.encode()))
            except InputError:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self.writer and self._holder() == (os.getpid(), socket.gethostname()):
            self._lock.unlink(missing_ok=True)

    def _holder(self) -> tuple[int, str] | None:
        try:
            info = json.loads(self._lock.read_text())
            return int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _take_lock(self) -> None:
        """Create `.lock` whole (a hard link of a written file: no reader sees it half written); a
        lock of a dead process on this host is taken over."""
        mine = self.path / f".lock.{os.getpid()}"
        write_atomic(
            mine, lambda f: f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        )
        try:
            for _ in range(2):
                try:
                    os.link(mine, self._lock)
                    return
                except FileExistsError:
                    holder = self._holder()
                    if holder is not None and (holder[1] != socket.gethostname() or _alive(holder[0])):
                        raise InputError(
                            f"{self.name} folder {self.path} is in use by process {holder[0]} on "
                            f"{holder[1]}; wait for it to finish or choose another folder"
                        ) from None
                    self._lock.unlink(missing_ok=True)  # stale (its process is gone) or unreadable
            raise InputError(f"{self.name} folder {self.path}: could not take its lock {self._lock}")
        finally:
            mine.unlink()

    def pieces(self) -> list[str]:
        """Names of the finished pieces, sorted."""
        return sorted(p.stem for p in self.chunks.glob("*.npz")) if self.chunks.exists() else []

    def has(self, piece: str) -> bool:
        """Whether `piece` is finished."""
        return (self.chunks / f"{piece}.npz").exists()

    def read(self, piece: str) -> dict[str, np.ndarray]:
        """The arrays of a finished piece."""
        with np.load(self.chunks / f"{piece}.npz") as f:
            return {k: f[k] for k in f.files}

    def write(self, piece: str, arrays: dict) -> None:
        """Save a finished piece atomically (only the writer process writes)."""
        if self.writer:
            write_atomic(self.chunks / f"{piece}.npz", lambda f: np.savez(f, **arrays))
