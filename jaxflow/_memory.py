"""Memory sizes and budgets: a run's estimated peak checked against a budget before anything is
allocated or compiled (`check_fits`).

A budget is a value passed to the functions that allocate (`max_memory=`): bytes, a `Budget` (the
command line's `--max-memory 8G`, naming how it was set), or None, the memory available now
(`available_bytes`: the host's, and on accelerators no more than their free memory together).
Each estimate lives beside its algorithm; estimates count a run's own arrays, not the 0.3 to
0.5 GB of Python, JAX and XLA that a process holds.
"""

from __future__ import annotations

import math
import os
import re
from typing import NamedTuple

from ._checks import InputError, check_count

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


class Budget(NamedTuple):
    """A memory budget of `nbytes`, set by `setting` (e.g. `"--max-memory 8G"`; None: the memory
    available) and raised with `name` (e.g. `"--max-memory"`)."""

    nbytes: int
    setting: str | None = None
    name: str | None = None


def available_bytes() -> int:
    """Memory available to a new allocation: the host's (`host_bytes`), and with accelerators no
    more than their free memory together (`device_bytes`), where a run's arrays live."""
    device = device_bytes()
    return host_bytes() if device is None else min(host_bytes(), device)


def host_bytes() -> int:
    """`MemAvailable` of `/proc/meminfo` (Linux), else the free physical pages (`os.sysconf`)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_bytes() -> int | None:
    """Free memory of this process's accelerators together (`bytes_limit − bytes_in_use` of each
    one's `memory_stats`), or None on CPU (or where a device reports no limit)."""
    import jax

    stats = [d.memory_stats() or {} for d in jax.local_devices() if d.platform != "cpu"]
    if not stats or any("bytes_limit" not in st for st in stats):
        return None
    return sum(st["bytes_limit"] - st.get("bytes_in_use", 0) for st in stats)


def parse_size(text: str, name: str) -> int:
    """Bytes of a size such as `"8G"`, `"512M"`, `"1.5GB"`, `"64GiB"` or `"1000000"` (binary
    units K, M, G, T).

    Raises:
        InputError: "`name` must be a memory size such as 8G, …" for anything else.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m[1]) * _UNITS[m[2].upper()] < 1:
        raise InputError(f"{name} must be a memory size such as 8G, 512M or 64GB, got {text!r}")
    return int(float(m[1]) * _UNITS[m[2].upper()])


def budget(max_memory: int | Budget | None) -> Budget:
    """`max_memory` as a `Budget`: as given, bytes (the argument `max_memory`), or None: the
    memory available now."""
    if isinstance(max_memory, Budget):
        return max_memory
    if max_memory is None:
        return Budget(available_bytes())
    return Budget(check_count(max_memory, "max_memory"), f"max_memory={max_memory}", "max_memory")


def size_text(nbytes: float) -> str:
    """`nbytes` to three digits in the largest decimal unit that fits, e.g. `"12.3 GB"`."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    k = min(max(int(math.log10(max(nbytes, 1)) // 3), 0), len(units) - 1)
    return f"{nbytes / 1000**k:.3g} {units[k]}"


def check_fits(estimate_bytes: float, max_memory: int | Budget | None, what: str, lower_with: str) -> None:
    """Refuse a run of `what` whose estimated peak exceeds the budget `max_memory` (see `budget`).

    Raises:
        InputError: naming the estimate, the budget and `lower_with`, the key or option that
            lowers it (and the setting that raises the budget).
    """
    limit = budget(max_memory)
    if estimate_bytes > limit.nbytes:
        have = "available" if limit.setting is None else f"allowed by {limit.setting}"
        raise InputError(
            f"{what} needs about {size_text(estimate_bytes)} of memory (estimate), "
            f"{size_text(limit.nbytes)} {have}; lower {lower_with}"
            + ("" if limit.name is None else f", or raise {limit.name}")
        )
