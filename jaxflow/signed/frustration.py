"""`frustration()`: the frustration `min_s δ(s)` of a signed graph, its result and search settings.

`δ(s)` is the energy of a gauge (`energy`); its minimum is an Ising ground state (NP-hard). The
heuristics run the layer-parallel engine (`_search`) and return the energy of a gauge they found,
hence an upper bound on the minimum; `"exact"` (`_exact`) also reports the solver's proven lower
bound. The default effort (`default_restarts`, `default_tol`, `default_survivors`) is set here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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
from ._search import (
    PROGRAM,
    SHARDED_PROGRAM,
    driver as make_driver,
    estimate,
    estimate_jobs,
    job_key,
    search,
)
from .bounds import lower_bound

# `block_frustration` is re-exported for compatibility (`study/network.py` imports it from here).
from .energy import (
    block_frustration as block_frustration,
    energy_graph,
    gauge_frustration,
)
from .graph import SignedGraph, flat

METHODS = ("auto", "ladder", "greedy", "layerwise", "anneal", "exact")
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
LADDER_START_SWEEPS = 32  # `"ladder"`: sweeps of its first annealing rung; restarts `ladder_batch`
LADDER_BATCH = 64  # `"ladder"`: the most restarts of one annealing job
LADDER_MAX_RESTARTS = 64  # `"ladder"`: restarts of a rung at most (the default; `restarts=` sets it) …
LADDER_MAX_SWEEPS = 8192  # … and sweeps (the default; `anneal_steps=` sets it)
LADDER_TOL = 2e-3  # `"ladder"`: a rung that lowers the best value by at most this share of it is idle …
LADDER_PATIENCE = 2  # … and the ladder stops after this many idle rungs in a row


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
    rungs: tuple[tuple[int, int], ...] = ()


class FrustrationResult(eqx.Module):
    """The best gauge found and its frustration.

    `value = δ(gauge)` (recomputed from the gauge, so always an upper bound on the frustration);
    `lower_bound` is a proven lower bound (for the heuristics `bounds.lower_bound`, or 0 without
    `bound`; for `"exact"` the value itself after an enumeration, else HiGHS' dual bound), and
    `gap = (value − lower_bound) / value` how far `value` can be from optimal;
    `normalized = value / total` with `total = Σ|a|` (weighted) or the number of edges.
    `restart_values` holds `δ` of every restart's final gauge (as `½(Σ|a| − sᵀAs)`; for
    `"layerwise"`, of the screen's survivors; for `"ladder"`, the lowest of each job, `ladder_jobs`);
    `iterations` counts sweeps (`"layerwise"`, `"anneal"`, the most of any rung for `"ladder"`),
    flips (`"greedy"`), gauges enumerated or branch-and-bound nodes (`"exact"`); `converged` says
    whether every restart reached a local optimum (or the solver proved optimality).
    `rung_values[k]` is the best `δ` after rung `k` of `"ladder"` (`settings.rungs[k]` its
    `(restarts, sweeps)`): the convergence evidence; one entry, `value`, for the other methods.
    """

    value: Scalar
    normalized: Scalar
    total: Scalar
    lower_bound: Scalar
    gauge: tuple[Float[Array, "*_layer"], ...]
    restart_values: Float[Array, " restarts"]
    iterations: Int[Array, ""]
    converged: Bool[Array, ""]
    rung_values: Float[Array, " rungs"]
    settings: SearchSettings = eqx.field(static=True)
    weighted: bool = eqx.field(static=True)

    @property
    def method(self) -> str:
        """The estimator: `"ladder"`, `"layerwise"`, `"anneal"`, `"greedy"` or `"exact"`."""
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


def ladder_batch(graph: SignedGraph, settings: SearchSettings) -> int:
    """Restarts of one annealing job of `"ladder"`: `"layerwise"`'s node-state rule capped at
    `LADDER_BATCH` (`min(64, max(8, 2^16 // n))`: restarts run as one batch of products, far
    cheaper per restart than one at a time), at most `settings.restarts` and
    `settings.batch_size`."""
    low, _ = LAYERWISE_RESTARTS
    batch = min(LADDER_BATCH, max(low, LAYERWISE_NODE_STATES // graph.num_nodes), settings.restarts)
    return min(batch, settings.batch_size or batch)


def rung_jobs(rung: tuple[int, int], batch: int) -> list[tuple[int, int]]:
    """The jobs of a rung `(restarts, sweeps)`: `(0, restarts)`, one descent from `restarts`
    random gauges (`"layerwise"`, screened), when `sweeps` is 0; else `(sweeps, b)` for each batch
    `b` of `batch` restarts annealed over `sweeps` sweeps (restarts rounded up to whole batches).
    A rung that doubles the restarts of the last reuses its batches."""
    restarts, sweeps = rung
    if not sweeps:
        return [(0, restarts)]
    return [(sweeps, b) for b in range(-(-restarts // batch))]


def ladder_jobs(rungs, batch: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The distinct jobs of `rungs` in the order first needed, and after each rung how many of
    them it has needed so far (the best value after rung `k` is the least over the first
    `ends[k]` jobs)."""
    jobs, ends = [], []
    for rung in rungs:
        jobs += [job for job in rung_jobs(rung, batch) if job not in jobs]
        ends.append(len(jobs))
    return jobs, ends


def rung_settings(settings: SearchSettings, rung: tuple[int, int]) -> SearchSettings:
    """The search of one `"ladder"` rung `(restarts, sweeps)`: `"layerwise"` from `restarts`
    random gauges when `sweeps` is 0, else `"anneal"` of `restarts` restarts over `sweeps`
    sweeps; stopping rule, temperatures and `batch_size` from the ladder's `settings`."""
    restarts, sweeps = rung
    return settings._replace(
        method="anneal" if sweeps else "layerwise",
        restarts=restarts,
        anneal_steps=sweeps or ANNEAL_STEPS,
        survivors=None if sweeps else default_survivors(restarts),
        rungs=(),
    )


def ladder_start(graph: SignedGraph, batch: int, max_sweeps: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The first two rungs `(restarts, sweeps)` of `"ladder"`: the `"layerwise"` default
    (`(default_restarts(graph, "layerwise"), 0)`), then `batch` restarts annealed over
    `min(LADDER_START_SWEEPS, max_sweeps)` sweeps."""
    return (default_restarts(graph, "layerwise"), 0), (batch, min(LADDER_START_SWEEPS, max_sweeps))


def ladder_step(rung: tuple[int, int], grow: str, max_restarts: int, max_sweeps: int):
    """The rung after `rung`: its sweeps (`grow="sweeps"`) or restarts (`"restarts"`) doubled, up
    to `max_sweeps` or `max_restarts`; `None` when that one is at its cap."""
    restarts, sweeps = rung
    if grow == "sweeps":
        return (restarts, min(2 * sweeps, max_sweeps)) if sweeps < max_sweeps else None
    return (min(2 * restarts, max_restarts), sweeps) if restarts < max_restarts else None


def _idle(before: float, after: float) -> bool:
    """Whether a rung that moved the best value from `before` to `after` lowered it by at most
    `LADDER_TOL` of it."""
    return before - after <= LADDER_TOL * after


_jobs_program = eqx.filter_jit(estimate_jobs)


def _job(graph: SignedGraph, key: Key, settings: SearchSettings, job: tuple[int, int], batch: int):
    """`_estimate` of one ladder job (`rung_jobs`) and its lowest `δ`."""
    sweeps, count = job
    if not sweeps:
        out = _estimate(graph, job_key(key, 0, count), rung_settings(settings, (count, 0)))
        return out, float(jnp.min(out[3]))
    run = rung_settings(settings, (batch, 0))._replace(method="anneal", survivors=None)
    drv = make_driver(None, graph)
    jobs = np.array([job])
    out = (
        _jobs_program(graph, key, run, jobs, PROGRAM)
        if drv is PROGRAM
        else estimate_jobs(graph, key, run, jobs, drv)
    )
    return out, float(out[3][0])


def _ladder(graph: SignedGraph, key: Key, settings: SearchSettings, status=None):
    """`"ladder"`: the rungs of `settings.rungs` in turn or, when it is empty, `ladder_start`'s,
    then one `ladder_step` after another: sweeps doubled while that lowers the best value, else
    restarts (and back), until `LADDER_PATIENCE` rungs in a row are idle (`_idle`) or both are at
    their caps. Returns the `_estimate` of the best job, the best value after each rung, and the
    rungs run. `status` hears each rung as it ends."""
    batch = ladder_batch(graph, settings)
    caps = settings.restarts, settings.anneal_steps
    fixed = bool(settings.rungs)
    todo = list(settings.rungs or ladder_start(graph, batch, settings.anneal_steps))
    best, jobs, values, bests, rungs, idle, grow = None, [], [], [], [], 0, "sweeps"
    its, ok = 0, True
    while todo:
        rung = todo.pop(0)
        for job in rung_jobs(rung, batch):
            if job in jobs:
                continue
            out, value = _job(graph, key, settings, job, batch)
            jobs.append(job)
            values.append(value)
            its, ok = max(its, int(out[4])), ok and bool(out[5])
            if best is None or out[1] < best[1]:
                best = out
        if len(rungs) > 1:  # an annealing rung after the first: did its doubling pay?
            idle = idle + 1 if _idle(bests[-1], min(values)) else 0
            if idle:
                grow = "restarts" if grow == "sweeps" else "sweeps"
        bests.append(min(values))
        rungs.append(tuple(rung))
        if status is not None:
            share = bests[-1] / max(float(best[2]), np.finfo(np.float64).tiny)
            status(f"rung {len(rungs) - 1} ({rung[0]}×{rung[1]}): best δ/Σ|a| = {share:.5f}")
        if fixed or todo or idle >= LADDER_PATIENCE or not rung[1]:
            continue
        step = ladder_step(rung, grow, *caps)
        if step is None:  # this one is at its cap: the other
            grow = "restarts" if grow == "sweeps" else "sweeps"
            step = ladder_step(rung, grow, *caps)
        if step is not None:
            todo.append(step)
    gauge, value, total = best[:3]
    found = (gauge, value, total, jnp.asarray(values, value.dtype), jnp.array(its), jnp.array(ok))
    return found, jnp.asarray(bests, value.dtype), tuple(rungs)


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
    rungs: tuple[tuple[int, int], ...] | None = None,
    status: Callable[[str], None] | None = None,
) -> FrustrationResult:
    """Estimate `min_s δ(s)`, the (weighted) frustration of `graph`.

    Methods: `"auto"` (default) is `"ladder"`: an effort ladder that decides from its own
    evidence (`ladder_schedule`): the `"layerwise"` default, then `"anneal"` rungs doubling sweeps
    and restarts in turn, each job from its own key (`job_key`), until `LADDER_PATIENCE` rungs in a
    row lower the best value by at most `LADDER_TOL` of it; the best rung's gauge is returned, with
    the best value after each rung in `rung_values` and the rungs in `settings.rungs`.
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
        method: `"auto"`, `"ladder"`, `"layerwise"`, `"anneal"`, `"greedy"` or `"exact"` (`METHODS`).
        key: PRNG key of the random restarts; default `jax.random.key(0)` (a fixed seed).
        restarts: random starts; default `default_restarts(graph, method)`. `"ladder"`: the most
            restarts of a rung (default `LADDER_MAX_RESTARTS`).
        weighted: minimise the frustrated weight (`True`) or the number of frustrated edges.
        max_iterations: cap on sweeps (flips for `"greedy"`); default `MAX_SWEEPS`
            (`GREEDY_FLIPS_PER_NODE · n` for `"greedy"`).
        tol: stop once a sweep lowers `δ` by at most `tol · Σ|a|` in every restart (`0`: until
            nothing changes; `converged` is false when it stopped a restart before its fixed
            point); default `default_tol(graph)`.
        anneal_steps: `"anneal"`: sweeps of the temperature schedule; default
            `default_anneal_steps(graph)`. `"ladder"`: the most sweeps of a rung (default
            `LADDER_MAX_SWEEPS`).
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
        rungs: `"ladder"`: climb exactly these rungs `(restarts, sweeps)` (as a result's
            `settings.rungs`, to repeat its search), instead of deciding when to stop.
        status: hears what the search is doing, in words (each rung of `"ladder"` as it ends,
            the bound before it is proven).
    """
    if not isinstance(graph, SignedGraph):
        raise InputError(f"graph must be a SignedGraph, got {type(graph).__name__}")
    effort = (restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size, survivors)
    settings = _settings(graph, method, *effort, rungs)
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
            gauges, values, _, _ = _search_program(target, key, _settings(graph, "anneal", *effort, None))
            incumbent = np.concatenate([np.ravel(g[jnp.argmin(values)]) for g in gauges])
            cutoff = float(jnp.min(values)) - 0.5 * EXACT_TOLERANCE * max(float(total), 1.0)
            s, bound, its, ok = milp_gauge(A, time_limit, incumbent, cutoff)
        gauge = graph.unflatten(jnp.asarray(s, graph.dtype))
        value = gauge_frustration(graph, gauge, weighted=weighted)
        restart_values, lower = value[None], jnp.asarray(min(bound, float(value)), graph.dtype)
        iterations, converged = jnp.array(its), jnp.array(ok)
        rung_values = value[None]
    else:
        if settings.method == "ladder":
            found, rung_values, climbed = _ladder(target, key, settings, status)
            settings = settings._replace(rungs=climbed)
        else:
            found = _estimate(target, key, settings)
        gauge, value, total, restart_values, iterations, converged = found
        if settings.method != "ladder":
            rung_values = value[None]
        if bound and status is not None:
            status("proving a lower bound")
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
        rung_values=rung_values,
        settings=settings,
        weighted=weighted,
    )


# ------------------------------------------------------------------ validation


@per_instance  # (host-side edge counts, asked for on every call)
def structure(graph: SignedGraph) -> str:
    """The kind of graph whose defaults `"anneal"` takes when asked for by name
    (`default_anneal_steps`, `default_restarts`), from its density (edges over its blocks' node
    pairs) and mean in-degree (edges per non-input node): `"dense"` (density above
    `SPARSE_MAX_DENSITY`: dense layers); `"large"` (the others past `LARGE_GRAPH_EDGES` edges);
    `"sparse"` (density and in-degree at most `SPARSE_MAX_DENSITY`, `SPARSE_MAX_IN_DEGREE`:
    pruned-network-like) or `"local"` (the rest: locally connected, as convolutions with
    `k²·C_in` in-edges per node). The default, `"ladder"`, does not use it."""
    slots = sum(math.prod(b.in_shape) * math.prod(b.out_shape) for b in graph.blocks)
    fed = graph.num_nodes - math.prod(graph.shapes[0])
    edges = graph.num_edges()
    if slots == 0 or fed <= 0 or edges > SPARSE_MAX_DENSITY * slots:
        return "dense"
    if edges > LARGE_GRAPH_EDGES:
        return "large"
    return "sparse" if edges <= SPARSE_MAX_IN_DEGREE * fed else "local"


def default_restarts(graph: SignedGraph, method: str) -> int:
    """The default restarts of `method`: for `"layerwise"` as many as fit `2^16` node-states
    (`min(4096, max(8, 2^16 // n))`), screened down to a quarter (`default_survivors`);
    `"anneal"`: `SPARSE_RESTARTS` on sparse graphs, the same node-state rule capped at `RESTARTS`
    on local ones, else `RESTARTS` (`structure`); `"auto"` and `"ladder"`: the most restarts of a
    rung, `LADDER_MAX_RESTARTS`; the others `RESTARTS`."""
    if method in ("auto", "ladder"):
        return LADDER_MAX_RESTARTS
    return _restarts(graph, method, structure(graph) if method == "anneal" else "dense")


def default_anneal_steps(graph: SignedGraph) -> int:
    """`"anneal"`'s default schedule: `SPARSE_ANNEAL_STEPS` sweeps on sparse graphs,
    `LOCAL_ANNEAL_STEPS` on local ones, else `ANNEAL_STEPS` (`structure`)."""
    return _anneal_steps(structure(graph))


def _anneal_steps(kind: str) -> int:
    return {"sparse": SPARSE_ANNEAL_STEPS, "local": LOCAL_ANNEAL_STEPS}.get(kind, ANNEAL_STEPS)


def _restarts(graph: SignedGraph, method: str, kind: str) -> int:
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
    graph, method, restarts, max_iterations, tol, anneal_steps, anneal_temperatures, batch_size, survivors,
    rungs,
):  # fmt: skip
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "ladder"
    if rungs is not None and method != "ladder":
        raise InputError(f'rungs applies to method="ladder" (the default) only, got method={method!r}')
    if method == "ladder":
        restarts = LADDER_MAX_RESTARTS if restarts is None else restarts
        anneal_steps = LADDER_MAX_SWEEPS if anneal_steps is None else anneal_steps
    kind = structure(graph) if method == "anneal" else "dense"
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
        rungs=() if rungs is None else _rungs(rungs),
    )


def _rungs(rungs) -> tuple[tuple[int, int], ...]:
    """A ladder's rungs as `(restarts >= 1, sweeps >= 0)` pairs, at least one."""
    try:
        pairs = tuple((r, t) for r, t in rungs)
    except (TypeError, ValueError):
        raise InputError(f"rungs must be a sequence of (restarts, sweeps) pairs, got {rungs!r}") from None
    if not pairs:
        raise InputError("rungs must hold at least one (restarts, sweeps) pair")
    return tuple(
        (check_count(r, f"rungs[{k}] restarts"), check_count(t, f"rungs[{k}] sweeps", minimum=0))
        for k, (r, t) in enumerate(pairs)
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
