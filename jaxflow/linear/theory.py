"""Closed forms for one mode of the gradient flow on a whitened task.

An aligned, 0-balanced network keeps `W = W_h ⋯ W_1 = Σ_k s_k u_k v_kᵀ` on the singular vectors of
`Σ_yx = Σ_k σ_k u_k v_kᵀ`, and each mode strength follows

    ds/dt = h s^{2−2/h} (σ − s)                        (h = 1: exponential; h = 2: logistic).

A two-layer mode `W_1 = a v`, `W_2 = b u` that is δ-balanced (`b² − a² = δ`) has `p = ab` with

    dp/dt = sqrt(4p² + δ²) (σ − p)                     (δ = 0 gives the h = 2 logistic).

Both have elementary `t(s) = ∫ ds / ṡ` (below), inverted by a bracketing root find where `s(t)` has
no closed form. The critical values the modes settle between are in
`jaxflow.linear.landscape.critical_values`. NumPy/SciPy in float64; not traceable by JAX.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

from .._checks import InputError, check_count, check_positive


def mode_time(s, s0, sigma, depth: int, delta=0.0):
    """Time `t` at which a mode started at `s0` reaches `s` (which lies between `s0` and `σ`).

    `delta ≠ 0` (only for `depth = 2`) is the δ-balanced two-layer mode.
    """
    s, s0, sigma = _check_mode(s0, sigma, depth, delta, s=s)
    return _time(s, s0, sigma, depth, float(delta))


def mode_trajectory(t, s0, sigma, depth: int, delta=0.0):
    """The mode strength `s(t)` from `s(0) = s0`: closed form for `h = 1, 2` (`δ = 0`), otherwise
    the root of `mode_time(s) = t` (relative precision ~`16·h·eps`)."""
    t = np.asarray(t, float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise InputError(f"t must be finite and >= 0, got {t.tolist()}")
    s0, sigma = _check_mode(s0, sigma, depth, delta)
    if depth == 1:
        return sigma + (s0 - sigma) * np.exp(-t)
    if depth == 2 and delta == 0:
        return sigma / (1 + (sigma / s0 - 1) * np.exp(-2 * sigma * t))
    return np.vectorize(_invert, otypes=[float])(t, s0, sigma, depth, float(delta))


def learning_time(s0, sigma, depth: int, fraction=0.5, delta=0.0):
    """Escape time of a mode: when `s` first reaches `fraction · σ` from `s0 < fraction · σ`."""
    fraction = check_positive(fraction, "fraction")
    if fraction >= 1:
        raise InputError(f"fraction must be in (0, 1) (σ itself is reached only as t -> inf), got {fraction}")
    return mode_time(fraction * np.asarray(sigma, float), s0, sigma, depth, delta)


def _time(s, s0, sigma, depth: int, delta: float):
    if depth == 2:
        return (_delta_antiderivative(s, sigma, delta) - _delta_antiderivative(s0, sigma, delta)) / np.sqrt(
            4 * sigma**2 + delta**2
        )
    # s = σ y^h turns the integrand into σ^{2/h−2} (y^{1−h} + y/(1 − y^h)).
    y, y0 = (s / sigma) ** (1 / depth), (s0 / sigma) ** (1 / depth)
    return sigma ** (2 / depth - 2) * (_aligned_antiderivative(y, depth) - _aligned_antiderivative(y0, depth))


def _aligned_antiderivative(y, h: int):
    """`G(y) = ∫ y^{1−h} + y/(1 − y^h) dy`, the second term by partial fractions over the h-th
    roots of unity `ω`: `∫ y/(1 − y^h) dy = −[h = 1] y − (1/h) Σ_ω ω² log(ω − y)` (real in sum)."""
    y = np.asarray(y, float)[..., None]
    power = y if h == 1 else np.log(y) if h == 2 else y ** (2 - h) / (2 - h)
    omega = np.exp(2j * np.pi * np.arange(h) / h)
    real = np.isclose(omega.imag, 0)
    # Real roots ±1 (ω² = 1): log|ω − y|, same derivative without the branch cut. Complex roots:
    # the principal log is continuous for real y since Im(ω − y) = Im ω never changes sign.
    logs = np.sum(np.log(np.abs(omega[real].real - y)), axis=-1)
    logs = logs + np.sum(omega[~real] ** 2 * np.log(omega[~real] - y), axis=-1).real
    partial = -(h == 1) * y[..., 0] - logs / h
    return power[..., 0] + partial


def _delta_antiderivative(p, sigma, delta: float):
    """`Λ(p)` with `dΛ/dp = R / (sqrt(4p² + δ²)(σ − p))`, `R = sqrt(4σ² + δ²)`:
    `Λ = log(4σp + δ² + R sqrt(4p² + δ²)) − log|2(p − σ)|` (the argument is > 0 by Cauchy–Schwarz)."""
    R = np.sqrt(4 * sigma**2 + delta**2)
    return np.log(4 * sigma * p + delta**2 + R * np.sqrt(4 * p**2 + delta**2)) - np.log(
        np.abs(2 * (p - sigma))
    )


_GAP = 16 * np.finfo(float).eps  # relative distance from σ beyond which s(t) is taken as σ


def _invert(t, s0, sigma, depth: int, delta: float):
    end = sigma + _GAP * depth * sigma * np.sign(s0 - sigma)  # σ to machine precision
    if t == 0 or abs(s0 - sigma) <= abs(end - sigma):
        return s0
    if _time(end, s0, sigma, depth, delta) <= t:
        return end
    return scipy.optimize.brentq(
        lambda s: _time(s, s0, sigma, depth, delta) - t, s0, end, xtol=1e-300, rtol=4 * np.finfo(float).eps
    )


def _check_mode(s0, sigma, depth, delta, s=None):
    check_count(depth, "depth")
    delta = float(delta)
    if not np.isfinite(delta) or (delta != 0 and depth != 2):
        raise InputError(
            f"delta must be finite and is only defined for depth 2, got delta={delta}, depth={depth}"
        )
    arrays = {"s0": s0, "sigma": sigma} | ({} if s is None else {"s": s})
    out = {}
    for name, v in arrays.items():
        out[name] = np.asarray(v, float)
        if not np.all(np.isfinite(out[name])):
            raise InputError(f"{name} must be finite, got {out[name].tolist()}")
    if np.any(out["sigma"] <= 0):
        raise InputError(f"sigma must be > 0, got {out['sigma'].tolist()}")
    if depth >= 2 and delta == 0 and np.any(out["s0"] <= 0):
        raise InputError(
            f"s0 must be > 0 for depth >= 2 with delta = 0 (s = 0 is a fixed point), got {out['s0'].tolist()}"
        )
    if s is not None:
        lo, hi = np.minimum(out["s0"], out["sigma"]), np.maximum(out["s0"], out["sigma"])
        inside = (lo <= out["s"]) & (out["s"] <= hi) & (out["s"] != out["sigma"])
        if not np.all(inside):
            raise InputError(
                "s must lie between s0 and sigma (a mode moves monotonically from s0 towards sigma "
                f"and reaches it only as t -> inf), got s={out['s'].tolist()}, s0={out['s0'].tolist()}, "
                f"sigma={out['sigma'].tolist()}"
            )
        return out["s"], out["s0"], out["sigma"]
    return out["s0"], out["sigma"]
