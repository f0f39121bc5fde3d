"""Exact frustration of small graphs: enumeration over a vertex cover, or integer programming.

`δ(s) = ½(Σ|a| − sᵀAs)`. Take `T` an independent set and `S` the other nodes (a vertex cover). Given
`s_S`, each node of `T` sees only `S`, so its best sign is `s_i = sign(h_i)`, `h = M_TS s_S` with
`M = A + Aᵀ`, and `max_s sᵀAs = max_{s_S} F(s_S)`, `F = ½ s_Sᵀ M_SS s_S + Σ_{i∈T} |h_i|`: `2^{|S|−1}`
gauges to try instead of `2^{n−1}`. A layered graph without skips has `|S| = ` the smaller of its
odd and even layers. Larger covers go to HiGHS (`milp_gauge`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
import scipy.sparse

ENUMERATION_MAX_WORK = 2**36
"""Largest `2^{|S|−1}·(|T| + |S|)` enumerated; beyond, HiGHS."""
ENUMERATION_WORK_PER_SECOND = 2**30
"""`enumerate_cover`'s throughput assumed for a time limit, rounded down: a cover whose enumeration
would outlast the limit goes to HiGHS, which stops on time."""
_LOW_BITS = 12  # the last `S` nodes' 2^12 patterns are precomputed and swept together
_CHUNK_ELEMENTS = 2**22  # elements of the |h| tensor per chunk (32 MB in float64)


def independent_set(A: np.ndarray) -> np.ndarray:
    """A large independent set `T` (a mask; `S` is its complement): in a bipartite graph (a layered
    chain) the larger side of each component, else the larger of that and a greedy smallest-degree
    maximal set."""
    adjacent = (A != 0) | (A.T != 0)
    return max(_greedy_independent(adjacent), _larger_sides(adjacent), key=lambda T: T.sum())


def _greedy_independent(adjacent: np.ndarray) -> np.ndarray:
    free, T = np.ones(len(adjacent), bool), np.zeros(len(adjacent), bool)
    degree = adjacent.sum(1)
    while free.any():
        i = np.flatnonzero(free)[np.argmin(degree[free])]
        T[i], free[i] = True, False
        free &= ~adjacent[i]
    return T


def _larger_sides(adjacent: np.ndarray) -> np.ndarray:
    """Each component's larger colour class of a breadth-first 2-colouring; empty if not bipartite."""
    colour, T = np.full(len(adjacent), -1), np.zeros(len(adjacent), bool)
    for start in range(len(adjacent)):
        if colour[start] >= 0:
            continue
        component, frontier, c = [], np.array([start]), 0
        colour[start] = 0
        while frontier.size:
            component.append(frontier)
            c = 1 - c
            frontier = np.flatnonzero(adjacent[frontier].any(0) & (colour < 0))
            colour[frontier] = c
        nodes = np.concatenate(component)
        side = colour[nodes] == (np.mean(colour[nodes]) > 0.5)
        T[nodes[side]] = True
    same = colour[:, None] == colour[None, :]
    return T if not (adjacent & same).any() else np.zeros(len(adjacent), bool)


def enumeration_work(T: np.ndarray) -> int:
    """`2^{|S|−1}·(|T| + |S|)`: the gauges `enumerate_cover` tries times the work per gauge."""
    k = int(np.sum(~T))
    return 2 ** max(k - 1, 0) * len(T)


def _patterns(bits: int, index, dtype=jnp.float64):
    """The `±1` patterns of `bits` nodes numbered `index` (bit `j` of the index set: node `j` is −1)."""
    return (1 - 2 * ((index[None] >> jnp.arange(bits)[:, None]) & 1)).astype(dtype)


@partial(jax.jit, static_argnames=("high", "low", "chunk"))
def _best_cover_gauge(M_TS, M_SS, *, high: int, low: int, chunk: int):
    """`argmax F` over `s_S = (+1, x_H, x_L)`, `x_H` of `high` nodes (swept in chunks of `chunk`),
    `x_L` of `low` nodes (all patterns at once). Returns the best `F` and `(x_H, x_L)` indices."""
    H, L = slice(1, 1 + high), slice(1 + high, 1 + high + low)
    X_L = _patterns(low, jnp.arange(2**low), M_TS.dtype)
    field_L = M_TS[:, :1] + M_TS[:, L] @ X_L  # h from s_0 and x_L
    F_L = 0.5 * jnp.sum(X_L * (M_SS[L, L] @ X_L), 0) + M_SS[0, L] @ X_L
    cross = M_SS[H, L] @ X_L

    def sweep(best, start):
        X_H = _patterns(high, start + jnp.arange(chunk), M_TS.dtype)
        F_H = 0.5 * jnp.sum(X_H * (M_SS[H, H] @ X_H), 0) + M_SS[0, H] @ X_H
        field = field_L[None] + (M_TS[:, H] @ X_H).T[:, :, None]  # (chunk, |T|, 2^low)
        F = F_H[:, None] + F_L[None] + X_H.T @ cross + jnp.sum(jnp.abs(field), 1)
        i = jnp.argmax(F)
        found = (F.ravel()[i], start + i // 2**low, i % 2**low)
        return jax.tree.map(lambda a, b: jnp.where(found[0] > best[0], a, b), found, best), None

    init = (jnp.asarray(-jnp.inf, M_TS.dtype), jnp.asarray(0), jnp.asarray(0))
    best, _ = jax.lax.scan(sweep, init, chunk * jnp.arange(2**high // chunk))
    return best


def enumerate_cover(A: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, float, int]:
    """The optimal gauge by trying every `s_S` with `s_{S_0} = +1`. Returns it, a proven lower bound
    (its `δ` less `2n·ε·Σ|a|`, what rounding in JAX's float can hide) and the count tried."""
    M = A + A.T
    S = np.flatnonzero(~T)
    if S.size == 0:  # no edges at all
        return np.ones(len(A)), 0.0, 1
    low = min(S.size - 1, _LOW_BITS)
    high = S.size - 1 - low
    per_pattern = max(int(T.sum()), 1) * 2**low  # |h| elements for one x_H
    chunk = min(2**high, 1 << max(_CHUNK_ELEMENTS // per_pattern, 1).bit_length() - 1)
    M_TS, M_SS = jnp.asarray(M[np.ix_(T, S)]), jnp.asarray(M[np.ix_(S, S)])
    _, i_high, i_low = _best_cover_gauge(M_TS, M_SS, high=high, low=low, chunk=chunk)
    s_S = np.concatenate([[1.0], _patterns(high, i_high).ravel(), _patterns(low, i_low).ravel()])
    s = np.ones(len(A))
    s[S] = s_S
    s[T] = np.where(np.asarray(M_TS) @ s_S < 0, -1.0, 1.0)
    total = np.abs(A).sum()
    rounding = 2 * len(A) * float(jnp.finfo(M_TS.dtype).eps) * total
    return s, max(0.5 * (total - s @ A @ s) - rounding, 0.0), 2 ** (S.size - 1)


def milp_gauge(A: np.ndarray, time_limit: float | None, incumbent: np.ndarray, cutoff: float):
    """Minimise `Σ |a_e| f_e` over `u ∈ {0,1}^n`, `f_e ∈ [0,1]` (`s = 2u − 1`) with HiGHS.

    Edge `q → p` with `a > 0` is frustrated iff `u_p ≠ u_q`: `f ≥ u_p − u_q`, `f ≥ u_q − u_p`; with
    `a < 0` iff `u_p = u_q`: `f ≥ u_p + u_q − 1`, `f ≥ 1 − u_p − u_q`. Node 0 takes its sign in
    `incumbent` (the gauges `s` and `−s` have equal energy), and `Σ |a_e| f_e <= cutoff` (just below
    the incumbent's energy) prunes every branch that cannot beat the incumbent: an infeasible
    program proves the incumbent optimal. Returns the gauge, the proven bound, nodes, proof.
    """
    p, q = np.nonzero(A)
    a, n, m = A[p, q], A.shape[0], p.size
    neg = (a < 0).astype(np.float64)
    sgn, one = 1.0 - 2.0 * neg, np.ones(m)
    # per edge e, with σ = sign(a): row 2e: f − u_p + σu_q >= −[a<0]; row 2e+1: f + u_p − σu_q >= [a<0]
    cols = np.tile(np.stack([n + np.arange(m), p, q], 1), (1, 2)).reshape(-1)
    vals = np.stack([one, -one, sgn, one, one, -sgn], 1).reshape(-1)
    rows = np.repeat(np.arange(2 * m), 3)
    objective = np.concatenate([np.zeros(n), np.abs(a)])
    cons = [
        scipy.optimize.LinearConstraint(
            scipy.sparse.csr_array((vals, (rows, cols)), shape=(2 * m, n + m)),
            np.stack([-neg, neg], 1).reshape(-1),
            np.inf,
        ),
        scipy.optimize.LinearConstraint(objective[None], -np.inf, cutoff),
    ]
    lb, ub = np.zeros(n + m), np.ones(n + m)
    lb[0] = ub[0] = float(incumbent[0] > 0)  # every layer has a node, so node 0 exists
    options = {"mip_rel_gap": 0.0} | ({} if time_limit is None else {"time_limit": float(time_limit)})
    res = scipy.optimize.milp(
        objective,
        integrality=np.concatenate([np.ones(n), np.zeros(m)]),
        bounds=scipy.optimize.Bounds(lb, ub),
        constraints=cons,
        options=options,
    )
    nodes = int(getattr(res, "mip_node_count", 0) or 0)
    if res.status == 2:  # nothing below the cutoff: the incumbent is optimal
        return incumbent, cutoff, nodes, True
    if res.status not in (0, 1):
        raise RuntimeError(f'method="exact": HiGHS failed ({res.message})')
    bound = getattr(res, "mip_dual_bound", None)
    bound = 0.0 if bound is None or not np.isfinite(bound) else max(float(bound), 0.0)
    s = incumbent if res.x is None else np.where(res.x[:n] > 0.5, 1.0, -1.0)
    return s, min(bound, cutoff), nodes, res.status == 0
