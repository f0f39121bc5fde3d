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
from jaxtyping import Bool

from .._checks import check_key, check_positive
from .._types import Array, Float, Int, Key, Scalar
from ._exact import ENUMERATION_MAX_WORK, enumerate_cover, enumeration_work, independent_set, milp_gauge
from ._search import PROGRAM, block_energies, driver as make_driver, estimate, search
from .graph import SignedGraph

METHODS = ("greedy", "layerwise", "anneal", "exact")
GREEDY_MAX_NODES = 8192  # the greedy baseline keeps the dense n×n field matrix A + Aᵀ
EXACT_MAX_EDGES = 5000
LARGE_GRAPH_EDGES = 10**7  # `default_tol`: graphs above this many edges stop at LARGE_GRAPH_TOL
LARGE_GRAPH_TOL = 1e-5
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
    survivors: int | None = None


class FrustrationResult(eqx.Module):
    """The best gauge found and its frustration.

    `value = δ(gauge)` (recomputed from the gauge, so always an upper bound on the frustration);
    `lower_bound` is a proven lower bound (0 for the heuristics; for `"exact"` the value itself
    after an enumeration, else HiGHS' dual bound); `normalized = value / total` with
    `total = Σ|a|` (weighted) or the number of edges. `restart_values` holds `δ` of every
    restart's final gauge (as `½(Σ|a| − sᵀAs)`; for `"layerwise"`, of the screen's survivors);
    `iterations` counts sweeps (`"layerwise"`, `"anneal"`), flips (`"greedy"`), gauges enumerated
    or branch-and-bound nodes (`"exact"`); `converged` says whether every restart reached a local
    optimum (or the solver proved optimality).
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


_block_energies_program = eqx.filter_jit(block_energies)


def _block_energies(graph: SignedGraph, gauge: Sequence[Array], driver: str | None = None):
    """`δ_b(s)` of every block, in one program or block by block (`choose_driver`)."""
    drv = make_driver(driver, graph)
    return _block_energies_program(graph, gauge) if drv is PROGRAM else block_energies(graph, gauge, drv)


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
# The engine is `_search`: one algorithm, run as one program (small graphs) or as one compiled
# function per block signature driven from Python (deep graphs); see `_search.choose_driver`.

_search = eqx.filter_jit(search)
_estimate_program = eqx.filter_jit(estimate)


def _estimate(graph: SignedGraph, key: Key, settings: SearchSettings, driver: str | None = None):
    """The best restart's gauge, its `δ` recomputed block by block, `Σ|a|`, every restart's `δ`,
    the sweeps and convergence: `search` then `block_energies`, by the driver `driver` (`None`:
    `choose_driver`)."""
    drv = make_driver(driver, graph)
    return _estimate_program(graph, key, settings) if drv is PROGRAM else estimate(graph, key, settings, drv)


def _normalized(value: Scalar, total: Scalar) -> Scalar:
    return value / jnp.maximum(total, jnp.finfo(total.dtype).tiny)


# ------------------------------------------------------------------ public API


def frustration(
    graph: SignedGraph,
    *,
    method: str = "layerwise",
    key: Key | None = None,
    restarts: int | None = None,
    weighted: bool = True,
    max_iterations: int | None = None,
    tol: float | None = None,
    anneal_steps: int = 200,
    anneal_temperatures: tuple[float, float] = (2.0, 0.02),
    batch_size: int | None = None,
    survivors: int | None = None,
    dtype=None,
    time_limit: float | None = None,
    max_edges: int = EXACT_MAX_EDGES,
) -> FrustrationResult:
    """Estimate `min_s δ(s)`, the (weighted) frustration of `graph`.

    Methods: `"layerwise"` (default: block-coordinate descent, every layer set to the sign of its
    local field `h = (A + Aᵀ)s` at once, sweeps until the stopping rule (`tol`), from `restarts` random gauges
    vmapped, restart 0 from all-plus; after `SCREEN_SWEEPS` sweeps only the `survivors` lowest in
    `δ` go on, default a quarter); `"anneal"` (heat-bath annealing with the same
    layer-parallel updates over `anneal_steps` sweeps, temperatures `anneal_temperatures` in units of
    the mean node strength, then `"layerwise"` descent); `"greedy"` (the published heuristic: flip the
    node whose row-plus-column sum `s_i h_i` is most negative until none is; dense, up to
    8192 nodes); `"exact"` (graphs up to `max_edges` edges: every gauge of a vertex cover `S` when
    `2^{|S|−1}·n <= 2^36`, the other nodes set to their best sign, else an integer
    program solved by HiGHS below the best `"anneal"` gauge, run first with the same effort).
    Heuristic values are upper bounds.

    Effort: `restarts` defaults to `default_restarts(graph, method)`; `max_iterations` caps sweeps
    (flips for `"greedy"`); `tol` stops the sweeps once a sweep lowers `δ` by at most `tol · Σ|a|`
    in every restart (`0`: until nothing changes; `converged` is false when it stopped a restart
    before its fixed point), default `default_tol(graph)`: `0` up to 10^7 edges, `1e-5` above,
    where the long tail of tiny improvements costs most sweeps. `batch_size` runs the restarts
    that many at a time to bound memory; `dtype` (e.g. `jnp.float32`) casts the weights first;
    `time_limit` (seconds) caps HiGHS, whose `lower_bound` then shows the remaining gap. Graphs of
    many blocks are searched block by block with one compiled function per block signature
    (`_search.choose_driver`): compile time bounded by the distinct block shapes, not the depth.
    """
    if not isinstance(graph, SignedGraph):
        raise ValueError(f"graph must be a SignedGraph, got {type(graph).__name__}")
    effort = (restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size, survivors)
    settings = _settings(graph, method, *effort)
    if dtype is not None:
        graph = graph.astype(dtype)
    target = _signed(graph, weighted)
    key = jax.random.key(0) if key is None else check_key(key)
    if method == "exact":
        total = target.abs_sum()
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
        gauge, value, total, restart_values, iterations, converged = _estimate(target, key, settings)
        lower = jnp.zeros((), graph.dtype)
    return FrustrationResult(
        value=value,
        normalized=_normalized(value, total),
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
    """The default effort: 64 restarts, and for `"layerwise"` as many as fit `2^16` node-states
    (`min(4096, max(8, 2^16 // n))`), screened down to a quarter (`default_survivors`): on 100
    random dense layered graphs of 200–2,000 edges this came within 1% of the proven optimum on
    all of them, in less time than `"greedy"`'s 64 restarts (`benchmarks/frustration.py`)."""
    if method != "layerwise":
        return 64
    return int(min(4096, max(8, 2**16 // graph.num_nodes)))


def default_tol(graph: SignedGraph) -> float:
    """The default stopping rule: `0` (sweep until nothing changes) for graphs of up to
    `LARGE_GRAPH_EDGES` (10^7) edges, `LARGE_GRAPH_TOL` (10^-5) above: stop once no restart gains
    more than `tol·Σ|a|` in a sweep. Past 10^7 edges the last sweeps to a fixed point lower `δ` by
    ~10^-5 of itself (a 1e7-edge MLP: 64 sweeps → 37; ResNet-18-shaped, 2.2e7 edges: 90 → 45;
    1.7e9 edges: ~300 → 53), far below the estimator's own gap to the best known value; below
    ~10^6 edges the rule changes nothing."""
    slots = sum(math.prod(b.in_shape) * math.prod(b.out_shape) for b in graph.blocks)
    if slots <= LARGE_GRAPH_EDGES:  # no more edges than node pairs: small, without counting them
        return 0.0
    return LARGE_GRAPH_TOL if graph.num_edges() > LARGE_GRAPH_EDGES else 0.0


def default_survivors(restarts: int) -> int:
    """`"layerwise"` restarts that go on past the screen by default: a quarter, at least 64 (a
    screen pays off on large batches; up to 64 restarts all descend)."""
    return min(restarts, max(64, restarts // 4))


def _settings(
    graph, method, restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size, survivors
):
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
    if tol is None:
        tol = default_tol(graph)
    return SearchSettings(
        method,
        _count(restarts, "restarts"),
        _count(max_iterations, "max_iterations"),
        check_positive(tol, "tol", allow_zero=True),
        _count(anneal_steps, "anneal_steps"),
        _temperatures(anneal_temperatures),
        None if batch_size is None else _count(batch_size, "batch_size"),
        _survivors(method, restarts, survivors),
    )


def _survivors(method: str, restarts, survivors) -> int | None:
    """How many `"layerwise"` restarts go on past the screen (`default_survivors` unless given);
    `None` (no screen) for the other methods."""
    if method != "layerwise":
        if survivors is not None:
            raise ValueError(f'survivors applies to method="layerwise" only, got method={method!r}')
        return None
    restarts = _count(restarts, "restarts")
    return default_survivors(restarts) if survivors is None else min(_count(survivors, "survivors"), restarts)


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
