"""`jaxflow landscape CONFIG [--out DIR]`: every critical value of a whitened task for a network
shape, each classified at its canonical critical point, as a table (stdout, JSON, CSV) and a plot
of the Hessian spectra."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from .. import plots
from .._checks import output_folder
from .._progress import progress_bar
from .._store import write_csv_rows, write_text
from ..config import LandscapeConfig, load_config
from ..linear import Task, classify_critical_point, critical_point, critical_values, spectrum_tolerance


@dataclasses.dataclass(frozen=True)
class LandscapeResult:
    """`rows`: one JSON-ready dict per critical value (subset, value, kind, inertia, order,
    gradient norm, escape coefficient, verification, Hessian eigenvalues), ascending in value."""

    config: LandscapeConfig
    rows: list[dict]
    seconds: float


def run(config: LandscapeConfig, *, progress: bool = False) -> LandscapeResult:
    """Classify the canonical critical point of every critical value of `config`'s task."""
    start = time.perf_counter()
    widths = config.widths
    task = Task.from_spectrum(jnp.asarray(config.task.singular_values), widths[0], widths[-1])
    key = jax.random.key(config.seed)
    rows = []
    for cv in progress_bar(critical_values(task, widths), desc="critical points", enabled=progress):
        net = critical_point(task, widths, cv.subset, balanced=config.balanced)
        rep = classify_critical_point(net, task, key=key, probes=config.probes, verify=config.verify)
        rows.append({
            "subset": list(cv.subset),
            "value": cv.value,
            "kind": rep.kind,
            "inertia": list(rep.inertia),
            "order": rep.order,
            "gradient_norm": rep.gradient_norm,
            "escape_coefficient": None if rep.order is None else float(rep.coefficients[rep.order]),
            "verified": rep.verified,
            "loss_after_escape": rep.loss_after_escape,
            "tolerance": spectrum_tolerance(rep.eigenvalues),
            "eigenvalues": rep.eigenvalues.tolist(),
        })  # fmt: skip
    return LandscapeResult(config, rows, time.perf_counter() - start)


def summarize(result: LandscapeResult) -> dict:
    """The content of `landscape.json`: the config, the time and every critical point."""
    config = dataclasses.asdict(result.config)
    return {"config": config, "seconds": result.seconds, "critical_points": result.rows}


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table (modes 1-based)."""
    head = f"{'learnt modes':<14}{'value':>12}  {'kind':<18}{'inertia (-,0,+)':<18}{'order':>6}  verified"
    lines = [head, "-" * len(head)]
    for r in rows:
        modes = "{" + ",".join(str(j + 1) for j in r["subset"]) + "}"
        order = "-" if r["order"] is None else str(r["order"])
        inertia = "({}, {}, {})".format(*r["inertia"])
        verified = "-" if r["verified"] is None else ("yes" if r["verified"] else "NO")
        lines.append(f"{modes:<14}{r['value']:>12.6g}  {r['kind']:<18}{inertia:<18}{order:>6}  {verified}")
    return "\n".join(lines)


def write(result: LandscapeResult, out) -> list[Path]:
    """`landscape.json`, `landscape.csv` (one row per critical value) and `hessian_spectra.png`."""
    out = Path(out)
    output_folder(out)
    files = [out / "landscape.json", out / "landscape.csv"]
    write_text(files[0], json.dumps(summarize(result), indent=1))
    rows = [["learnt_modes", "value", "kind", "n_neg", "n_zero", "n_pos", "order", "verified"]]
    for r in result.rows:
        modes = " ".join(str(j + 1) for j in r["subset"])
        rows.append([modes, f"{r['value']:.12g}", r["kind"], *r["inertia"], r["order"], r["verified"]])
    write_csv_rows(files[1], rows)
    files.append(plots.plot_hessian_spectra(result.rows, out / "hessian_spectra.png"))
    return files


def main(args) -> None:
    """`jaxflow landscape`: run `args.config`, print the table, write to `args.out`."""
    config = load_config(args.config, LandscapeConfig)
    out = output_folder(Path(args.out) if args.out else Path("results") / Path(args.config).stem)
    result = run(config, progress=not args.quiet)
    print(format_table(result.rows))
    write(result, out)
    print(f"{len(result.rows)} critical points in {result.seconds:.1f} s -> {out}")
