"""`machine_info()`: the machine a benchmark ran on, for its JSON record; `write_record` saves it."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """CPU model, core counts, the load average when it was asked (1, 5, 15 min: the machine is
    shared), accelerators seen by JAX, library versions and the date."""
    import jax
    import numpy as np

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def record_path(name: str, quick: bool = False) -> Path:
    """`benchmarks/results/<name>-<YYYYMMDD>[-quick].json`: today's record of `name`."""
    stamp = datetime.date.today().strftime("%Y%m%d")
    return Path(__file__).resolve().parent / "results" / f"{name}-{stamp}{'-quick' if quick else ''}.json"


def write_record(name: str, record: dict, quick: bool, keep: bool = False) -> Path:
    """Write `record` to `benchmarks/results/<name>-<YYYYMMDD>[-quick].json`; returns the path.
    `keep`: the parts of that day's record that `record` does not have stay (each part holds its
    own machine and date)."""
    path = record_path(name, quick)
    path.parent.mkdir(exist_ok=True)
    if keep and path.exists():
        record = {**json.loads(path.read_text()), **record}
    path.write_text(json.dumps(record, indent=2))
    return path
