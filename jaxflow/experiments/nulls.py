"""One network against its null models: the statistics of its frustration among theirs, over the
whole graph and per trained block, written once for every command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from .._checks import InputError
from .._memory import Budget, check_fits
from .._store import write_csv_rows
from .._types import Key
from ..config import StudyFrustrationConfig
from ..signed import Anneal, Estimator, Layerwise, SignedGraph, as_estimator
from ..signed.energy import block_frustration
from ..signed.estimators import from_toml
from ..signed.nullmodels import (
    NullModelResult,
    default_chunk_size,
    frustration_bytes,
    null_model_frustration,
    null_statistics,
)

ROBUSTNESS_SAMPLES = 16  # `zscore_robustness`: null models searched by the independent estimator
SIGNIFICANT_Z = 2.0  # `zscore_robustness`: a z-score this far from 0 counts as significant
LAYER_COLUMNS = ("index", "source", "destination", "normalized", "null_mean", "null_std", "zscore")
"""Columns of `frustration_layers.csv` (`write_layer_csv`)."""


def null_summary(value, null_values, total) -> dict:
    """`δ / Σ|a|` (`normalized`, with `δ = value` and `Σ|a| = total`) against the same for the null
    models (`null_normalized`, from `null_values`): their mean, standard deviation (`ddof = 1`)
    and the z-score `(normalized − mean) / std` (NaN when the null spread is 0)."""
    null = np.asarray(null_values, np.float64) / float(total)
    normalized = float(value) / float(total)
    mean, std, z = null_statistics(normalized, null)
    return {
        "normalized": normalized,
        "null_normalized": null.tolist(),
        "null_mean": float(mean),
        "null_std": float(std),
        "zscore": float(z),
    }


def frustration_vs_null(
    graph: SignedGraph,
    config: StudyFrustrationConfig,
    key: Key,
    samples: int | None = None,
    out=None,
    status: Callable[[str], None] | None = None,
    max_memory: int | Budget | None = None,
) -> tuple[NullModelResult, dict]:
    """The null-model result of `graph` (its own best gauge in `.observed`) and a JSON summary:
    `δ`, `Σ|a|`, the proven `lower_bound` (normalized, as `normalized`) and the `gap`
    `(δ − bound) / δ`, and `null_summary` against `samples` (default `config.null_samples`) null
    models searched with the same effort, with the one-sided p-value `NullModelResult.pvalue`;
    with `config.robustness`, `zscore_robustness` too. `out`: a folder where the null samples are
    saved as they finish (a rerun resumes). `status` hears each stage in words. A run whose
    estimate (`frustration_bytes`) exceeds `max_memory` (`_memory.budget`) is refused first."""
    samples = samples or config.null_samples
    estimator = config_estimator(config)
    check_fits(
        frustration_bytes(
            graph, estimator.in_flight(graph), default_chunk_size(graph, samples) * jax.device_count()
        ),
        max_memory,
        f"the frustration of this model against {samples} null models",
        "restarts or null_samples (or the model's input shape)",
    )
    say = status or (lambda _: None)
    stage = lambda what: lambda text: say(f"{what}: {text}")  # noqa: E731
    nul = _nulls(
        graph, config, key, samples, estimator, out, bound=True, status=stage("network and null models")
    )
    value, total = float(nul.observed.value), float(nul.observed.total)
    stats = null_summary(value, nul.values, total)
    normalized = stats.pop("normalized")
    summary = {
        "value": value,
        "normalized": normalized,
        "lower_bound": float(nul.observed.lower_bound) / total if total else 0.0,
        "gap": float(nul.observed.gap),
        "total": total,
        **stats,
        "pvalue": float(nul.pvalue()),
    }
    if config.robustness:
        summary["robustness"] = zscore_robustness(
            graph, config, key, nul, estimator, out, stage("robustness")
        )
    return nul, summary


def config_estimator(config: StudyFrustrationConfig) -> Estimator:
    """The estimator of a frustration config: `method` by name with `restarts`, `tol` and
    `batch_size` as its effort (`as_estimator`), or a table of an estimator's fields
    (`estimators.from_toml`), when those three are unset.

    Raises:
        InputError: an unknown name or field, or effort keys beside a table.
    """
    effort = {k: getattr(config, k) for k in ("restarts", "tol", "batch_size")}
    if isinstance(config.method, str):
        return as_estimator(config.method, **effort)
    given = [k for k, v in effort.items() if v is not None]
    if given:
        raise InputError(f"{given[0]}: set it inside the method table, or give method as a name")
    return from_toml(config.method)


def _nulls(graph, config, key, samples, estimator, out, *, bound: bool, status) -> NullModelResult:
    return null_model_frustration(
        graph, key, estimator, samples=samples, model=config.null_model, out=out, bound=bound, status=status
    )


def _row(value, null_values, total, **labels) -> dict:
    """One robustness row: `labels`, `null_summary` of `value` against `null_values` (without the
    samples), the one-sided p-value and whether `|z| >= SIGNIFICANT_Z`."""
    null = np.asarray(null_values, np.float64)
    stats = null_summary(value, null, total)
    del stats["null_normalized"]
    pvalue = (1 + np.sum(null <= value)) / (null.size + 1)  # as `NullModelResult.pvalue`
    z = stats["zscore"]
    return {**labels, "samples": int(null.size), **stats, "pvalue": float(pvalue),
            "significant": bool(abs(z) >= SIGNIFICANT_Z)}  # fmt: skip


def zscore_robustness(
    graph: SignedGraph,
    config: StudyFrustrationConfig,
    key: Key,
    first: NullModelResult,
    estimator: Estimator,
    out=None,
    status: Callable[[str], None] | None = None,
) -> dict:
    """Would another estimator change the verdict? The network-vs-null z-score at each rung of the
    search `first` ran (for `"ladder"`, the best value after each rung, on the network and its
    null models alike, from the same search: no extra cost; one row for the other methods), and
    under an independent estimator (`Layerwise`, or `Anneal` when `first` ran `Layerwise`, at its
    default effort and `estimator`'s `batch_size`) on `ROBUSTNESS_SAMPLES` null models of their
    own: a row per run (`method`, `rung`, `restarts`, `sweeps`, `samples`, `normalized`,
    `null_mean`, `null_std`, `zscore`, `pvalue`, `significant` when `|z| ≥ SIGNIFICANT_Z`), and
    whether their verdicts `agree` over the last two rungs and the independent estimator
    (significantly below, significantly above, or not significant: the sign of an insignificant
    `z` is noise). `status` hears the independent estimator's progress."""
    observed, total = first.observed, float(first.observed.total)
    ran = observed.method  # `"auto"` resolved
    rungs = observed.settings.rungs or ((int(observed.settings.restarts), 0),)
    rows = [
        _row(
            float(observed.rung_values[k]),
            first.rung_values[:, k],
            total,
            method=ran,
            rung=k,
            restarts=int(r),
            sweeps=int(t),
        )  # fmt: skip
        for k, (r, t) in enumerate(rungs)
    ]
    independent = independent_estimator(ran, estimator)
    samples = min(ROBUSTNESS_SAMPLES, first.values.shape[0])
    folder = None if out is None else Path(out).parent / f"{Path(out).name}-{independent.name}"
    nul = _nulls(graph, config, key, samples, independent, folder, bound=False, status=status)
    restarts = int(nul.observed.settings.restarts)
    rows.append(_row(float(nul.observed.value), nul.values, total, method=independent.name, rung=None,
                     restarts=restarts, sweeps=None))  # fmt: skip
    verdict = rows[-3:] if len(rows) > 2 else rows
    return {"runs": rows, "agree": len({_verdict(r) for r in verdict}) == 1}


def _verdict(row: dict) -> str:
    """A row's verdict: below or above its nulls when `significant`, else none (its sign is noise)."""
    return ("below" if row["zscore"] < 0 else "above") if row["significant"] else "none"


def independent_estimator(ran: str, estimator: Estimator) -> Estimator:
    """The independent estimator of `zscore_robustness` after a search by the method `ran`:
    `Anneal` after `"layerwise"`, else `Layerwise`, at its default effort and `estimator`'s
    `batch_size`."""
    other = Anneal if ran == "layerwise" else Layerwise
    return other(batch_size=getattr(estimator, "batch_size", None))


def saved_samples(out: Path) -> str:
    """What an interrupted run into `out` kept of its null batches (`out/**/nulls*/chunks/`), and
    how to go on."""
    pieces = len(list(Path(out).glob("**/nulls*/chunks/*.npz")))
    return f"{pieces} pieces of null samples saved in {out}; run the same command again to resume"


def frustration_line(s: dict) -> str:
    """`frustration_vs_null`'s summary `s` in words: the interval, the null models, and, with
    robustness runs, the z-score at each rung and under the independent estimator, and whether
    they agree."""
    line = (
        f"F in [{s['lower_bound']:.4f}, {s['normalized']:.4f}] (gap {s['gap']:.1%}) vs null "
        f"{s['null_mean']:.4f} ± {s['null_std']:.4f} (z = {s['zscore']:.2f}, p = {s['pvalue']:.3g})"
    )
    if "robustness" not in s:
        return line
    r = s["robustness"]
    runs = ", ".join(f"{run_label(x)} {x['zscore']:.2f}" for x in r["runs"])
    verdict = "the same verdict" if r["agree"] else "DISAGREE"
    return f"{line}; z under {runs}: {verdict}"


def run_label(run: dict) -> str:
    """A robustness row's estimator and effort in words: `ladder 8×32` (a rung: restarts ×
    sweeps), `layerwise 64 (16 nulls)` (the independent estimator: its restarts)."""
    if run["rung"] is None:
        return f"{run['method']} {run['restarts']} ({run['samples']} nulls)"
    return f"{run['method']} {run['restarts']}×{run['sweeps']}"


def layer_frustration(graph: SignedGraph, nul: NullModelResult) -> list[dict]:
    """Per trained block (dense or convolution) `b`, numbered 1, 2, … in graph order (`index`):
    `null_summary` of `δ_b / Σ_b |a|` under the graph's best gauge against the same for the null
    models (each under its own best gauge), without the null samples."""
    own = block_frustration(graph, nul.observed.gauge)
    out = []
    for b, block in enumerate(graph.blocks):
        if not block.learned:
            continue
        src, dst = graph.links[b]
        stats = null_summary(own[b], nul.block_values[:, b], float(block.abs_sum()))
        del stats["null_normalized"]
        row = {"index": len(out) + 1, "block": b, "source": graph.names[src], "destination": graph.names[dst]}
        out.append(row | stats)
    return out


def write_layer_csv(layers: list[dict], path) -> Path:
    """The per-layer table of `layer_frustration` as CSV (`LAYER_COLUMNS`, one row per trained
    block; `index` is the block number on the x axis of `plots.plot_layer_frustration`)."""
    rows = [[lay[c] if isinstance(lay[c], str) else repr(lay[c]) for c in LAYER_COLUMNS] for lay in layers]
    return write_csv_rows(path, [LAYER_COLUMNS, *rows])
