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
    """CPU model, core counts, accelerators seen by JAX, library versions and the date."""
    import jax
    import numpy as np

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "devices": [f"{d.platform}:{d.device_kind}" for d in jax.devices()],
        "jax": jax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_record(name: str, record: dict, quick: bool) -> Path:
    """Write `record` to `benchmarks/results/<name>-<YYYYMMDD>[-quick].json`; returns the path."""
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.date.today().strftime("%Y%m%d")
    path = results / f"{name}-{stamp}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(record, indent=2))
    return path
