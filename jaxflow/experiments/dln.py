"""Deep linear networks along the gradient flow: the frustration of `A(t)` against null models.

Each of several initializations follows `dW_i/dt = −∂L/∂W_i` on a whitened task; at every saved
time `A(t)` is read as a `SignedGraph` and its frustration compared with its sign-shuffled null
models. The *phase* of a time is the number of modes learnt (strength `u_kᵀ W v_k > μ_k / 2`),
so the result says whether, and in which phase, gradient flow reduces frustration.
"""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._memory import Budget
from .._progress import progress_bar
from .._types import Array, Float, Key
from ..config import StudyDLNConfig, StudyFrustrationConfig
from ..linear import DeepLinearNetwork, Task, loss
from ..linear.flow import solve
from ..linear.task import mode_strengths, modes_learnt, task_modes
from ..signed import SignedGraph
from .nulls import frustration_vs_null


@eqx.filter_jit
def _trajectories(nets: DeepLinearNetwork, task: Task, t1, ts) -> tuple[Array, ...]:
    """Weights `W_i(t)` at times `ts` for a stack of initial networks: `(inits, T, d_i, d_{i−1})`."""
    return jax.vmap(lambda net: solve(net, task, t1, saveat=diffrax.SaveAt(ts=ts)).ys)(nets)


@eqx.filter_jit
def _losses_and_phases(weights, task: Task) -> tuple[Float[Array, "inits T"], Array]:
    mu = task_modes(task).mu

    def one(*ws):
        net = DeepLinearNetwork(ws)
        learnt = jnp.sum(modes_learnt(mode_strengths(net.end_to_end(), task), mu))
        return loss(net, task), learnt

    return jax.vmap(jax.vmap(one))(*weights)


def dln_study(
    config: StudyDLNConfig,
    frustration_config: StudyFrustrationConfig,
    key: Key,
    *,
    progress: bool = False,
    max_memory: int | Budget | None = None,
) -> dict:
    """Run the DLN part of a study; returns JSON-ready arrays over `(inits, times)`. Each run
    against null models is refused when it cannot fit `max_memory` (`_memory.budget`)."""
    widths, h = config.widths, len(config.widths) - 1
    task = Task.from_spectrum(np.asarray(config.singular_values), widths[0], widths[-1])
    init_key, search_key = jax.random.split(key)
    nets = [
        DeepLinearNetwork.init(widths, k, config.scheme, config.scale)
        for k in jax.random.split(init_key, config.inits)
    ]
    stacked = jax.tree.map(lambda *ws: jnp.stack(ws), *nets)
    t1 = jnp.asarray(config.t1, jnp.result_type(float))
    ts = jnp.linspace(0.0, t1, config.times)
    weights = _trajectories(stacked, task, t1, ts)
    losses, phases = _losses_and_phases(weights, task)

    shape = (config.inits, config.times)
    value, null_mean, null_std, pvalue = (np.zeros(shape) for _ in range(4))
    keys = jax.random.split(search_key, shape)
    cells = [(i, t) for i in range(config.inits) for t in range(config.times)]
    each = dataclasses.replace(frustration_config, robustness=False)  # many small graphs: one estimator
    for i, t in progress_bar(cells, desc="frustration of A(t)", enabled=progress, leave=False):
        graph = SignedGraph.from_weights([w[i, t] for w in weights])
        _, summary = frustration_vs_null(graph, each, keys[i, t], config.null_samples, max_memory=max_memory)
        value[i, t], null_mean[i, t] = summary["normalized"], summary["null_mean"]
        null_std[i, t], pvalue[i, t] = summary["null_std"], summary["pvalue"]
    phases = np.asarray(phases)
    by_phase = {
        str(p): {
            "count": int(np.sum(phases == p)),
            "frustration": float(np.mean(value[phases == p])),
            "null_mean": float(np.mean(null_mean[phases == p])),
        }
        for p in np.unique(phases)
    }
    return {
        "widths": list(widths),
        "depth": h,
        "singular_values": list(config.singular_values),
        "ts": np.asarray(ts).tolist(),
        "loss": np.asarray(losses).tolist(),
        "modes_learnt": phases.tolist(),
        "frustration": value.tolist(),
        "null_mean": null_mean.tolist(),
        "null_std": null_std.tolist(),
        "pvalue": pvalue.tolist(),
        "by_phase": by_phase,
    }
