"""Progress bars that suit where they go: redrawn in place on a terminal, one plain line every
`LOG_INTERVAL` seconds when stderr is a file or a pipe (a log, CI, a batch job; the first after
`LOG_INTERVAL`, the last when the bar closes; also while nothing updates the bar), nothing when
off. A bar closed by an error leaves nothing, and `clear` takes every open bar off the screen:
nothing of a bar precedes an error line."""

from __future__ import annotations

import sys
import threading

from tqdm.auto import tqdm

LOG_INTERVAL = 10.0
"""Seconds between progress lines when stderr is not a terminal."""


class _Lines:
    """A stream that turns tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


class _Bar(tqdm):
    """A bar that leaves nothing behind when an error (or an abandoned loop) closes it, so that the
    error line is alone; in a log, silent for its first `delay` seconds but closed by its last line,
    and written every `LOG_INTERVAL` seconds while it is open even when nothing updates it (a
    daemon thread: a stage spent in one long compiled call still shows that it is alive)."""

    def __init__(self, *args, heartbeat: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._closed = threading.Event()
        if heartbeat:
            threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self._closed.wait(LOG_INTERVAL):
            self.refresh()

    def close(self) -> None:
        self._closed.set()
        if sys.exc_info()[0] is not None:
            self.leave = False
        elif self.leave:
            self.delay = 0.0
        super().close()

    def refresh(self, nolock=False, lock_args=None) -> None:
        if not self.delay or self._time() >= self.start_t + self.delay:  # a log waits for `delay`
            super().refresh(nolock, lock_args)


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)` on stderr, or silent unless `enabled`."""
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    stream = kwargs.pop("file", sys.stderr)
    if stream.isatty():
        return _Bar(iterable, file=stream, **kwargs)
    lines = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL, "delay": LOG_INTERVAL, "ascii": True}
    return _Bar(iterable, file=_Lines(stream), ncols=120, heartbeat=True, **lines, **kwargs)


def clear() -> None:
    """Close every open bar, leaving nothing of it on the screen or in the log (before an error line)."""
    for bar in list(tqdm._instances):
        bar.leave = False
        bar.close()
