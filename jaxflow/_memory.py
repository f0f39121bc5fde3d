"""The memory guard: a run's peak memory, estimated before anything is allocated or compiled, and
checked against a budget (`check_fits`).

The budget is, in this order: `set_budget` (the command line's `--max-memory 8G`), the environment
variable `JAXFLOW_MAX_MEMORY` (same syntax; inherited by worker processes and usable from scripts),
else the memory available now (`available_bytes`: the host's, and on accelerators no more than
their free memory together). Estimates count the run's own arrays, not the 0.3 to 0.5 GB of
Python, JAX and XLA that a process holds.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from ._checks import InputError

ENV = "JAXFLOW_MAX_MEMORY"
OPTION = "--max-memory"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_budget: tuple[int, str] | None = None  # (bytes, the --max-memory text), set by `set_budget`
SOLVER_STAGES = {"tsit5": 7, "dopri5": 7, "dopri8": 13, "bosh3": 4}
"""Field evaluations a step of each sweep solver keeps (Diffrax's Runge–Kutta stages)."""


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


def parse_size(text: str, name: str = OPTION) -> int:
    """Bytes of a size such as `"8G"`, `"512M"`, `"1.5GB"`, `"64GiB"` or `"1000000"` (binary
    units K, M, G, T); an `InputError` naming `name` for anything else."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*", str(text), re.IGNORECASE)
    if not m or float(m[1]) * _UNITS[m[2].upper()] < 1:
        raise InputError(f"{name} must be a memory size such as 8G, 512M or 64GB, got {text!r}")
    return int(float(m[1]) * _UNITS[m[2].upper()])


def set_budget(text: str | None) -> None:
    """Take the budget from `--max-memory TEXT`; None: back to `JAXFLOW_MAX_MEMORY` or what is available."""
    global _budget
    _budget = None if text is None else (parse_size(text), text)


def budget() -> tuple[int, str | None, str]:
    """The budget in bytes, the option or variable that set it (None: the memory available) and
    how it was set (e.g. `"--max-memory 8G"`)."""
    if _budget is not None:
        return _budget[0], OPTION, f"{OPTION} {_budget[1]}"
    if text := os.environ.get(ENV, "").strip():
        return parse_size(text, ENV), ENV, f"{ENV}={text}"
    return available_bytes(), None, "available"


def size_text(nbytes: float) -> str:
    """`nbytes` to three digits in the largest decimal unit that fits, e.g. `"12.3 GB"`."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    k = min(max(int(math.log10(max(nbytes, 1)) // 3), 0), len(units) - 1)
    return f"{nbytes / 1000**k:.3g} {units[k]}"


def check_fits(estimate_bytes: float, what: str, lower_with: str) -> None:
    """Refuse (an `InputError`) a run of `what` whose estimated peak exceeds the budget, naming the
    estimate, the budget and `lower_with`, the key or option that lowers it."""
    limit, name, setting = budget()
    if estimate_bytes > limit:
        have = f"{size_text(limit)} " + ("available" if name is None else f"allowed by {setting}")
        raise InputError(
            f"{what} needs about {size_text(estimate_bytes)} of memory (estimate), {have}; "
            f"lower {lower_with}" + ("" if name is None else f", or raise {name}")
        )


def sweep_bytes(config, devices: int) -> int:
    """Peak memory of `jaxflow.sweep(config)` on `devices` devices (a `SweepConfig`).

    `in_flight × (stages + 1) × P × b + lanes × saves × (1 + d_0·d_h) × b × 3`, for the largest
    architecture: `P = Σ d_i·d_{i−1}` weights per lane, `b` bytes per number (`flow.dtype`), the
    solver's stages and the state per lane in flight (`min(batch, lanes / devices)` per device), and
    the saved losses and end-to-end maps of the chunk's `lanes` (`chunk` rounded up to a multiple
    of `devices`) on the device, on the host and reduced.
    """
    f, r = config.flow, config.sweep
    b = 8 if f.dtype == "float64" else 4
    lanes = -(-r.chunk // devices) * devices
    in_flight = min(r.batch or lanes, lanes // devices) * devices
    worst = 0
    for w in config.network.architectures:
        params = sum(a * c for a, c in zip(w[1:], w[:-1]))
        state = in_flight * (SOLVER_STAGES[f.solver] + 1) * params * b
        saves = lanes * f.saves * (1 + w[0] * w[-1]) * b * 3
        worst = max(worst, state + saves)
    return worst


def import_bytes(values: int, weights: int) -> int:
    """Peak memory of importing a model as a `SignedGraph`: `12 · values + 3 · weights`, for `values`
    entries of the input and computed tensors (the builder numbers each node with an int64 and
    holds a temporary copy of part of a tensor's numbers while it rearranges or checks them) and `weights`
    bytes of stored weights (the parsed model's bytes, the array read from them and its copy on the
    device: 3 times the stored bytes at most; the file's bytes while it is parsed, twice, come
    before)."""
    return 12 * values + 3 * weights


def frustration_bytes(graph, restarts: int, samples_in_flight: int = 1) -> int:
    """Peak memory of a frustration search of `graph` (a `SignedGraph`) with `restarts` restarts,
    `samples_in_flight` graphs searched together (null models: the chunk size times the devices).

    `(2 + 8 · samples) · edges · b + 4 · samples · restarts · nodes · b`: the graph's weights and
    the search's copy of them; per sample in flight its shuffled weights and the shuffle's
    temporaries (random keys, masks, a running count: 8 numbers' worth per edge); per
    restart of each sample the spins, the local field and two work vectors over all nodes; `b`
    bytes per number (the graph's dtype); `tests/test_memory.py` checks it against the peak RSS.
    """
    b = np.dtype(graph.dtype).itemsize
    edges, nodes = graph.num_edges(), graph.num_nodes
    return (2 + 8 * samples_in_flight) * edges * b + 4 * samples_in_flight * restarts * nodes * b
