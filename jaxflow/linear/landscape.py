"""Critical values and critical points of the loss, and where a network sits among them.

The landscape is read in whitened coordinates (the task's modes, `task.task_modes`). With
`Σ_xx^{½}` the square root of `Σ_xx` and `Σ_xx^{+½}` the pseudo-inverse root,
`M = Σ_yx Σ_xx^{+½} = U diag(μ) Vᵀ` and `W̃ = W Σ_xx^{½}`,

    L(W) = ½‖M − W̃‖²_F + ½(tr Σ_yy − ‖M‖²_F),

so the critical end-to-end maps are `W̃ = M_S = Σ_{j∈S} μ_j u_j v_jᵀ` for subsets `S` of the
non-zero modes with `|S| <= min_i d_i`, at the critical value `L_S = ½ tr Σ_yy − ½ Σ_{j∈S} μ_j²`.
For a whitened task `M = Σ_yx` and `μ = σ`. A singular `Σ_xx` is fine when `Σ_yx` lives on its
range (always so for a task made from data); otherwise the loss is unbounded below and has no
critical points.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError, check_array, check_task_widths
from .._types import Array, ArrayLike, Float, Int, Scalar, Widths
from .network import DeepLinearNetwork
from .objective import loss
from .task import Task, check_bounded, mode_spectrum, mode_strengths, task_modes

MAX_SUBSETS = 1 << 20  # the most subsets `critical_values` lists (`critical_levels` has no limit)


@dataclasses.dataclass(frozen=True)
class CriticalValue:
    """`value = L_S = ½ tr Σ_yy − ½ Σ_{j∈S} μ_j²` of the critical points with learnt modes `subset`."""

    value: float
    subset: tuple[int, ...]
    is_global_minimum: bool


def _landscape(task: Task, widths: Widths) -> tuple[tuple[int, ...], np.ndarray, int, int]:
    """Checked widths, `μ = mode_spectrum(task)`, its rank, and `k`, the most modes learnt."""
    widths = check_task_widths(task, widths)
    check_bounded(task)
    mu = mode_spectrum(task)
    rank = int(np.count_nonzero(mu))
    return widths, mu, rank, _max_learnt(widths, rank)


def _max_learnt(widths: tuple[int, ...], rank: int) -> int:
    return rank if len(widths) == 2 else min(min(widths), rank)


def _energy(counts: Iterable[int] | np.ndarray, values: np.ndarray) -> float:
    """`Σ_v count_v · v`, summed in one fixed order (so equal inputs give bitwise equal sums)."""
    e = 0.0
    for c, v in zip(counts, values):
        e = e + int(c) * float(v)
    return e


def critical_values(task: Task, widths: Widths) -> list[CriticalValue]:
    """Every critical value `L_S` with its subset `S` of learnt modes, sorted ascending.

    `S` runs over subsets of the non-zero modes (0-based, in the order of `μ` descending) with
    `|S| <= min_i d_i` (depth 1: only the global minimum, all modes). Zero modes are never in
    `S` (learning them changes nothing). A repeated singular value gives exactly equal values
    for the subsets that swap its modes; all of those subsets are listed. Ties are ordered by
    `(|S|, S)`. `is_global_minimum` marks the lowest value: `|S| = min(min_i d_i, rank)` with
    `S` among the largest `μ`.
    """
    widths, mu, rank, k = _landscape(task, widths)
    sizes = [k] if len(widths) == 2 else range(k + 1)
    count = sum(math.comb(rank, s) for s in sizes)
    if count > MAX_SUBSETS:
        raise InputError(
            f"the task has rank {rank} and widths {widths} allow {k} learnt modes: {count} subsets "
            f"exceed the limit of {MAX_SUBSETS}; use critical_levels for the distinct values"
        )
    vals, group = np.unique(mu[:rank] ** 2, return_inverse=True)
    const = 0.5 * float(task.trace_yy)
    kth = mu[k - 1] if k else np.inf
    out = []
    for s in sizes:
        for S in itertools.combinations(range(rank), s):
            e = _energy(np.bincount(group[list(S)], minlength=vals.size), vals)
            glob = s == k and (not S or mu[list(S)].min() >= kth)
            out.append(CriticalValue(float(const - 0.5 * e), S, bool(glob)))
    return sorted(out, key=lambda c: (c.value, len(c.subset), c.subset))


def critical_levels(task: Task, widths: Widths) -> np.ndarray:
    """The distinct critical values, ascending, bitwise equal to those of `critical_values`.

    Counts subsets by how many modes of each distinct `μ` they learn, so it stays cheap where
    `critical_values` would list too many subsets.
    """
    widths, mu, rank, k = _landscape(task, widths)
    vals, mult = np.unique(mu[:rank] ** 2, return_counts=True)
    choices = itertools.product(*(range(c + 1) for c in mult))
    sizes = {k} if len(widths) == 2 else set(range(k + 1))
    const = 0.5 * float(task.trace_yy)
    return np.unique([const - 0.5 * _energy(c, vals) for c in choices if sum(c) in sizes])


def level_index(losses: Float[ArrayLike, "*batch"], levels: Float[ArrayLike, " k"]) -> Int[Array, "*batch"]:
    """Index of the level in `levels` (ascending, e.g. `critical_levels`) nearest to each loss.

    By bisection, `O(log k)` work and memory per loss (a task of rank `r` has up to `2^r` levels);
    a loss halfway between two levels takes the lower one, a NaN loss the highest. Pure `jnp`
    (`vmap`/`jit` friendly); both arguments are compared in their promoted dtype.
    """
    dtype = np.promote_types(jnp.result_type(losses), jnp.result_type(levels))
    losses, levels = jnp.asarray(losses, dtype), jnp.asarray(levels, dtype)
    if levels.shape[0] == 1:
        return jnp.zeros(losses.shape, int)
    hi = jnp.clip(jnp.searchsorted(levels, losses), 1, levels.shape[0] - 1)
    lo = hi - 1
    return jnp.where(jnp.abs(losses - levels[lo]) <= jnp.abs(levels[hi] - losses), lo, hi)


@dataclasses.dataclass(frozen=True)
class NearestCritical:
    """The critical value nearest to a network's loss: `distance = |L − value|`."""

    value: float
    subset: tuple[int, ...]
    distance: float
    is_global_minimum: bool


def nearest_critical_value(net: DeepLinearNetwork, task: Task) -> NearestCritical:
    """The critical level set the network is on or near, by loss.

    Among subsets with the same (nearest) value, the one whose `M_S` is nearest to `W̃` in
    Frobenius norm is reported.
    """
    cvs = critical_values(task, net.widths)
    L = float(loss(net, task))
    best = min(abs(L - c.value) for c in cvs)
    tied = [c for c in cvs if abs(L - c.value) == best]
    if len(tied) > 1:
        W = net.end_to_end()
        dist = [float(class_distance(W, task, c.subset)) for c in tied]
        tied = [tied[int(np.argmin(dist))]]
    c = tied[0]
    return NearestCritical(c.value, c.subset, float(best), c.is_global_minimum)


@eqx.filter_jit
def _subset_map(task: Task, S: Int[Array, " k"]) -> Float[Array, "d_h d_0"]:
    """`M_S = Σ_{j∈S} μ_j u_j v_jᵀ` in whitened coordinates (the critical `W̃` for `S`)."""
    m = task_modes(task)
    return (m.U[:, S] * m.mu[S]) @ m.V[:, S].T


def class_distance(W: Float[Array, "d_h d_0"], task: Task, subset: Sequence[int]) -> Scalar:
    """`‖W Σ_xx^{½} − M_S‖_F`: zero exactly on the critical class `S` (end-to-end)."""
    return _class_distance(W, task, jnp.asarray(tuple(subset), int))


@eqx.filter_jit
def _class_distance(W: Float[Array, "d_h d_0"], task: Task, S: Int[Array, " k"]) -> Scalar:
    return jnp.linalg.norm(W @ task_modes(task).root - _subset_map(task, S))


def check_subset(
    subset: Iterable[int], task: Task, widths: Widths
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`(widths, S)`: checked widths and `subset` as sorted 0-based mode indices admissible for them."""
    widths, mu, rank, k = _landscape(task, widths)
    try:
        S = tuple(sorted(int(j) for j in subset))
    except (TypeError, ValueError):
        raise InputError(f"subset must be an iterable of mode indices, got {subset!r}") from None
    m = min(task.d_in, task.d_out)
    if len(set(S)) != len(S) or any(not 0 <= j < m for j in S):
        raise InputError(f"subset must hold distinct mode indices in 0..{m - 1}, got {subset!r}")
    if len(S) > k:
        raise InputError(
            f"subset {S} learns {len(S)} modes but widths {widths} allow at most {min(widths)} "
            f"(task rank {rank})"
        )
    if len(widths) == 2 and set(S) != set(range(rank)):
        raise InputError(
            f"a depth-1 network has one critical class, all {rank} non-zero modes; got subset {S}"
        )
    return widths, S


def critical_point(
    task: Task, widths: Widths, subset: Iterable[int], *, balanced: bool = True
) -> DeepLinearNetwork:
    """A canonical critical point whose end-to-end map is `W_S = M_S Σ_xx^{+½}`.

    With `W_S = P diag(ρ) Qᵀ` (thin SVD, `k = |S|` columns; for a whitened task `P = U_S`,
    `ρ = σ_S`, `Q = V_S`, so hidden coordinate `m` carries mode `S[m]`):

    - `balanced=True`: `W_i = R_i diag(ρ^{1/h}) R_{i−1}ᵀ` with `R_0 = Q`, `R_h = P` and the
      hidden `R_i` the first `k` coordinate vectors — 0-balanced (`C_i = 0`) and aligned.
    - `balanced=False`: all of `ρ` on the first layer, `W_1 = R_1 diag(ρ) Qᵀ`, the rest partial
      isometries — aligned, critical, not balanced.
    """
    widths, S = check_subset(subset, task, widths)
    m = jax.tree.map(np.asarray, task_modes(task))
    idx = list(S)
    if task.whitened:
        P, rho, Q = m.U[:, idx], m.mu[idx], m.V[:, idx]
    else:
        a, rho, bt = np.linalg.svd(m.inv_root @ m.V[:, idx] * m.mu[idx], full_matrices=False)
        P, Q = m.U[:, idx] @ bt.T, a
    h = len(widths) - 1
    scales = [rho ** (1.0 / h)] * h if balanced else [rho] + [np.ones_like(rho)] * (h - 1)
    return _factor(P, scales, Q, widths, task.sigma_yx.dtype)


def _factor(P, scales, Q, widths: tuple[int, ...], dtype) -> DeepLinearNetwork:
    """`W_i = R_i diag(scales_i) R_{i−1}ᵀ`, `R_0 = Q`, `R_h = P`, hidden `R_i` = first coordinates."""
    k = Q.shape[1]
    frames = [Q] + [np.eye(d, k) for d in widths[1:-1]] + [P]
    layers = (frames[i + 1] @ (scales[i][:, None] * frames[i].T) for i in range(len(scales)))
    return DeepLinearNetwork(tuple(jnp.asarray(w, dtype) for w in layers))


def aligned_network(
    task: Task, widths: Widths, modes: Sequence[int], scalars: Float[Array, " k"]
) -> DeepLinearNetwork:
    """The 0-balanced aligned network `W_i = R_i diag(w) R_{i−1}ᵀ`, `R_0 = V_modes`, `R_h = U_modes`.

    Hidden coordinate `m` carries mode `modes[m]` with the same scalar `w_m` in every layer, so
    `W = Σ_m w_m^h u_{modes[m]} v_{modes[m]}ᵀ`. For a whitened task this set is invariant under
    the flow, which acts on each mode as the scalar chain `dw/dt = w^{h−1}(σ − w^h)`.
    """
    widths = check_task_widths(task, widths)
    if not task.whitened:
        raise InputError("aligned_network needs a whitened task (the aligned set is invariant only then)")
    modes = tuple(int(j) for j in modes)
    m = min(task.d_in, task.d_out)
    if len(set(modes)) != len(modes) or any(not 0 <= j < m for j in modes) or len(modes) > min(widths):
        raise InputError(f"modes must be at most {min(widths)} distinct indices in 0..{m - 1}, got {modes!r}")
    check_array(scalars, "scalars", shape=(len(modes),))
    tm = jax.tree.map(np.asarray, task_modes(task))
    idx = list(modes)
    w = np.asarray(scalars, float)
    return _factor(tm.U[:, idx], [w] * (len(widths) - 1), tm.V[:, idx], widths, task.sigma_yx.dtype)


@dataclasses.dataclass(frozen=True)
class NetworkClass:
    """A network's class: its end-to-end map, the nearest learnt subset `S` and `‖W̃ − M_S‖_F`."""

    end_to_end: Float[Array, "d_h d_0"]
    subset: tuple[int, ...]
    distance: float


def network_class(net: DeepLinearNetwork, task: Task) -> NetworkClass:
    """Map a network to its class: `S` minimises `‖W̃ − M_S‖_F` over admissible subsets.

    `‖W̃ − M_S‖² = ‖W̃‖² − Σ_{j∈S} μ_j(2 s_j − μ_j)` with `s = mode_strengths(W, task)`, so `S`
    holds the (at most `min_i d_i`) modes of largest positive gain `μ_j(2 s_j − μ_j)`. On a
    critical point `distance` is 0.
    """
    _, mu, _, k = _landscape(task, net.widths)
    W = net.end_to_end()
    gain = mu * (2 * np.asarray(mode_strengths(W, task)) - mu)
    best = [int(j) for j in np.argsort(-gain, kind="stable")[:k] if gain[j] > 0 and mu[j] > 0]
    S = tuple(sorted(best))
    return NetworkClass(W, S, float(class_distance(W, task, S)))
