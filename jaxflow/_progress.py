"""Progress bars that suit where they go: redrawn in place on a terminal, one plain line every
`LOG_INTERVAL` seconds when stderr is a file or a pipe (a log, CI, a batch job), nothing when off."""

from __future__ import annotations

import sys

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


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs) -> tqdm:
    """`tqdm(iterable, **kwargs)` on stderr, or silent unless `enabled`."""
    if not enabled:
        return tqdm(iterable, disable=True, **kwargs)
    stream = kwargs.pop("file", sys.stderr)
    if stream.isatty():
        return tqdm(iterable, file=stream, **kwargs)
    lines = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL, "ascii": True, "ncols": 100}
    return tqdm(iterable, file=_Lines(stream), **lines, **kwargs)
