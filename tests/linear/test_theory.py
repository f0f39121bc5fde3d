"""Single-mode closed forms against independent quadrature and ODE solves (SciPy, float64)."""

import numpy as np
import pytest
from scipy.integrate import quad, solve_ivp

from jaxflow import learning_time, mode_time, mode_trajectory

TS = np.linspace(0.0, 6.0, 13)


def _aligned_rhs(h, sigma):
    return lambda t, s: h * s ** (2 - 2 / h) * (sigma - s)


def _delta_rhs(delta, sigma):
    return lambda t, p: np.sqrt(4 * p**2 + delta**2) * (sigma - p)


def _ode(rhs, y0):
    sol = solve_ivp(rhs, (TS[0], TS[-1]), [y0], t_eval=TS, method="DOP853", rtol=1e-13, atol=1e-15)
    return sol.y[0]


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(("s0", "s"), [(0.01, 0.05), (0.01, 1.0), (0.01, 1.99), (3.0, 2.2)])
def test_mode_time_equals_quadrature_of_one_over_the_rate(h, s0, s):
    sigma = 2.0
    expected, _ = quad(lambda x: 1 / _aligned_rhs(h, sigma)(0, x), s0, s, epsabs=0, epsrel=1e-13, limit=200)
    np.testing.assert_allclose(mode_time(s, s0, sigma, h), expected, rtol=1e-11)


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("s0", [0.02, 2.5])
def test_mode_trajectory_solves_the_aligned_mode_ode(h, s0):
    sigma = 1.5
    np.testing.assert_allclose(
        mode_trajectory(TS, s0, sigma, h), _ode(_aligned_rhs(h, sigma), s0), rtol=1e-10
    )


@pytest.mark.parametrize(("delta", "p0"), [(0.5, 0.01), (0.5, -0.3), (-1.0, 0.01), (2.0, 3.0), (1e-3, 0.05)])
def test_delta_mode_trajectory_solves_its_ode(delta, p0):
    sigma = 1.5
    got = mode_trajectory(TS, p0, sigma, 2, delta=delta)
    np.testing.assert_allclose(got, _ode(_delta_rhs(delta, sigma), p0), rtol=1e-10, atol=1e-13)


def test_delta_mode_time_equals_quadrature():
    sigma, delta, p0 = 1.0, 0.7, -0.4
    for p in (-0.1, 0.3, 0.99):
        expected, _ = quad(lambda x: 1 / _delta_rhs(delta, sigma)(0, x), p0, p, epsabs=0, epsrel=1e-13)
        np.testing.assert_allclose(mode_time(p, p0, sigma, 2, delta=delta), expected, rtol=1e-11)


def test_trajectory_broadcasts_over_modes_and_inverts_mode_time():
    sigma, s0 = np.array([3.0, 2.0, 0.5]), np.array([1e-3, 1e-2, 1e-3])
    s = mode_trajectory(TS[:, None], s0, sigma, 3)
    assert s.shape == (TS.size, 3)
    assert np.all(np.diff(s, axis=0) >= 0) and np.all(s < sigma)
    early = s < 0.999 * sigma  # t(s) is ill-conditioned next to σ, where dt/ds -> inf
    t_back = mode_time(s, s0, sigma, 3)
    np.testing.assert_allclose(
        t_back[early], np.broadcast_to(TS[:, None], s.shape)[early], rtol=1e-10, atol=1e-12
    )


def test_learning_time_closed_form_for_two_layers():
    sigma, s0 = 2.0, 1e-4
    # Logistic: s/(σ − s) = s0/(σ − s0) · exp(2σt), so s = σ/2 at t = log(σ/s0 − 1)/(2σ).
    np.testing.assert_allclose(learning_time(s0, sigma, 2), np.log(sigma / s0 - 1) / (2 * sigma), rtol=1e-14)


@pytest.mark.parametrize("h", [3, 4, 6])
def test_learning_time_small_init_asymptotics(h):
    # For s0 -> 0 the plateau dominates: t ≈ s0^{2/h − 1} / ((h − 2) σ), relative correction
    # O((s0/σ)^{1 − 2/h}) <= 1e-4 here.
    sigma, s0 = 1.3, 1e-12
    asymptotic = s0 ** (2 / h - 1) / ((h - 2) * sigma)
    np.testing.assert_allclose(learning_time(s0, sigma, h), asymptotic, rtol=1e-3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mode_trajectory(1.0, 0.1, 1.0, 0), "depth must be a positive integer"),
        (lambda: mode_trajectory(1.0, 0.1, 1.0, 3, delta=0.5), "only defined for depth 2"),
        (lambda: mode_trajectory(1.0, 0.1, -1.0, 2), "sigma must be > 0"),
        (lambda: mode_trajectory(1.0, 0.0, 1.0, 3), "s0 must be > 0"),
        (lambda: mode_trajectory(-1.0, 0.1, 1.0, 3), "t must be finite and >= 0"),
        (lambda: mode_trajectory(1.0, np.nan, 1.0, 3), "s0 must be finite"),
        (lambda: mode_time(1.5, 0.1, 1.0, 3), "s must lie between s0 and sigma"),
        (lambda: mode_time(1.0, 0.1, 1.0, 3), "s must lie between s0 and sigma"),
        (lambda: learning_time(0.1, 1.0, 3, fraction=1.0), r"fraction must be in \(0, 1\)"),
        (lambda: learning_time(0.9, 1.0, 3), "s must lie between s0 and sigma"),
    ],
)
def test_bad_theory_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()
