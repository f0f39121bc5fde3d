"""The `jaxflow` command's interrupts: SIGINT or SIGTERM ends the process at once, at any stage,
with exit status `INTERRUPTED` and one line on stderr (what was saved and how to resume).

Python runs signal handlers in the main thread only, between bytecodes, so a main thread inside
native code (XLA, HiGHS) would not hear a signal until that code returns. Here the signal wakes a
daemon thread instead (through `signal.set_wakeup_fd`), which reports and ends the process with
`os._exit`: nothing is torn down under native code that is still running, and every file of a
run is written whole or not at all (`jaxflow._store.write_atomic`), so a rerun resumes.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

INTERRUPTED = 130
"""Exit status after Ctrl-C (SIGINT) or SIGTERM, as a shell reports a process stopped by SIGINT."""
SIGNALS = (signal.SIGINT, signal.SIGTERM)

renaming = threading.Lock()
"""Held while a finished file is renamed into place; an interrupt takes it for good before it
reports, so that no file appears after the report counted what was saved."""
_ending = threading.Lock()
"""Taken by whichever ends the process first: an interrupt (`_watch`) or the finished run (`finish`)."""
_report: Callable[[], None] = lambda: print("jaxflow: interrupted; nothing is kept", file=sys.stderr)


def report_with(report: Callable[[], None]) -> None:
    """Have an interrupt call `report()` (which writes the interrupt line) before the process ends."""
    global _report
    _report = report


def guard() -> None:
    """From now on SIGINT and SIGTERM end the process (`_watch`); a signal ignored when the process
    started (SIGINT in a background job of a shell) stays ignored. Call it from the main thread."""
    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    for s in SIGNALS:
        if signal.getsignal(s) != signal.SIG_IGN:
            signal.signal(s, _heard)
    signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(receiver, sender), name="jaxflow-interrupt", daemon=True).start()


def _heard(signum, frame) -> None:
    """The main thread's handler: nothing to do there, `_watch` acts."""


def _watch(receiver: socket.socket, sender: socket.socket) -> None:
    """Wait for SIGINT or SIGTERM (`sender` is the wakeup end, kept open here); then, unless the run
    has ended already, report and end the process with `INTERRUPTED`."""
    while receiver.recv(1)[0] not in SIGNALS:
        pass
    if not _ending.acquire(blocking=False):
        return
    renaming.acquire()
    try:
        _report()
    finally:
        _exit(INTERRUPTED)


def finish(status: int) -> NoReturn:
    """End the process with `status`, the run done; an interrupt already ending it wins."""
    _ending.acquire()
    _exit(status)


def _exit(status: int) -> NoReturn:
    """Flush stdout and stderr, then end the process at once: no interpreter teardown under native
    threads still running."""
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(status)
