"""Progress on a stream that is not a terminal: whole lines, no carriage returns; silent when off."""

import io

from jaxflow._progress import progress_bar


def test_progress_to_a_log_is_whole_lines():
    log = io.StringIO()  # not a terminal
    for _ in progress_bar(range(250), desc="chunks", file=log):
        pass
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[-1].startswith("chunks: 100%") and "250/250" in lines[-1]
    assert len(lines) <= 3  # the first line, at most one per 10 s, the last: not one per update


def test_progress_off_writes_nothing():
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="chunks", file=log, enabled=False):
        pass
    assert log.getvalue() == ""
