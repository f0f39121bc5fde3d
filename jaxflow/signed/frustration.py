"""`frustration()`: the frustration `min_s δ(s)` of a signed graph, its result and search settings.

`δ(s)` is the energy of a gauge (`energy`); its minimum is an Ising ground state (NP-hard). The
heuristics run the layer-parallel engine (`_search`) and return the energy of a gauge they found,
hence an upper bound on the minimum; `"exact"` (`_exact`) also reports the solver's proven lower
bound. The default effort (`default_restarts`, `default_tol`, `default_survivors`) is set here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Bool

from .._checks import InputError, check_count, check_key, check_positive
from .._memo import per_instance
from .._types import Array, Float, FloatLike, Int, Key, Scalar
from ._exact import (
    ENUMERATION_MAX_WORK,
    ENUMERATION_WORK_PER_SECOND,
    enumerate_cover,
    enumeration_work,
    independent_set,
    milp_gauge,
)
from ._search import PROGRAM, SHARDED_PROGRAM, driver as make_driver, estimate, search
from .bounds import lower_bound

# `block_frustration` is re-exported for compatibility (`study/network.py` imports it from here).
from .energy import (
    block_frustration as block_frustration,
    energy_graph,
    gauge_frustration,
)
from .graph import SignedGraph, flat

METHODS = ("auto", "greedy", "layerwise", "anneal", "exact")
GREEDY_MAX_NODES = 8192  # the greedy baseline keeps the dense n×n field matrix A + Aᵀ
EXACT_MAX_EDGES = 5000
LARGE_GRAPH_EDGES = 10**7  # `default_tol`: graphs above this many edges stop at LARGE_GRAPH_TOL
LARGE_GRAPH_TOL = 1e-5
EXACT_TOLERANCE = 1e-9  # relative to Σ|a|: values this close to the bound count as proven optimal
RESTARTS = 64  # default restarts of every method but `"layerwise"`
MAX_SWEEPS = 1000  # default cap on sweeps (`"layerwise"`, `"anneal"`)
GREEDY_FLIPS_PER_NODE = 10  # `"greedy"`: default cap on flips, per node
LAYERWISE_NODE_STATES = 2**16  # `"layerwise"`: default restarts × nodes
LAYERWISE_RESTARTS = (8, 4096)  # `"layerwise"`: the default restarts lie in this range
SCREEN_FRACTION = 4  # `"layerwise"`: one restart in this many goes on past the screen by default
SCREEN_MIN_SURVIVORS = 64  # ... but at least this many (a screen pays off on large batches only)
ANNEAL_STEPS = 200  # `"anneal"`: default sweeps of the temperature schedule
ANNEAL_TEMPERATURES = (2.0, 0.1)  # `"anneal"`: default start and end temperatures (`_search._betas`)
SPARSE_MAX_DENSITY = 0.5  # `"auto"`: graphs with at most this share of their node pairs joined anneal …
SPARSE_MAX_IN_DEGREE = 8  # … and those of at most this mean in-degree are sparse:
SPARSE_RESTARTS = 16  # they anneal with this many restarts …
SPARSE_ANNEAL_STEPS = 8000  # … over this many sweeps; the others (convolutions) are local:
LOCAL_ANNEAL_STEPS = 100  # they anneal over this many sweeps, restarts as `"layerwise"`'s up to RESTARTS


class SearchSettings(NamedTuple):
    """How a gauge was searched for (the effort), so null models can repeat it exactly."""

    method: str = "layerwise"
    restarts: int = RESTARTS
    max_iterations: int = MAX_SWEEPS
    tol: FloatLike = 0.0
    anneal_steps: int = ANNEAL_STEPS
    anneal_temperatures: tuple[float, float] = ANNEAL_TEMPERATURES
    batch_size: int | None = None
    survivors: int | None = None


class FrustrationResult(eqx.Module):
    """The best gauge found and its frustration.

    `value = δ(gauge)` (recomputed from the gauge, so always an upper bound on the frustration);
    `lower_bound` is a proven lower bound (for the heuristics `bounds.lower_bound`, or 0 without
    `bound`; for `"exact"` the value itself after an enumeration, else HiGHS' dual bound), and
    `gap = (value − lower_bound) / value` how far `value` can be from optimal;
    `normalized = value / total` with `total = Σ|a|` (weighted) or the number of edges.
    `restart_values` holds `δ` of every restart's final gauge (as `½(Σ|a| − sᵀAs)`; for
    `"layerwise"`, of the screen's survivors);
    `iterations` counts sweeps (`"layerwise"`, `"anneal"`), flips (`"greedy"`), gauges enumerated
    or branch-and-bound nodes (`"exact"`); `converged` says whether every restart reached a local
    optimum (or the solver proved optimality).
    """

    value: Scalar
    normalized: Scalar
    total: Scalar
    lower_bound: Scalar
    gauge: tuple[Float[Array, "*_layer"], ...]
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
    def gap(self) -> Scalar:
        """`(value − lower_bound) / value` (0 when `value` is 0): the most `value` can be above optimal."""
        return (self.value - self.lower_bound) / jnp.maximum(self.value, jnp.finfo(self.value.dtype).tiny)

    @property
    def flat_gauge(self) -> Float[Array, " n"]:
        """The gauge as one `±1` vector over all nodes (the flat numbering of `A`)."""
        return flat(self.gauge)


# ------------------------------------------------------------------ estimators
# The engine is `_search`: one algorithm, run as one program (small graphs) or as one compiled
# function per block signature driven from Python (deep graphs); see `_search.choose_driver`.

_search_program = eqx.filter_jit(search)
_estimate_program = eqx.filter_jit(estimate)


def _estimate(graph: SignedGraph, key: Key, settings: SearchSettings, driver: str | None = None):
    """The best restart's gauge, its `δ` recomputed block by block, `Σ|a|`, every restart's `δ`,
    the sweeps and convergence: `search` then `block_energies`, by the driver `driver` (`None`:
    `choose_driver`); restarts in chunks spread over the devices."""
    drv = make_driver(driver, graph)
    if drv is PROGRAM:
        return _estimate_program(graph, key, settings, SHARDED_PROGRAM)
    return estimate(graph, key, settings, drv)


def _enumeration_budget(time_limit) -> float:
    """The most `enumeration_work` `"exact"` enumerates: `ENUMERATION_MAX_WORK`, and within a
    `time_limit` only what `ENUMERATION_WORK_PER_SECOND` gets through in it."""
    if time_limit is None:
        return float(ENUMERATION_MAX_WORK)
    seconds = float(check_positive(time_limit, "time_limit"))
    return min(ENUMERATION_MAX_WORK, ENUMERATION_WORK_PER_SECOND * seconds)


def _round_down(x: float, dtype) -> np.ndarray:
    """`x` in `dtype`, rounded towards −∞ (a lower bound stays one in float32)."""
    y = np.asarray(x, dtype)
    return np.nextafter(y, np.asarray(-np.inf, dtype)) if y > x else y


@jax.jit
def _normalized(value: Scalar, total: Scalar) -> Scalar:
    return value / jnp.maximum(total, jnp.finfo(total.dtype).tiny)


# ------------------------------------------------------------------ public API


def frustration(
    graph: SignedGraph,
    *,
    method: str = "auto",
    key: Key | None = None,
    restarts: int | None = None,
    weighted: bool = True,
    max_iterations: int | None = None,
    tol: FloatLike | None = None,
    anneal_steps: int | None = None,
    anneal_temperatures: tuple[float, float] = ANNEAL_TEMPERATURES,
    batch_size: int | None = None,
    survivors: int | None = None,
    dtype=None,
    time_limit: FloatLike | None = None,
    max_edges: int = EXACT_MAX_EDGES,
    bound: bool = True,
) -> FrustrationResult:
    """Estimate `min_s δ(s)`, the (weighted) frustration of `graph`.

    Methods: `"auto"` (default: `default_method`, `"anneal"` on sparse and convolutional graphs up
    to 1e7 edges, else `"layerwise"`),
    `"layerwise"` (block-coordinate descent, every layer set to the sign of its
    local field `h = (A + Aᵀ)s` at once, sweeps until the stopping rule (`tol`), from `restarts`
    random gauges vmapped, restart 0 from all-plus; after `SCREEN_SWEEPS` sweeps only the
    `survivors` lowest in `δ` go on, default a quarter); `"anneal"` (heat-bath annealing with the
    same layer-parallel updates over `anneal_steps` sweeps, in float32, temperatures
    `anneal_temperatures` in units of the root-mean-square field of a random gauge
    `sqrt(2Σa²/n)`, then `"layerwise"` descent); `"greedy"` (the published
    heuristic: flip the node whose row-plus-column sum `s_i h_i` is most negative until none is;
    dense, up to `GREEDY_MAX_NODES` nodes); `"exact"` (graphs up to `max_edges` edges: every gauge
    of a vertex cover `S` when `2^{|S|−1}·n <= 2^36`, the other nodes set to their best sign, else
    an integer program solved by HiGHS below the best `"anneal"` gauge, run first with the same
    effort). Heuristic values are upper bounds. Graphs of many blocks are searched block by block
    with one compiled function per block signature (`_search.choose_driver`): compile time bounded
    by the distinct block shapes, not the depth.

    Args:
        graph: the `SignedGraph`.
        method: `"auto"`, `"layerwise"`, `"anneal"`, `"greedy"` or `"exact"` (`METHODS`).
        key: PRNG key of the random restarts; default `jax.random.key(0)` (a fixed seed).
        restarts: random starts; default `default_restarts(graph, method)`.
        weighted: minimise the frustrated weight (`True`) or the number of frustrated edges.
        max_iterations: cap on sweeps (flips for `"greedy"`); default `MAX_SWEEPS`
            (`GREEDY_FLIPS_PER_NODE · n` for `"greedy"`).
        tol: stop once a sweep lowers `δ` by at most `tol · Σ|a|` in every restart (`0`: until
            nothing changes; `converged` is false when it stopped a restart before its fixed
            point); default `default_tol(graph)`.
        anneal_steps: `"anneal"`: sweeps of the temperature schedule; default
            `default_anneal_steps(graph)`.
        anneal_temperatures: `"anneal"`: start and end temperatures, start >= end > 0.
        batch_size: run the restarts this many at a time to bound memory (default: all at once);
            the chunks spread over every device of every process (`jax.devices()`), with the
            same values on any number of devices.
        survivors: `"layerwise"`: restarts that go on past the screen; default
            `default_survivors(restarts)`.
        dtype: cast the weights to this dtype first (e.g. `jnp.float32`); default: as they are.
        time_limit: `"exact"`: seconds it may take (a vertex cover too large to enumerate in them
            goes to HiGHS, which stops on time; its `lower_bound` then shows the remaining gap).
        max_edges: `"exact"`: the largest graph (in edges) it accepts.
        bound: the heuristics also prove a lower bound (`bounds.lower_bound`, matrix-free on big
            graphs), so that `[lower_bound, value]` holds the frustration; `False` leaves it 0.
    """
    if not isinstance(graph, SignedGraph):
        raise InputError(f"graph must be a SignedGraph, got {type(graph).__name__}")
    effort = (restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size, survivors)
    settings = _settings(graph, method, *effort)
    if dtype is not None:
        graph = graph.astype(dtype)
    target = energy_graph(graph, weighted)
    key = jax.random.key(0) if key is None else check_key(key)
    if method == "exact":
        total = target.abs_sum()
        edges = graph.num_edges()
        if edges > max_edges:
            raise InputError(
                f'method="exact" solves graphs of up to max_edges={max_edges} edges, this one has {edges}; '
                'use method="layerwise" or "anneal" (upper bounds), or raise max_edges'
            )
        A = np.asarray(target.to_dense(), np.float64)
        T = independent_set(A)
        if enumeration_work(T) <= _enumeration_budget(time_limit):
            s, bound, its = enumerate_cover(A, T)
            ok = True
        else:  # `"anneal"`'s best gauge is the incumbent; HiGHS looks only below it
            gauges, values, _, _ = _search_program(target, key, _settings(graph, "anneal", *effort))
            incumbent = np.concatenate([np.ravel(g[jnp.argmin(values)]) for g in gauges])
            cutoff = float(jnp.min(values)) - 0.5 * EXACT_TOLERANCE * max(float(total), 1.0)
            s, bound, its, ok = milp_gauge(A, time_limit, incumbent, cutoff)
        gauge = graph.unflatten(jnp.asarray(s, graph.dtype))
        value = gauge_frustration(graph, gauge, weighted=weighted)
        restart_values, lower = value[None], jnp.asarray(min(bound, float(value)), graph.dtype)
        iterations, converged = jnp.array(its), jnp.array(ok)
    else:
        gauge, value, total, restart_values, iterations, converged = _estimate(target, key, settings)
        proven = lower_bound(graph, weighted=weighted, upper=float(value)).value if bound else 0.0
        lower = jnp.asarray(_round_down(min(proven, float(value)), value.dtype))
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


@per_instance  # (host-side edge counts: ~0.15 ms on the digits CNN, asked for on every call)
def structure(graph: SignedGraph) -> str:
    """How `"auto"` treats `graph`, from its density (edges over its blocks' node pairs) and mean
    in-degree (edges per non-input node): `"dense"` (density above `SPARSE_MAX_DENSITY`: dense
    layers); `"large"` (the others past `LARGE_GRAPH_EDGES` edges); `"sparse"` (density and
    in-degree at most `SPARSE_MAX_DENSITY`, `SPARSE_MAX_IN_DEGREE`: pruned-network-like) or
    `"local"` (the rest: locally connected, as convolutions with `k²·C_in` in-edges per node).
    Block-coordinate descent ends at good fixed points on dense graphs, and on large ones as well
    as a short anneal at up to twice its time (ResNet-18 and -50 at 224²: 50 annealing sweeps
    ended 0.35% above and 0.24% below it), but 11–48% above the best known on sparse graphs and
    1–4% on small convolutional networks."""
    slots = sum(math.prod(b.in_shape) * math.prod(b.out_shape) for b in graph.blocks)
    fed = graph.num_nodes - math.prod(graph.shapes[0])
    edges = graph.num_edges()
    if slots == 0 or fed <= 0 or edges > SPARSE_MAX_DENSITY * slots:
        return "dense"
    if edges > LARGE_GRAPH_EDGES:
        return "large"
    return "sparse" if edges <= SPARSE_MAX_IN_DEGREE * fed else "local"


def default_method(graph: SignedGraph) -> str:
    """The estimator `"auto"` picks: `"anneal"` on sparse and local graphs, `"layerwise"` on dense
    and large ones (`structure`; the schedule and restarts from `default_anneal_steps`,
    `default_restarts`)."""
    return _method(structure(graph))


def default_restarts(graph: SignedGraph, method: str) -> int:
    """The default effort: for `"layerwise"` as many restarts as fit `2^16` node-states
    (`min(4096, max(8, 2^16 // n))`), screened down to a quarter (`default_survivors`): on 100
    random dense layered graphs of 200–2,000 edges this came within 1% of the proven optimum on all
    of them, in less time than `"greedy"`'s 64 restarts (`benchmarks/frustration.py`). `"anneal"`:
    `SPARSE_RESTARTS` on sparse graphs, the same node-state rule capped at `RESTARTS` on local ones
    (63 for the digits CNN, 8 for a ResNet), else `RESTARTS`, as every other method."""
    return _restarts(graph, method, structure(graph))


def default_anneal_steps(graph: SignedGraph) -> int:
    """`"anneal"`'s default schedule: `SPARSE_ANNEAL_STEPS` sweeps on sparse graphs,
    `LOCAL_ANNEAL_STEPS` on local ones, else `ANNEAL_STEPS` (`structure`). On the digits CNN and a
    ResNet-18-shaped graph at 16² (`benchmarks/peers.py`) 100 sweeps end 1–4% below
    `"layerwise"`'s fixed points."""
    return _anneal_steps(structure(graph))


def _method(kind: str) -> str:
    return "anneal" if kind in ("sparse", "local") else "layerwise"


def _anneal_steps(kind: str) -> int:
    return {"sparse": SPARSE_ANNEAL_STEPS, "local": LOCAL_ANNEAL_STEPS}.get(kind, ANNEAL_STEPS)


def _restarts(graph: SignedGraph, method: str, kind: str) -> int:
    method = _method(kind) if method == "auto" else method
    low, high = LAYERWISE_RESTARTS
    if method == "anneal":
        if kind != "local":
            return SPARSE_RESTARTS if kind == "sparse" else RESTARTS
        high = RESTARTS
    elif method != "layerwise":
        return RESTARTS
    return int(min(high, max(low, LAYERWISE_NODE_STATES // graph.num_nodes)))


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
    return min(restarts, max(SCREEN_MIN_SURVIVORS, restarts // SCREEN_FRACTION))


def _settings(
    graph, method, restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size, survivors
):
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    kind = structure(graph) if method in ("auto", "anneal", "layerwise") else "dense"
    if method == "auto":
        method = _method(kind)
    if anneal_steps is None:
        anneal_steps = _anneal_steps(kind) if method == "anneal" else ANNEAL_STEPS
    if method == "greedy" and graph.num_nodes > GREEDY_MAX_NODES:
        raise InputError(
            f'method="greedy" keeps the dense n×n matrix A + Aᵀ and takes up to {GREEDY_MAX_NODES} '
            f'nodes, this graph has {graph.num_nodes}; use method="layerwise"'
        )
    if max_iterations is None:
        max_iterations = GREEDY_FLIPS_PER_NODE * graph.num_nodes if method == "greedy" else MAX_SWEEPS
    if restarts is None:
        restarts = _restarts(graph, method, kind)
    if tol is None:
        tol = default_tol(graph)
    return SearchSettings(
        method=method,
        restarts=check_count(restarts, "restarts"),
        max_iterations=check_count(max_iterations, "max_iterations"),
        tol=check_positive(tol, "tol", allow_zero=True),
        anneal_steps=check_count(anneal_steps, "anneal_steps"),
        anneal_temperatures=_temperatures(anneal_temperatures),
        batch_size=None if batch_size is None else check_count(batch_size, "batch_size"),
        survivors=_survivors(method, restarts, survivors),
    )


def _survivors(method: str, restarts, survivors) -> int | None:
    """How many `"layerwise"` restarts go on past the screen (`default_survivors` unless given);
    `None` (no screen) for the other methods."""
    if method != "layerwise":
        if survivors is not None:
            raise InputError(f'survivors applies to method="layerwise" only, got method={method!r}')
        return None
    restarts = check_count(restarts, "restarts")
    if survivors is None:
        return default_survivors(restarts)
    return min(check_count(survivors, "survivors"), restarts)


def _temperatures(t) -> tuple[float, float]:
    try:
        t0, t1 = (float(x) for x in t)
    except (TypeError, ValueError):
        raise InputError(f"anneal_temperatures must be a pair (start, end), got {t!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1) and t0 >= t1 > 0):
        raise InputError(f"anneal_temperatures must satisfy start >= end > 0, got {t!r}")
    return t0, t1
