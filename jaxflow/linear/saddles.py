"""Classification of critical points: global minima, strict and non-strict saddles.

Along a line `θ + t d` the loss is a polynomial of degree `2h` in `t`; its coefficients
`c_0 … c_{2h}` come exactly from the powers of `A + tD` (the end-to-end map `Π_i (W_i + t D_i)`
expanded in `t`). At a critical point with a positive semi-definite, singular Hessian, the
saddle is proved non-strict by a direction `d` in the Hessian's null space whose first
non-vanishing coefficient `c_k` (`k >= 3`) is negative; `k` is the saddle's order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._checks import InputError, check_count, check_key, check_positive
from .._types import Array, ArrayLike, Float, FloatLike, Key, Widths
from .flow import solve
from .hessian import flat_gradient, hessian_spectrum, inertia, spectrum_tolerance
from .landscape import aligned_network, check_subset, critical_levels, critical_values, network_class
from .network import DeepLinearNetwork, check_network
from .objective import gradient_norm, loss
from .task import Task, mode_spectrum

KINDS = ("global_minimum", "strict_saddle", "nonstrict_saddle", "not_critical")

GTOL_SCALE = 1e-8  # default `gtol = GTOL_SCALE · (1 + ‖Σ_yx‖_F)`: the critical test on `‖∇L‖`
DEFAULT_KEY_SEED = 0  # `key=None` draws the probes with `jax.random.key(DEFAULT_KEY_SEED)`
ROOT_EPS = float(np.sqrt(np.finfo(float).eps))  # relative size below which a coefficient or gap is 0
VERIFY_RTOL, VERIFY_ATOL = 1e-8, 1e-10  # the escape run's tolerances in `_verify`
VERIFY_TIME_FACTOR = 10.0  # the escape run lasts this many times its time scales
VERIFY_GAP_FRACTION = 0.5  # verified when the loss falls this fraction of the way to the next lower level


def line_polynomial(net: DeepLinearNetwork, task: Task, direction: DeepLinearNetwork) -> Float[Array, " K"]:
    """Coefficients `c_0 … c_{2h}` of `t ↦ L(θ + t d)` (pure `jnp`), exact: `W(t) = Σ_k t^k C_k`."""
    C = [jnp.eye(task.d_in, dtype=net.weights[0].dtype)]
    for w, d in zip(net.weights, direction.weights):
        C = [w @ C[0]] + [w @ C[k] + d @ C[k - 1] for k in range(1, len(C))] + [d @ C[-1]]
    h = net.depth
    quad = [
        sum(jnp.vdot(C[a] @ task.sigma_xx, C[k - a]) for a in range(max(0, k - h), min(k, h) + 1))
        for k in range(2 * h + 1)
    ]
    lin = [jnp.vdot(task.sigma_yx, c) for c in C] + [jnp.zeros(())] * h
    return jnp.stack([0.5 * q - r for q, r in zip(quad, lin)]).at[0].add(0.5 * task.trace_yy)


def first_order(coefficients: Float[ArrayLike, " K"], tol: FloatLike) -> int | None:
    """The first `k >= 1` with `|c_k| > tol` (`None` if the polynomial is constant)."""
    big = np.flatnonzero(np.abs(np.asarray(coefficients)[1:]) > tol)
    return int(big[0]) + 1 if big.size else None


@dataclasses.dataclass(frozen=True)
class CriticalPointReport:
    """What `classify_critical_point` found.

    `kind` is one of `KINDS`. `inertia = (n_neg, n_zero, n_pos)` of the Hessian; the flow's
    linearisation `−H` has unstable, stable and centre subspaces of dimensions `n_neg`, `n_pos`,
    `n_zero`; `eigenvalues` is the Hessian spectrum, ascending. `order` is the lowest order `k`
    of the loss's Taylor expansion that was found to go negative along `escape_direction` (a
    unit tangent, `DeepLinearNetwork`-shaped): 1 off critical points (`−∇L`), 2 for a strict
    saddle, `k >= 3` for a non-strict one, `None` at a global minimum. `coefficients` are
    `c_0 … c_{2h}` of `L(θ + t d)` along it. `verified` and `loss_after_escape` are set when
    the classifier ran the flow from `θ + ε d`.
    """

    kind: str
    gradient_norm: float
    loss: float
    critical_value: float | None
    subset: tuple[int, ...] | None
    inertia: tuple[int, int, int]
    eigenvalues: np.ndarray
    order: int | None
    escape_direction: DeepLinearNetwork | None
    coefficients: np.ndarray | None
    verified: bool | None = None
    loss_after_escape: float | None = None

    @property
    def unstable_dim(self) -> int:
        """`n_neg`: directions the linearised flow leaves along."""
        return self.inertia[0]

    @property
    def centre_dim(self) -> int:
        """`n_zero`: directions the linearisation does not decide (higher orders do)."""
        return self.inertia[1]

    @property
    def stable_dim(self) -> int:
        """`n_pos`: directions the linearised flow returns along."""
        return self.inertia[2]


def _unit(flat: np.ndarray, unravel) -> DeepLinearNetwork:
    return DeepLinearNetwork(tuple(unravel(jnp.asarray(flat / np.linalg.norm(flat)))))


def path_direction(net: DeepLinearNetwork, task: Task) -> DeepLinearNetwork | None:
    """A rank-one path `D_i = a_i b_{i−1}ᵀ` along which `ΔW = t^h c a_h b_0ᵀ` exactly.

    With `a_i ∈ ker W_{i+1}`, `b_i ∈ ker W_iᵀ` (hidden `i`), every mixed product of `W`s and
    `D`s vanishes; `a_h b_0ᵀ` is the top singular pair of the residual `Σ_yx − W Σ_xx`, so the
    loss falls as `−t^h c ‖Σ_yx − W Σ_xx‖_2`, `c = Π_i b_iᵀ a_i > 0`. `None` when some hidden
    layer has no such pair (or the residual is zero).
    """
    ws = [np.asarray(w) for w in net.weights]
    h = len(ws)
    W = np.asarray(net.end_to_end())
    p, g, qt = np.linalg.svd(np.asarray(task.sigma_yx) - W @ np.asarray(task.sigma_xx))
    scale = max(1.0, float(np.linalg.norm(np.asarray(task.sigma_yx))))
    if g[0] <= ROOT_EPS * scale:
        return None
    a, b = [None] * (h + 1), [None] * (h + 1)
    a[h], b[0] = p[:, 0], qt[0]
    for i in range(1, h):
        Ka, Kb = _null(ws[i]), _null(ws[i - 1].T)
        if Ka.shape[1] == 0 or Kb.shape[1] == 0:
            return None
        x, rho, yt = np.linalg.svd(Kb.T @ Ka)
        if rho[0] <= ROOT_EPS:
            return None
        a[i], b[i] = Ka @ yt[0], Kb @ x[:, 0]
    flat, unravel = ravel_pytree([np.outer(a[i], b[i - 1]) for i in range(1, h + 1)])
    return _unit(np.asarray(flat), unravel)


def _null(M: np.ndarray) -> np.ndarray:
    """Orthonormal basis of `ker M` (singular values below `max(shape)·eps·‖M‖₂`)."""
    _, s, vt = np.linalg.svd(M)
    tol = max(M.shape) * np.finfo(float).eps * (s[0] if s.size else 0.0)
    rank = int(np.sum(s > tol))
    return vt[rank:].T


def _probe_polynomials(net: DeepLinearNetwork, task: Task, flats: Float[Array, "probes P"], unravel):
    directions = jax.vmap(lambda x: DeepLinearNetwork(tuple(unravel(x))))(flats)
    return jax.vmap(line_polynomial, in_axes=(None, None, 0))(net, task, directions)


_probe_polynomials_jit = jax.jit(_probe_polynomials, static_argnums=3)


def _escape(coefficients: np.ndarray) -> tuple[int | None, float, float]:
    """`(k, sign, c)`: the first non-vanishing order `k`, the sign of `d` making `c_k < 0`."""
    c = np.asarray(coefficients)
    tol = ROOT_EPS * np.max(np.abs(c[1:]), initial=0.0)
    k = first_order(c, tol)
    if k is None:
        return None, 1.0, 0.0
    if c[k] < 0:
        return k, 1.0, float(c[k])
    return (k, -1.0, -float(c[k])) if k % 2 else (None, 1.0, 0.0)


def _higher_order(net, task, null_basis: np.ndarray, key: Key, probes: int):
    """The lowest-order escape among `path_direction` and `probes` random unit directions in `ker H`."""
    theta, unravel = ravel_pytree(list(net.weights))
    if null_basis.shape[1] == 0:
        return None
    z = np.asarray(jax.random.normal(key, (null_basis.shape[1], probes + 1), theta.dtype))
    candidates = list((null_basis @ z / np.linalg.norm(null_basis @ z, axis=0)).T)
    path = path_direction(net, task)
    if path is not None:  # in place of the last probe: a fixed count keeps one compiled shape
        candidates[-1] = np.asarray(ravel_pytree(list(path.weights))[0])
    flats = jnp.asarray(np.stack(candidates))
    polys = np.asarray(_probe_polynomials_jit(net, task, flats, unravel))
    best = None
    for flat, poly in zip(candidates, polys):
        k, sign, ck = _escape(poly)
        if k is not None and k >= 3 and (best is None or (k, ck) < (best[0], best[1])):
            best = (k, ck, sign * flat, sign ** np.arange(poly.size) * poly)
    if best is None:
        return None
    return best[0], _unit(best[2], unravel), best[3]


def classify_critical_point(
    net: DeepLinearNetwork,
    task: Task,
    *,
    gtol: FloatLike | None = None,
    tol: FloatLike | None = None,
    key: Key | None = None,
    probes: int = 16,
    verify: bool = False,
    step: FloatLike = 0.1,
) -> CriticalPointReport:
    """Classify `net` as a global minimum, a strict or non-strict saddle, or not critical.

    Critical when `‖∇L‖ <= gtol`. Then the Hessian's inertia decides: a negative eigenvalue
    makes a strict saddle (order 2, escape along its eigenvector); a PSD Hessian at the global
    minimum value is a global minimum; otherwise a non-strict saddle, proved by a direction in
    `ker H` (the `path_direction` and `probes` random ones) whose first non-vanishing Taylor
    coefficient is negative. The class (critical value and subset) is `network_class`.

    Args:
        net: the network `θ = (W_1, …, W_h)` to classify.
        task: the `Task` whose loss `L` is classified (`d_0`, `d_h` as `net`'s).
        gtol: the critical test `‖∇L‖ <= gtol`; default `1e-8 · (1 + ‖Σ_yx‖_F)`.
        tol: Hessian eigenvalues within `tol` count as zero; default `spectrum_tolerance`.
        key: the PRNG key of the random probes in `ker H`; default `jax.random.key(0)`, so
            repeated calls draw the same probes.
        probes: the number of random unit directions in `ker H` tried for a non-strict saddle.
        verify: run the flow from `θ + step · d`; `verified` then says whether the loss fell below
            the critical value by half the gap to the next lower one.
        step: the distance along the escape direction `d` that `verify` starts from.
    """
    check_network(net, task)
    check_count(probes, "probes")
    step = check_positive(step, "step")
    scale = 1.0 + float(jnp.linalg.norm(task.sigma_yx))
    gtol = GTOL_SCALE * scale if gtol is None else check_positive(gtol, "gtol", allow_zero=True)
    key = jax.random.key(DEFAULT_KEY_SEED) if key is None else check_key(key)
    theta, unravel = ravel_pytree(list(net.weights))
    L = float(loss(net, task))
    g = float(gradient_norm(net.weights, task))
    lam, vecs = (np.asarray(x) for x in hessian_spectrum(net, task, vectors=True))
    tol = spectrum_tolerance(lam) if tol is None else check_positive(tol, "tol", allow_zero=True)
    inert = inertia(lam, tol)
    if g > gtol:
        _, grad = flat_gradient(net, task)
        d = _unit(-np.asarray(grad(theta)), unravel)
        return CriticalPointReport(
            "not_critical", g, L, None, None, inert, lam, 1, d, np.asarray(line_polynomial(net, task, d))
        )
    S = network_class(net, task).subset
    cv = next(c for c in critical_values(task, net.widths) if c.subset == S)
    if inert[0] > 0:
        kind, order, d = "strict_saddle", 2, _unit(vecs[:, 0], unravel)
        coeffs = np.asarray(line_polynomial(net, task, d))
    elif cv.is_global_minimum:
        kind, order, d, coeffs = "global_minimum", None, None, None
    else:
        found = _higher_order(net, task, vecs[:, np.abs(lam) <= tol], key, probes)
        if found is None:
            raise RuntimeError(
                f"no escape direction found at a critical point of the non-minimal value {cv.value} "
                f"(subset {S}); try more probes"
            )
        kind, (order, d, coeffs) = "nonstrict_saddle", found
    report = CriticalPointReport(kind, g, L, cv.value, S, inert, lam, order, d, coeffs)
    if verify and d is not None:
        report = _verify(report, net, task, step)
    return report


def _verify(report: CriticalPointReport, net: DeepLinearNetwork, task: Task, step: FloatLike):
    """Flow from `θ + step · d`; verified when the loss ends below the value by half the gap."""
    d, k = report.escape_direction, report.order
    start = DeepLinearNetwork(tuple(w + step * v for w, v in zip(net.weights, d.weights)))
    levels = critical_levels(task, net.widths)
    lower = levels[levels < report.critical_value].max()
    target = report.critical_value - VERIFY_GAP_FRACTION * (report.critical_value - lower)
    mu = mode_spectrum(task)
    t1 = VERIFY_TIME_FACTOR * (step ** (2 - k) / abs(float(report.coefficients[k])) + 1.0 / mu[mu > 0].min())
    sol = solve(start, task, jnp.asarray(t1), rtol=jnp.asarray(VERIFY_RTOL), atol=jnp.asarray(VERIFY_ATOL))
    after = float(loss(DeepLinearNetwork(tuple(y[-1] for y in sol.ys)), task))
    return dataclasses.replace(report, verified=bool(after < target), loss_after_escape=after)


@dataclasses.dataclass(frozen=True)
class Ray:
    """A ray `w = w* + sign·δ` of one mode's scalar chain at an aligned balanced critical point.

    Near `w*` the chain `dw/dt = w^{h−1}(σ − w^h)` is `dδ/dt ≈ coefficient · sign^{power−1} δ^power`;
    `flows_in` when that is negative (the ray lies in the stable set of the critical point).
    """

    mode: int
    sign: int
    flows_in: bool
    coefficient: float
    power: int


def mode_rays(task: Task, widths: Widths, subset: Sequence[int]) -> tuple[Ray, ...]:
    """The balanced aligned rays at `critical_point(task, widths, subset)` and where they flow.

    Learnt modes (`w* = σ^{1/h}`): `coefficient −h σ^{2−2/h}`, power 1, both rays flow in.
    Unlearnt modes with `σ > 0` (`w* = 0`, only while a hidden slot is free): coefficient `σ`,
    power `h − 1`, so for `h = 2` and even `h` both rays escape, for odd `h >= 3` the negative
    ray flows in algebraically, `w(t) ~ −((h−2)σt)^{−1/(h−2)}`. Modes with `σ = 0`:
    coefficient `−1`, power `2h − 1`, both flow in.
    """
    if not task.whitened:
        raise InputError("mode_rays needs a whitened task (the aligned set is invariant only then)")
    widths, S = check_subset(subset, task, widths)
    mu = mode_spectrum(task)
    h = len(widths) - 1
    room = len(S) < min(widths)
    rays = []
    for j in range(min(task.d_in, task.d_out)):
        if j in S:
            kappa, p = -h * mu[j] ** (2 - 2 / h), 1
        elif not room:
            continue
        elif mu[j] > 0:
            kappa, p = mu[j], h - 1
        else:
            kappa, p = -1.0, 2 * h - 1
        for sign in (1, -1):
            rays.append(Ray(j, sign, bool(kappa * sign ** (p - 1) < 0), float(kappa), p))
    return tuple(rays)


def ray_point(task: Task, widths: Widths, subset: Sequence[int], mode: int, w: float):
    """The aligned balanced network at the critical point of `subset` with `mode`'s scalar set to `w`.

    Modes in `subset` sit at `σ_j^{1/h}`; `mode` (learnt or taking the next free hidden slot)
    has scalar `w` in every layer.
    """
    widths, S = check_subset(subset, task, widths)
    mu = mode_spectrum(task)
    h = len(widths) - 1
    modes = S if mode in S else S + (int(mode),)
    scalars = np.array([w if j == mode else mu[j] ** (1.0 / h) for j in modes])
    return aligned_network(task, widths, modes, scalars)
