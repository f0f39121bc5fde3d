"""Frustration of a signed graph: the energy `δ(s)`, layer-parallel estimators and the exact optimum.

`δ(s) = Σ_{q→p : s_p a_pq s_q < 0} |a_pq| = ½(Σ|a| − sᵀAs)` for a gauge `s ∈ {±1}^n`; the
frustration is `min_s δ(s)` (an Ising ground state, NP-hard). Every heuristic returns the energy of
a gauge it found, hence an upper bound on the minimum; `"exact"` also reports the solver's proven
lower bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Bool

from .._checks import check_key, check_positive
from .._types import Array, Float, Int, Key, Scalar
from ._exact import ENUMERATION_MAX_WORK, enumerate_cover, enumeration_work, independent_set, milp_gauge
from .graph import SignedGraph

METHODS = ("greedy", "layerwise", "anneal", "exact")
GREEDY_MAX_NODES = 8192  # the greedy baseline keeps the dense n×n field matrix A + Aᵀ
EXACT_MAX_EDGES = 5000
EXACT_TOLERANCE = 1e-9  # relative to Σ|a|: values this close to the bound count as proven optimal


class SearchSettings(NamedTuple):
    """How a gauge was searched for (the effort), so null models can repeat it exactly."""

    method: str = "layerwise"
    restarts: int = 64
    max_iterations: int = 1000
    tol: float = 0.0
    anneal_steps: int = 200
    anneal_temperatures: tuple[float, float] = (2.0, 0.02)
    batch_size: int | None = None


class FrustrationResult(eqx.Module):
    """The best gauge found and its frustration.

    `value = δ(gauge)` (recomputed from the gauge, so always an upper bound on the frustration);
    `lower_bound` is a proven lower bound (0 for the heuristics; for `"exact"` the value itself
    after an enumeration, else HiGHS' dual bound); `normalized = value / total` with
    `total = Σ|a|` (weighted) or the number of edges. `restart_values` holds `δ` of every
    restart's final gauge (as `½(Σ|a| − sᵀAs)`); `iterations` counts sweeps (`"layerwise"`,
    `"anneal"`), flips (`"greedy"`), gauges enumerated or branch-and-bound nodes (`"exact"`);
    `converged` says whether every restart reached a local optimum (or the solver proved
    optimality).
    """

    value: Scalar
    normalized: Scalar
    total: Scalar
    lower_bound: Scalar
    gauge: tuple[Float[Array, "*layer"], ...]
    restart_values: Float[Array, " restarts"]
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]
    settings: SearchSettings = eqx.field(static=True)
    weighted: bool = eqx.field(static=True)

    @property
    def method(self) -> str:
        """The estimator: `"layerwise"`, `"anneal"`, `"greedy"` or `"exact"`."""
        return self.settings.method

    @property
    def is_upper_bound(self) -> bool:
        """Always true: `value` is the energy of an actual gauge, so `min_s δ(s) <= value`."""
        return True

    @property
    def optimal(self) -> bool:
        """Whether `value` is proven optimal (`lower_bound` reaches it, up to rounding)."""
        return bool(self.value - self.lower_bound <= EXACT_TOLERANCE * jnp.maximum(self.total, 1.0))

    @property
    def flat_gauge(self) -> Float[Array, " n"]:
        """The gauge as one `±1` vector over all nodes (the flat numbering of `A`)."""
        return jnp.concatenate([s.ravel() for s in self.gauge])


# ------------------------------------------------------------------------- energy


def _signed(graph: SignedGraph, weighted: bool) -> SignedGraph:
    """The graph whose energy is minimised: itself, or `sign(a)` for the unweighted count."""
    return graph if weighted else graph.map_weights(jnp.sign)


@eqx.filter_jit
def _block_energies(graph: SignedGraph, gauge: Sequence[Array]) -> tuple[Scalar, ...]:
    # δ_b = u'P v + v'P u + u'N u + v'N v with A_b = P − N (P, N >= 0), u = [s = +1], v = [s = −1]:
    # a sum of non-negative terms, so an unfrustrated block gives exactly 0 (no cancellation).
    out = []
    for (src, dst), block in zip(graph.links, graph.blocks):
        pos, neg = block.map_weights(jax.nn.relu), block.map_weights(lambda w: jax.nn.relu(-w))
        up_src, up_dst = (gauge[src] > 0).astype(graph.dtype), (gauge[dst] > 0).astype(graph.dtype)
        dn_src, dn_dst = 1 - up_src, 1 - up_dst
        out.append(
            jnp.vdot(up_dst, pos.apply(dn_src))
            + jnp.vdot(dn_dst, pos.apply(up_src))
            + jnp.vdot(up_dst, neg.apply(up_src))
            + jnp.vdot(dn_dst, neg.apply(dn_src))
        )
    return tuple(out)


def block_frustration(
    graph: SignedGraph, gauge: Sequence[Array], *, weighted: bool = True
) -> tuple[Scalar, ...]:
    """`δ_b(s)`, the frustrated weight (or edge count) inside each block `b` of `graph`."""
    gauge = _check_gauge(graph, gauge)
    return _block_energies(_signed(graph, weighted), gauge)


def gauge_frustration(graph: SignedGraph, gauge: Sequence[Array], *, weighted: bool = True) -> Scalar:
    """`δ(s) = Σ_{s_p a_pq s_q < 0} |a_pq|` (or the number of such edges when not `weighted`).

    `gauge` is one `±1` array per layer, or a flat vector over all nodes.
    """
    blocks = block_frustration(graph, gauge, weighted=weighted)
    return sum(blocks[1:], start=blocks[0]) if blocks else jnp.zeros((), graph.dtype)


# ------------------------------------------------------------------ estimators


# Searches run on a batch of gauges at once: every per-layer array carries a leading restart axis.


def _per_restart(fn, x: Array) -> Array:
    """Apply a one-vector block operation to each restart of the batch `x`."""
    return jax.vmap(fn)(x)


def _sum_rest(x: Array) -> Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def _quadratic_energy(graph: SignedGraph, s: Sequence[Array]) -> Float[Array, " restarts"]:
    """`½(Σ|a| − sᵀAs)` per restart: one product per block, to rank restarts (zero may round to ±ε)."""
    sas = sum(
        _sum_rest(s[dst] * _per_restart(block.apply, s[src]))
        for (src, dst), block in zip(graph.links, graph.blocks)
    )
    return (graph.abs_sum() - sas) / 2


def _layer_field(graph: SignedGraph, s: Sequence[Array], j: int) -> Array:
    """`h_j = (A s + Aᵀ s)` restricted to layer `j` (layers have no internal edges), per restart."""
    h = jnp.zeros_like(s[j])
    for b in graph.incoming(j):
        h = h + _per_restart(graph.blocks[b].apply, s[graph.links[b][0]])
    for b in graph.outgoing(j):
        h = h + _per_restart(graph.blocks[b].apply_transpose, s[graph.links[b][1]])
    return h


def _descend(graph: SignedGraph, s: tuple[Array, ...], max_sweeps: int, tol: float):
    """Block-coordinate descent: each layer in turn takes `s_j = sign(h_j)`, sweep after sweep.

    Flipping the nodes of a layer against their fields lowers `δ` by `Σ_flipped |h_i|`; sweeps stop
    when no restart gains more than `tol · Σ|a|` in a sweep (with `tol = 0`: when nothing changes).
    A restart at its fixed point is left unchanged by further sweeps, so the batch runs together.
    """
    threshold = tol * graph.abs_sum()

    def sweep(state):
        s, sweeps, _ = state
        s, gain = list(s), jnp.zeros(s[0].shape[0], s[0].dtype)
        for j in range(graph.num_layers):
            h = _layer_field(graph, s, j)
            new = jnp.where(h > 0, 1, jnp.where(h < 0, -1, s[j])).astype(s[j].dtype)
            gain = gain + _sum_rest(jnp.where(new != s[j], jnp.abs(h), 0))
            s[j] = new
        return tuple(s), sweeps + 1, gain

    state = (s, jnp.array(0), jnp.full(s[0].shape[0], jnp.inf, s[0].dtype))
    s, sweeps, gain = lax.while_loop(
        lambda st: jnp.any(st[2] > threshold) & (st[1] < max_sweeps), sweep, state
    )
    return s, sweeps, jnp.all(gain == 0)


def _anneal(graph: SignedGraph, s: tuple[Array, ...], key: Key, betas: Float[Array, " steps"]):
    """Heat-bath annealing with layer-parallel updates: `P(s_i = +1) = σ(2β h_i)`, β along `betas`."""

    def sweep(s, inputs):
        beta, k = inputs
        s, keys = list(s), jax.random.split(k, graph.num_layers)
        for j in range(graph.num_layers):
            h = _layer_field(graph, s, j)
            up = jax.random.uniform(keys[j], h.shape, h.dtype) < jax.nn.sigmoid(2 * beta * h)
            s[j] = jnp.where(up, 1, -1).astype(h.dtype)
        return tuple(s), None

    s, _ = lax.scan(sweep, s, (betas, jax.random.split(key, betas.shape[0])))
    return s


def _greedy(graph: SignedGraph, s: Float[Array, "restarts n"], max_flips: int):
    """The published greedy: flip the node with the most negative `s_i h_i` while one is negative."""
    A = graph.to_dense()
    J = A + A.T
    lanes = jnp.arange(s.shape[0])

    def flip(state):
        s, h, flips, _ = state
        i = jnp.argmin(s * h, axis=1)
        sign = jnp.where(jnp.min(s * h, axis=1) < 0, -1, 1).astype(s.dtype)  # −1: this restart flips
        h = h + ((sign - 1) * s[lanes, i])[:, None] * J[i]
        s = s.at[lanes, i].multiply(sign)
        return s, h, flips + 1, jnp.any(s * h < 0)

    h = s @ J
    state = (s, h, jnp.array(0), jnp.any(s * h < 0))
    s, _, flips, negative = lax.while_loop(lambda st: st[3] & (st[2] < max_flips), flip, state)
    return s, flips, ~negative


def _node_scale(graph: SignedGraph) -> Scalar:
    """Mean node strength `Σ_i (|A|1 + |A|ᵀ1)_i / n`: the temperature unit of `"anneal"`."""
    return 2 * graph.abs_sum() / max(graph.num_nodes, 1)


@eqx.filter_jit
def _search(graph: SignedGraph, key: Key, settings: SearchSettings):
    """Run `restarts` searches, `batch_size` at a time; returns gauges, energies, iterations, convergence."""
    method, restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size = settings
    batch = min(batch_size or restarts, restarts)
    chunks = -(-restarts // batch)
    dtype = graph.dtype

    def run(inputs):
        key, chunk = inputs
        k_start, k_anneal = jax.random.split(key)
        keys = jax.random.split(k_start, graph.num_layers)
        s = []
        for k, shape in zip(keys, graph.shapes):
            x = jnp.where(jax.random.bernoulli(k, 0.5, (batch, *shape)), 1, -1).astype(dtype)
            s.append(x.at[0].set(jnp.where(chunk == 0, 1, x[0])))  # restart 0 starts from all-plus
        if method == "greedy":
            flat, its, ok = _greedy(
                graph, jnp.concatenate([x.reshape(batch, -1) for x in s], 1), max_iterations
            )
            s = tuple(jax.vmap(graph.unflatten)(flat))
        else:
            if method == "anneal":
                t0, t1 = anneal_temperatures
                temps = t0 * (t1 / t0) ** jnp.linspace(0.0, 1.0, anneal_steps, dtype=dtype)
                s = _anneal(graph, tuple(s), k_anneal, 1 / (temps * _node_scale(graph)))
            s, its, ok = _descend(graph, tuple(s), max_iterations, tol)
            its = its + (anneal_steps if method == "anneal" else 0)
        return s, _quadratic_energy(graph, s), its, ok

    gauges, values, its, ok = lax.map(run, (jax.random.split(key, chunks), jnp.arange(chunks)))
    gauges = tuple(g.reshape(chunks * batch, *g.shape[2:])[:restarts] for g in gauges)
    return gauges, values.reshape(-1)[:restarts], jnp.max(its), jnp.all(ok)


# ------------------------------------------------------------------ public API


def frustration(
    graph: SignedGraph,
    *,
    method: str = "layerwise",
    key: Key | None = None,
    restarts: int | None = None,
    weighted: bool = True,
    max_iterations: int | None = None,
    tol: float = 0.0,
    anneal_steps: int = 200,
    anneal_temperatures: tuple[float, float] = (2.0, 0.02),
    batch_size: int | None = None,
    dtype=None,
    time_limit: float | None = None,
    max_edges: int = EXACT_MAX_EDGES,
) -> FrustrationResult:
    """Estimate `min_s δ(s)`, the (weighted) frustration of `graph`.

    Methods: `"layerwise"` (default: block-coordinate descent, every layer set to the sign of its
    local field `h = (A + Aᵀ)s` at once, sweeps until nothing changes, from `restarts` random gauges
    vmapped; restart 0 starts from all-plus); `"anneal"` (heat-bath annealing with the same
    layer-parallel updates over `anneal_steps` sweeps, temperatures `anneal_temperatures` in units of
    the mean node strength, then `"layerwise"` descent); `"greedy"` (the published heuristic: flip the
    node whose row-plus-column sum `s_i h_i` is most negative until none is; dense, up to
    8192 nodes); `"exact"` (graphs up to `max_edges` edges: every gauge of a vertex cover `S` when
    `2^{|S|−1}·n <= 2^36`, the other nodes set to their best sign, else an integer
    program solved by HiGHS below the best `"anneal"` gauge, run first with the same effort).
    Heuristic values are upper bounds.

    Effort: `restarts` defaults to `default_restarts(graph, method)`; `max_iterations` caps sweeps
    (flips for `"greedy"`); `tol > 0` stops the sweeps once a
    sweep lowers `δ` by at most `tol · Σ|a|` in every restart (for huge graphs, whose long tail of
    tiny improvements costs many sweeps; `converged` is then false). `batch_size` runs the restarts
    that many at a time to bound memory; `dtype` (e.g. `jnp.float32`) casts the weights first;
    `time_limit` (seconds) caps HiGHS, whose `lower_bound` then shows the remaining gap.
    """
    if not isinstance(graph, SignedGraph):
        raise ValueError(f"graph must be a SignedGraph, got {type(graph).__name__}")
    effort = (restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size)
    settings = _settings(graph, method, *effort)
    if dtype is not None:
        graph = graph.astype(dtype)
    target = _signed(graph, weighted)
    total = target.abs_sum()
    key = jax.random.key(0) if key is None else check_key(key)
    if method == "exact":
        edges = graph.num_edges()
        if edges > max_edges:
            raise ValueError(
                f'method="exact" solves graphs of up to max_edges={max_edges} edges, this one has {edges}; '
                'use method="layerwise" or "anneal" (upper bounds), or raise max_edges'
            )
        A = np.asarray(target.to_dense(), np.float64)
        T = independent_set(A)
        if enumeration_work(T) <= ENUMERATION_MAX_WORK:
            s, bound, its = enumerate_cover(A, T)
            ok = True
        else:  # `"anneal"`'s best gauge is the incumbent; HiGHS looks only below it
            gauges, values, _, _ = _search(target, key, _settings(graph, "anneal", *effort))
            incumbent = np.concatenate([np.ravel(g[jnp.argmin(values)]) for g in gauges])
            cutoff = float(jnp.min(values)) - 0.5 * EXACT_TOLERANCE * max(float(total), 1.0)
            s, bound, its, ok = milp_gauge(A, time_limit, incumbent, cutoff)
        gauge = graph.unflatten(jnp.asarray(s, graph.dtype))
        value = gauge_frustration(graph, gauge, weighted=weighted)
        restart_values, lower = value[None], jnp.asarray(min(bound, float(value)), graph.dtype)
        iterations, converged = jnp.array(its), jnp.array(ok)
    else:
        gauges, restart_values, iterations, converged = _search(target, key, settings)
        best = jnp.argmin(restart_values)
        gauge = tuple(g[best] for g in gauges)
        value = gauge_frustration(graph, gauge, weighted=weighted)
        lower = jnp.zeros((), graph.dtype)
    return FrustrationResult(
        value=value,
        normalized=value / jnp.maximum(total, jnp.finfo(total.dtype).tiny),
        total=total,
        lower_bound=lower,
        gauge=gauge,
        restart_values=restart_values,
        iterations=iterations,
        converged=converged,
        settings=settings,
        weighted=weighted,
    )


# ------------------------------------------------------------------ validation


def default_restarts(graph: SignedGraph, method: str) -> int:
    """The default effort: 64 restarts, and for `"layerwise"` as many as fit `2^20` node-states
    (`min(512, max(8, 2^20 // n))`): on 100 random layered graphs of 200–2,000 edges, 512 restarts
    came within 1% of the best known gauge on all of them, 64 on 75 (`benchmarks/frustration.py`)."""
    if method != "layerwise":
        return 64
    return int(min(512, max(8, 2**20 // graph.num_nodes)))


def _settings(graph, method, restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "greedy" and graph.num_nodes > GREEDY_MAX_NODES:
        raise ValueError(
            f'method="greedy" keeps the dense n×n matrix A + Aᵀ and takes up to {GREEDY_MAX_NODES} '
            f'nodes, this graph has {graph.num_nodes}; use method="layerwise"'
        )
    if max_iterations is None:
        max_iterations = 10 * graph.num_nodes if method == "greedy" else 1000
    if restarts is None:
        restarts = default_restarts(graph, method)
    return SearchSettings(
        method,
        _count(restarts, "restarts"),
        _count(max_iterations, "max_iterations"),
        check_positive(tol, "tol", allow_zero=True),
        _count(anneal_steps, "anneal_steps"),
        _temperatures(anneal_temperatures),
        None if batch_size is None else _count(batch_size, "batch_size"),
    )


def _count(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _temperatures(t) -> tuple[float, float]:
    try:
        t0, t1 = (float(x) for x in t)
    except (TypeError, ValueError):
        raise ValueError(f"anneal_temperatures must be a pair (start, end), got {t!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1) and t0 >= t1 > 0):
        raise ValueError(f"anneal_temperatures must satisfy start >= end > 0, got {t!r}")
    return t0, t1


def _check_gauge(graph: SignedGraph, gauge) -> tuple[Array, ...]:
    """Per-layer `±1` arrays of the layers' shapes (a flat vector over all nodes is split)."""
    if not isinstance(gauge, (tuple, list)):
        gauge = jnp.asarray(gauge)
        if gauge.shape != (graph.num_nodes,):
            raise ValueError(
                f"gauge must be a ±1 vector over all {graph.num_nodes} nodes or one array per layer, "
                f"got shape {gauge.shape}"
            )
        gauge = graph.unflatten(gauge)
    if len(gauge) != graph.num_layers or any(jnp.shape(g) != s for g, s in zip(gauge, graph.shapes)):
        raise ValueError(
            f"gauge must hold one array per layer of shapes {graph.shapes}, got "
            f"{[jnp.shape(g) for g in gauge]}"
        )
    return tuple(jnp.asarray(g) for g in gauge)
