"""`jaxflow landscape CONFIG [--out DIR]`: every critical value of a whitened task for a network
shape, each classified at its canonical critical point, as a table (stdout, JSON, CSV) and a plot
of the Hessian spectra."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from .. import plots
from ..config import LandscapeConfig, load_config
from ..linear import Task, classify_critical_point, critical_point, critical_values, spectrum_tolerance


def landscape_table(config: LandscapeConfig, *, progress: bool = True) -> list[dict]:
    """One JSON-ready row per critical value: subset, value, kind, inertia, order, spectrum."""
    widths = config.widths
    task = Task.from_spectrum(jnp.asarray(config.task.singular_values), widths[0], widths[-1])
    key = jax.random.key(config.seed)
    rows = []
    for cv in tqdm(critical_values(task, widths), desc="critical points", disable=not progress):
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
    return rows


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


def main(args) -> None:
    """Run `jaxflow landscape` for `args.config`, writing to `args.out`."""
    jax.config.update("jax_enable_x64", True)  # float64 for Hessians (DESIGN)
    config = load_config(args.config, LandscapeConfig)
    out = Path(args.out) if args.out else Path("results") / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = landscape_table(config)
    seconds = time.perf_counter() - start
    print(format_table(rows))
    summary = {"config": dataclasses.asdict(config), "seconds": seconds, "critical_points": rows}
    (out / "landscape.json").write_text(json.dumps(summary, indent=1))
    with (out / "landscape.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["learnt_modes", "value", "kind", "n_neg", "n_zero", "n_pos", "order", "verified"])
        for r in rows:
            modes = " ".join(str(j + 1) for j in r["subset"])
            w.writerow([modes, f"{r['value']:.12g}", r["kind"], *r["inertia"], r["order"], r["verified"]])
    plots.plot_hessian_spectra(rows, out / "hessian_spectra.png")
    print(f"{len(rows)} critical points in {seconds:.1f} s -> {out}")
