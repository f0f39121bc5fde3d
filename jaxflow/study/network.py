"""One network against its null models: frustration (whole graph and per layer) and
near-monotonicity (Jacobian score, orthant perturbations, active subnetworks)."""

from __future__ import annotations

import jax
import numpy as np
from tqdm.auto import tqdm

from .._types import Array, Float, Key
from ..config import StudyFrustrationConfig, StudyMonotonicityConfig
from ..signed import Layer, SignedGraph
from ..signed.frustration import frustration
from ..signed.monotonicity import (
    active_subnetworks,
    monotonicity_score,
    null_model_monotonicity,
    orthant_perturbation_test,
)
from ..signed.nullmodels import null_model_frustration


def _floats(x) -> list[float]:
    return np.asarray(x, float).ravel().tolist()


def frustration_vs_null(
    graph: SignedGraph, config: StudyFrustrationConfig, key: Key, samples: int | None = None
):
    """The best gauge found for `graph` and a JSON summary of its normalized frustration against
    `samples` (default `config.null_samples`) null models, searched with the same effort."""
    k_net, k_null = jax.random.split(key)
    search = {"method": config.method, "restarts": config.restarts}
    res = frustration(graph, key=k_net, **search)
    nul = null_model_frustration(
        graph, k_null, samples=samples or config.null_samples, model=config.null_model, **search
    )
    total = float(res.total)
    null = np.asarray(nul.values, float) / total
    summary = {
        "value": float(res.value),
        "normalized": float(res.normalized),
        "total": total,
        "null_normalized": null.tolist(),
        "null_mean": float(null.mean()),
        "null_std": float(null.std(ddof=1)),
        "zscore": float(nul.zscore(res.value)),
        "pvalue": float((1 + np.sum(null <= float(res.normalized))) / (1 + null.size)),
    }
    return res, summary


def layer_frustration(
    graph: SignedGraph, config: StudyFrustrationConfig, key: Key, *, progress: bool = False
) -> list[dict]:
    """Each trained block (dense or convolution) as a bipartite graph of its own: its frustration
    against its null models (`progress`: a progress bar over the blocks)."""
    out = []
    learned = [b for b, block in enumerate(graph.blocks) if block.learned]
    keys = jax.random.split(key, max(len(learned), 1))
    for b, k in tqdm(
        zip(learned, keys), total=len(learned), desc="layers", disable=not progress, leave=False
    ):
        src, dst = graph.links[b]
        names = graph.names[src], graph.names[dst]
        sub = SignedGraph.from_layers(
            [Layer(names[0], shape=graph.shapes[src]), Layer(names[1], {names[0]: graph.blocks[b]})]
        )
        _, summary = frustration_vs_null(sub, config, k)
        out.append({"block": b, "source": names[0], "destination": names[1], **summary})
    return out


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
    search = {"method": frustration_config.method, "restarts": frustration_config.restarts}
    score = monotonicity_score(model, gauge[0], gauge[-1], inputs)
    null = null_model_monotonicity(model, inputs, k_null, samples=config.null_samples, **search)
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
        model, gauge[0], gauge[-1], inputs, k_pert, sizes=config.sizes, samples=config.perturbations
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
    }
    out["active"] = {
        "normalized": _floats(active.normalized),
        "active_fraction": _floats(active.active),
        "agreement_full": _floats(active.agreement_full),
        "agreement": np.asarray(active.agreement, float).tolist(),
        "agreement_mean": float(off_diagonal.mean()) if off_diagonal.size else 1.0,
    }
    return out
