"""`frustration()`: the frustration `min_s δ(s)` of a signed graph by an estimator, and its result.

`δ(s)` is the energy of a gauge (`energy`); its minimum is an Ising ground state (NP-hard). The
heuristics run the layer-parallel engine (`_search`) and return the energy of a gauge they found,
hence an upper bound on the minimum; `Exact` (`_exact`) also reports the solver's proven lower
bound. The estimators and their defaults are objects of `estimators`.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Bool

from .._checks import InputError, check_graph, check_key, check_positive
from .._types import Array, Float, Int, Key, Scalar
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
from .energy import energy_graph, gauge_frustration
from .estimators import (
    ANNEAL_STEPS,
    EXACT_TOLERANCE,
    Estimator,
    Exact,
    Ladder,
    SearchSettings,
    idle,
    ladder_batch,
    ladder_start,
    next_rung,
    resolve_estimator,
    rung_jobs,
    rung_settings,
)
from .graph import SignedGraph, flat


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


_jobs_program = eqx.filter_jit(estimate_jobs)


def _job(graph: SignedGraph, key: Key, settings: SearchSettings, job: tuple[int, int], batch: int):
    """`_estimate` of one ladder job (`rung_jobs`) and its lowest `δ`."""
    sweeps, count = job
    if not sweeps:
        out = _estimate(graph, job_key(key, 0, count), rung_settings(settings, (count, 0)))
        return out, float(jnp.min(out[3]))
    run = rung_settings(settings, (batch, ANNEAL_STEPS))  # the sweeps: each job's own, traced
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
    then one `next_rung` after another: sweeps doubled while that lowers the best value, else
    restarts (and back), until `LADDER_PATIENCE` rungs in a row are idle (`idle`) or both are at
    their caps. Returns the `_estimate` of the best job, the best value after each rung, and the
    rungs run. `status` hears each rung as it ends."""
    batch = ladder_batch(graph, settings)
    caps = settings.restarts, settings.anneal_steps
    fixed = bool(settings.rungs)
    todo = list(settings.rungs or ladder_start(graph, batch, settings.anneal_steps))
    best, jobs, values, bests, rungs, idle_rungs, grow = None, [], [], [], [], 0, "sweeps"
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
            idle_rungs = idle_rungs + 1 if idle(bests[-1], min(values)) else 0
        bests.append(min(values))
        rungs.append(tuple(rung))
        if status is not None:
            share = bests[-1] / max(float(best[2]), np.finfo(np.float64).tiny)
            status(f"rung {len(rungs) - 1} ({rung[0]}×{rung[1]}): best δ/Σ|a| = {share:.5f}")
        if fixed or todo or not rung[1]:
            continue
        step, grow = next_rung(rung, grow, idle_rungs, *caps)
        if step is not None:
            todo.append(step)
    gauge, value, total = best[:3]
    found = (gauge, value, total, jnp.asarray(values, value.dtype), jnp.array(its), jnp.array(ok))
    return found, jnp.asarray(bests, value.dtype), tuple(rungs)


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
    estimator: Estimator | None = None,
    *,
    key: Key | None = None,
    weighted: bool = True,
    dtype=None,
    bound: bool = True,
    status: Callable[[str], None] | None = None,
    method: str | None = None,
    **effort,
) -> FrustrationResult:
    """Estimate `min_s δ(s)`, the (weighted) frustration of `graph`, with `estimator`.

    The estimators are objects (`jaxflow.signed.estimators`): `Ladder` (the default: an effort
    ladder that decides from its own evidence, `rung_values` and `settings.rungs` in the
    result), `Layerwise`, `Anneal`, `Greedy` and `Exact`. `method="name"` with effort keywords
    (`restarts=`, `anneal_steps=`, `tol=`, `batch_size=`, …) is the shortcut `as_estimator`
    takes. Heuristic values are upper bounds. Graphs of many blocks are searched block by block
    with one compiled function per block signature (`_search.choose_driver`).

    Args:
        graph: the `SignedGraph`.
        estimator: an `Estimator`; default `Ladder()` (or the one `method` and `effort` name).
        key: PRNG key of the random restarts; default `jax.random.key(0)` (a fixed seed).
        weighted: minimise the frustrated weight (`True`) or the number of frustrated edges.
        dtype: cast the weights to this dtype first (e.g. `jnp.float32`); default: as they are.
        bound: the heuristics also prove a lower bound (`bounds.lower_bound`, matrix-free on big
            graphs), so that `[lower_bound, value]` holds the frustration; `False` leaves it 0.
        status: hears what the search is doing, in words (each rung of the ladder as it ends,
            the bound before it is proven).
        method: the shortcut: an estimator by name (`estimators.METHODS`; `"auto"` is the
            ladder), its effort in `effort` (`as_estimator`).
        **effort: the shortcut's effort keywords (`estimators.EFFORT_KEYWORDS`).

    Returns:
        A `FrustrationResult`.

    Raises:
        InputError: a graph that is not a `SignedGraph`, an estimator given both ways, an unknown
            method or effort keyword, a graph too large for the estimator.
    """
    check_graph(graph)
    estimator = resolve_estimator(estimator, method, effort)
    settings = estimator.settings(graph)
    if dtype is not None:
        graph = graph.astype(dtype)
    target = energy_graph(graph, weighted)
    key = jax.random.key(0) if key is None else check_key(key)
    if isinstance(estimator, Exact):
        gauge, value, total, lower, its, ok = _exact(graph, target, key, estimator, settings, weighted)
        restart_values = rung_values = value[None]
        iterations, converged = jnp.array(its), jnp.array(ok)
    else:
        if isinstance(estimator, Ladder):
            found, rung_values, climbed = _ladder(target, key, settings, status)
            settings = settings._replace(rungs=climbed)
        else:
            found = _estimate(target, key, settings)
        gauge, value, total, restart_values, iterations, converged = found
        if not isinstance(estimator, Ladder):
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


def _exact(graph: SignedGraph, target: SignedGraph, key: Key, estimator: Exact, settings, weighted: bool):
    """`Exact`: the gauge, its `δ`, `Σ|a|`, the proven lower bound, the work done and whether the
    optimum is proven. Every gauge of a vertex cover when the enumeration fits its budget, else
    HiGHS below the `incumbent`'s best gauge."""
    total = target.abs_sum()
    edges = graph.num_edges()
    if edges > estimator.max_edges:
        raise InputError(
            f'method="exact" solves graphs of up to max_edges={estimator.max_edges} edges, this one has '
            f'{edges}; use method="layerwise" or "anneal" (upper bounds), or raise max_edges'
        )
    A = np.asarray(target.to_dense(), np.float64)
    T = independent_set(A)
    if enumeration_work(T) <= _enumeration_budget(estimator.time_limit):
        s, proven, its = enumerate_cover(A, T)
        ok = True
    else:  # the incumbent's best gauge; HiGHS looks only below it
        gauges, values, _, _ = _search_program(target, key, settings._replace(method="anneal"))
        incumbent = np.concatenate([np.ravel(g[jnp.argmin(values)]) for g in gauges])
        cutoff = float(jnp.min(values)) - 0.5 * EXACT_TOLERANCE * max(float(total), 1.0)
        s, proven, its, ok = milp_gauge(A, estimator.time_limit, incumbent, cutoff)
    gauge = graph.unflatten(jnp.asarray(s, graph.dtype))
    value = gauge_frustration(graph, gauge, weighted=weighted)
    return gauge, value, total, jnp.asarray(min(proven, float(value)), graph.dtype), its, ok


def _enumeration_budget(time_limit) -> float:
    """The most `enumeration_work` `Exact` enumerates: `ENUMERATION_MAX_WORK`, and within a
    `time_limit` only what `ENUMERATION_WORK_PER_SECOND` gets through in it."""
    if time_limit is None:
        return float(ENUMERATION_MAX_WORK)
    seconds = float(check_positive(time_limit, "time_limit"))
    return min(ENUMERATION_MAX_WORK, ENUMERATION_WORK_PER_SECOND * seconds)
