"""One network against its null models: frustration (whole graph and per layer) and
near-monotonicity (Jacobian score, orthant perturbations, active subnetworks)."""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import numpy as np

from .._types import Array, Float, Key
from ..config import StudyFrustrationConfig, StudyMonotonicityConfig
from ..signed import SignedGraph
from ..signed.frustration import block_frustration
from ..signed.monotonicity import (
    active_subnetworks,
    monotonicity_score,
    null_model_monotonicity,
    orthant_perturbation_test,
)
from ..signed.nullmodels import NullModelResult, null_model_frustration


def _floats(x) -> list[float]:
    return np.asarray(x, float).ravel().tolist()


def frustration_vs_null(
    graph: SignedGraph, config: StudyFrustrationConfig, key: Key, samples: int | None = None
) -> tuple[NullModelResult, dict]:
    """The null-model result of `graph` (its own best gauge in `.observed`) and a JSON summary:
    normalized frustration against `samples` (default `config.null_samples`) null models searched
    with the same effort, overall and per trained block (`δ_b / Σ_b |a|` under the best gauges)."""
    nul = null_model_frustration(
        graph,
        key,
        samples=samples or config.null_samples,
        model=config.null_model,
        method=config.method,
        restarts=config.restarts,
        tol=config.tol,
    )
    res, total = nul.observed, float(nul.observed.total)
    null = np.asarray(nul.values, float) / total
    summary = {
        "value": float(res.value),
        "normalized": float(res.normalized),
        "total": total,
        "null_normalized": null.tolist(),
        "null_mean": float(null.mean()),
        "null_std": float(null.std(ddof=1)),
        "zscore": float(nul.zscore()),
        "pvalue": float(nul.pvalue()),
    }
    return nul, summary


def layer_frustration(graph: SignedGraph, nul: NullModelResult) -> list[dict]:
    """Per trained block (dense or convolution) `b`, numbered 1, 2, … in graph order (`index`):
    `δ_b / Σ_b |a|` under the graph's best gauge against the same for the null models (each under
    its own best gauge), with the z-score (NaN when the null spread is 0)."""
    own = block_frustration(graph, nul.observed.gauge)
    out = []
    for b, block in enumerate(graph.blocks):
        if not block.learned:
            continue
        total = float(block.abs_sum())
        null = np.asarray(nul.block_values[:, b], float) / total
        src, dst = graph.links[b]
        value, mean, std = float(own[b]) / total, float(null.mean()), float(null.std(ddof=1))
        out.append(
            {
                "index": len(out) + 1,
                "block": b,
                "source": graph.names[src],
                "destination": graph.names[dst],
                "normalized": value,
                "null_mean": mean,
                "null_std": std,
                "zscore": (value - mean) / std if std > 0 else float("nan"),
            }
        )
    return out


LAYER_COLUMNS = ("index", "source", "destination", "normalized", "null_mean", "null_std", "zscore")


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


def monotonicity_vs_null(
    model,
    graph: SignedGraph,
    gauge,
    inputs: Float[Array, "N ..."],
    frustration_config: StudyFrustrationConfig,
    config: StudyMonotonicityConfig,
    key: Key,
    *,
    perturbations: bool = True,
) -> dict:
    """The Jacobian score of `model` under `gauge` (the best one found for `graph`) against
    null-model networks and random orthants; with `perturbations`, also the orthant-perturbation
    test and the active subnetworks."""
    k_null, k_pert, k_active = jax.random.split(key, 3)
    search = {
        "method": frustration_config.method,
        "restarts": frustration_config.restarts,
        "tol": frustration_config.tol,
    }
    budget = {"memory_budget": config.memory_mb * 2**20}
    score = monotonicity_score(model, gauge[0], gauge[-1], inputs, **budget)
    null = null_model_monotonicity(
        model,
        graph,
        inputs,
        k_null,
        samples=config.null_samples,
        null_model=frustration_config.null_model,
        sizes=config.sizes if perturbations else None,
        perturbations=config.perturbations,
        **budget,
        **search,
    )
    out = {
        "score": float(score.mean),
        "per_input": _floats(score.per_input),
        "null_scores": _floats(null.scores),
        "null_mean": float(null.mean),
        "null_std": float(null.std),
        "zscore": float(null.zscore(score.mean)),
        "random_orthant_scores": _floats(null.random_orthants),
        "random_orthant_mean": float(np.mean(null.random_orthants)),
    }
    if not perturbations:
        return out
    pert = orthant_perturbation_test(
        model,
        gauge[0],
        gauge[-1],
        inputs,
        k_pert,
        sizes=config.sizes,
        samples=config.perturbations,
        **budget,
    )
    active = active_subnetworks(
        model, graph, inputs[: config.active_inputs], k_active, full_gauge=gauge, **search
    )
    n = active.agreement.shape[0]
    off_diagonal = np.asarray(active.agreement)[~np.eye(n, dtype=bool)]
    out["perturbation"] = {
        "sizes": _floats(pert.sizes),
        "coordinate": _floats(pert.coordinate),
        "vector": _floats(pert.vector),
        "reference_coordinate": _floats(pert.reference_coordinate),
        "reference_vector": _floats(pert.reference_vector),
        "null_coordinate": np.asarray(null.perturbation.coordinate, float).tolist(),
        "null_vector": np.asarray(null.perturbation.vector, float).tolist(),
    }
    out["active"] = {
        "normalized": _floats(active.normalized),
        "active_fraction": _floats(active.active),
        "agreement_full": _floats(active.agreement_full),
        "agreement": np.asarray(active.agreement, float).tolist(),
        "agreement_mean": float(off_diagonal.mean()) if off_diagonal.size else 1.0,
    }
    return out
