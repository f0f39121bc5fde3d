"""One network against its null models: the statistics of its frustration among theirs, over the
whole graph and per trained block, written once for every command."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .._types import Key
from ..config import StudyFrustrationConfig
from ..signed import SignedGraph
from ..signed.energy import block_frustration
from ..signed.nullmodels import NullModelResult, null_model_frustration, null_statistics

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
    graph: SignedGraph, config: StudyFrustrationConfig, key: Key, samples: int | None = None
) -> tuple[NullModelResult, dict]:
    """The null-model result of `graph` (its own best gauge in `.observed`) and a JSON summary:
    `δ`, `Σ|a|` and `null_summary` against `samples` (default `config.null_samples`) null models
    searched with the same effort, with the one-sided p-value `NullModelResult.pvalue`."""
    nul = null_model_frustration(
        graph,
        key,
        samples=samples or config.null_samples,
        model=config.null_model,
        method=config.method,
        restarts=config.restarts,
        tol=config.tol,
    )
    value, total = float(nul.observed.value), float(nul.observed.total)
    stats = null_summary(value, nul.values, total)
    normalized = stats.pop("normalized")
    summary = {
        "value": value,
        "normalized": normalized,
        "total": total,
        **stats,
        "pvalue": float(nul.pvalue()),
    }
    return nul, summary


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
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(LAYER_COLUMNS)
        for lay in layers:
            w.writerow([lay[c] if isinstance(lay[c], str) else repr(lay[c]) for c in LAYER_COLUMNS])
    return path
