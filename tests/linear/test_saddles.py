"""Classification of critical points, higher-order escape, stable and unstable rays."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import jet
from jax.flatten_util import ravel_pytree

from jaxflow import DeepLinearNetwork, Task, classify_critical_point, loss
from jaxflow.linear import (
    critical_point,
    critical_values,
    fiber,
    line_polynomial,
    mode_rays,
    ray_point,
)
from jaxflow.linear.flow import solve
from jaxflow.linear.task import task_modes

DIAG31 = Task.from_spectrum(jnp.array([3.0, 1.0]), 2, 2)
RANK4 = Task.from_spectrum(jnp.array([4.0, 3.0, 2.0, 1.0]), 4, 4)

# The table of the issue, Σ = diag(3, 1), all widths 2, balanced aligned critical points.
# (kind, order, inertia) per depth h and learnt subset; the derivations are in the comments of
# test_table_of_diag_3_1 and in tests/linear/test_hessian.py::test_closed_form_spectra_for_diag_3_1.
TABLE = {
    2: {
        (): ("strict_saddle", 2, (4, 0, 4)),  # eigenvalues ±3, ±1, each twice
        (0,): ("strict_saddle", 2, (1, 3, 4)),  # min eigenvalue −σ_2 = −1
        (1,): ("strict_saddle", 2, (2, 3, 3)),  # −3 (= −σ_1) and −2 (= σ_2 − σ_1)
        (0, 1): ("global_minimum", None, (0, 4, 4)),
    },
    3: {
        (): ("nonstrict_saddle", 3, (0, 12, 0)),  # H = 0, L(tD) = 5 − t³⟨Σ, D_3D_2D_1⟩ + …
        (0,): ("nonstrict_saddle", 3, (0, 9, 3)),  # PSD; along mode 2's path L = ½(1 − t³)²
        (1,): ("strict_saddle", 2, (1, 9, 2)),  # min eigenvalue σ_2 − σ_1 = −2
        (0, 1): ("global_minimum", None, (0, 8, 4)),
    },
    4: {
        (): ("nonstrict_saddle", 4, (0, 16, 0)),
        (0,): ("nonstrict_saddle", 4, (0, 13, 3)),
        (1,): ("strict_saddle", 2, (1, 13, 2)),
        (0, 1): ("global_minimum", None, (0, 12, 4)),
    },
}


@pytest.mark.parametrize("h", [2, 3, 4])
def test_table_of_diag_3_1(h):
    values = {(): 5.0, (0,): 0.5, (1,): 4.5, (0, 1): 0.0}  # ½ Σ_{j∉S} σ_j² with σ = (3, 1)
    for S, (kind, order, inert) in TABLE[h].items():
        rep = classify_critical_point(critical_point(DIAG31, (2,) * (h + 1), S), DIAG31)
        assert (rep.kind, rep.order, rep.inertia, rep.subset) == (kind, order, inert, S), (h, S)
        assert rep.critical_value == values[S] and abs(rep.loss - values[S]) < 1e-14
        assert rep.gradient_norm < 1e-14
        assert (rep.unstable_dim, rep.centre_dim, rep.stable_dim) == inert
        if kind == "global_minimum":
            assert rep.escape_direction is None
            continue
        c = rep.coefficients
        # the proof: c_1 = … = c_{k−1} = 0 and c_k < 0 along the unit escape direction
        scale = np.abs(c[1:]).max()
        assert np.all(np.abs(c[1:order]) < 1e-8 * scale) and c[order] < 0
        d = ravel_pytree(list(rep.escape_direction.weights))[0]
        assert float(jnp.linalg.norm(d)) == pytest.approx(1.0, rel=1e-14)
    if h == 2:  # strict: c_2 = ½ λ_min along the eigenvector: λ_min = −3 at the origin
        rep = classify_critical_point(critical_point(DIAG31, (2, 2, 2), ()), DIAG31)
        assert rep.coefficients[2] == pytest.approx(-1.5, abs=1e-13)
    else:
        # at the origin the path D_i = a_i b_{i−1}ᵀ through mode 1 with |D_i| = 1/√h gives
        # L(t) = 5 − σ_1 t^h / h^{h/2} + …: c_h = −3 h^{−h/2} (the most negative unit direction);
        # at mode 1 learnt the path through the free hidden slot learns mode 2: c_h = −1 · h^{−h/2}.
        rep = classify_critical_point(critical_point(DIAG31, (2,) * (h + 1), ()), DIAG31)
        assert rep.coefficients[h] == pytest.approx(-3 * h ** (-h / 2), rel=1e-12)
        rep = classify_critical_point(critical_point(DIAG31, (2,) * (h + 1), (0,)), DIAG31)
        assert rep.coefficients[h] == pytest.approx(-(h ** (-h / 2)), rel=1e-12)


def test_line_polynomial_matches_taylor_mode_autodiff(key):
    # an independent computation of the Taylor coefficients of t ↦ L(θ + t d): jet's k-th
    # derivative divided by k!; and the polynomial evaluated at a few t reproduces the loss
    net = DeepLinearNetwork.init((2, 3, 2, 2), key, "gaussian", scale=1.0)
    direction = DeepLinearNetwork.init((2, 3, 2, 2), jax.random.key(5), "gaussian", scale=1.0)
    c = np.asarray(line_polynomial(net, DIAG31, direction))
    assert c.shape == (7,)
    theta, unravel = ravel_pytree(list(net.weights))
    d = ravel_pytree(list(direction.weights))[0]
    f = lambda x: loss(DeepLinearNetwork(tuple(unravel(x))), DIAG31)
    zeros = [jnp.zeros_like(d)] * 5
    y0, ys = jet.jet(f, (theta,), ((d, *zeros),))
    taylor = np.array([y0] + [y / float(np.prod(np.arange(1, k + 2))) for k, y in enumerate(ys)])
    np.testing.assert_allclose(c, taylor, rtol=1e-12, atol=1e-12 * np.abs(c).max())
    for t in (-0.7, 0.3, 1.1):
        moved = DeepLinearNetwork(tuple(w + t * v for w, v in zip(net.weights, direction.weights)))
        assert np.polyval(c[::-1], t) == pytest.approx(float(loss(moved, DIAG31)), rel=1e-12)


@pytest.mark.parametrize("h", [2, 3, 4, 5])
def test_rank4_subsets_classified_as_theory_says(h):
    # σ = (4, 3, 2, 1), widths (4, 3, …, 3, 4): k = min(3, rank 4) = 3 modes can be learnt.
    # Theory: S is a global minimum iff S = {0, 1, 2} (the top k). For h = 2 every other critical
    # point is a strict saddle. For h >= 3, S misses a larger mode than one it learnt → a
    # rotation between them has curvature σ_l − σ_j < 0 (strict); S = {0, …, |S|−1} with |S| < k
    # → PSD Hessian and escape along the next mode's path at order h (non-strict).
    widths = (4,) + (3,) * (h - 1) + (4,)
    for size in range(4):
        for S in itertools.combinations(range(4), size):
            rep = classify_critical_point(critical_point(RANK4, widths, S), RANK4)
            top = S == tuple(range(size))
            if S == (0, 1, 2):
                expected = ("global_minimum", None)
            elif h == 2 or not top:
                expected = ("strict_saddle", 2)
            else:
                expected = ("nonstrict_saddle", h)
            assert (rep.kind, rep.order) == expected, (h, S)
            assert rep.critical_value == pytest.approx(
                0.5 * sum(s**2 for j, s in enumerate((4, 3, 2, 1)) if j not in S)
            )


@pytest.mark.parametrize("group", ["orthogonal", "gl"])
def test_fiber_points_have_the_classification_of_their_representative(group, key):
    # T acts linearly on θ and L(T·θ) = L(θ), so L(T·θ + t T·d) = L(θ + t d): the Taylor
    # coefficients along lines, hence kind and order, are the same; inertia by Sylvester's law.
    for S in [(), (0,), (1,), (0, 1)]:
        star = critical_point(DIAG31, (2, 2, 2, 2), S)
        rep = classify_critical_point(star, DIAG31)
        pts = fiber(star, key, 2, group, scale=0.3)
        for i in range(2):
            other = classify_critical_point(
                jax.tree.map(lambda x, i=i: x[i], pts), DIAG31, gtol=1e-10, tol=1e-9
            )
            assert (other.kind, other.order, other.inertia, other.subset) == (
                rep.kind,
                rep.order,
                rep.inertia,
                rep.subset,
            ), (S, group, i)


def test_random_network_is_not_critical(key):
    net = DeepLinearNetwork.init((2, 2, 2, 2), key, "gaussian", scale=1.0)
    rep = classify_critical_point(net, DIAG31)
    assert rep.kind == "not_critical" and rep.order == 1
    assert rep.critical_value is None and rep.subset is None
    # along d = −∇L/‖∇L‖ the first coefficient is the directional derivative −‖∇L‖
    assert rep.coefficients[1] == pytest.approx(-rep.gradient_norm, rel=1e-12)


def test_dynamic_verification_leaves_the_plateau():
    # a step of 0.1 along the escape direction, then the flow: the loss ends below the critical
    # value by more than half the gap to the next lower critical value
    for S, value in [((), 5.0), ((0,), 0.5), ((1,), 4.5)]:
        rep = classify_critical_point(critical_point(DIAG31, (2, 2, 2, 2), S), DIAG31, verify=True)
        assert rep.verified, (S, rep.loss_after_escape)
        assert rep.loss_after_escape < value


def _scalar(net, mode):
    """The per-layer scalar w of `mode` in hidden slot 0 of an aligned balanced network."""
    v = task_modes(DIAG31).V[:, mode]
    return float((net.weights[0] @ v)[0])


def test_mode_rays_rules():
    # origin, σ = (3, 1): h = 2 both rays of both modes escape (dw/dt = σw); h = 3 the negative
    # rays flow in (dw/dt = σw² > 0 pushes w < 0 up to 0); h = 4 both escape (dw/dt = σw³).
    flows = lambda h, S: {(r.mode, r.sign): r.flows_in for r in mode_rays(DIAG31, (2,) * (h + 1), S)}
    assert flows(2, ()) == {(0, 1): False, (0, -1): False, (1, 1): False, (1, -1): False}
    assert flows(3, ()) == {(0, 1): False, (0, -1): True, (1, 1): False, (1, -1): True}
    assert flows(4, ()) == {(0, 1): False, (0, -1): False, (1, 1): False, (1, -1): False}
    # learnt modes are stable: both rays flow back (coefficient −h σ^{2−2/h}, power 1)
    rays = {(r.mode, r.sign): r for r in mode_rays(DIAG31, (2, 2, 2, 2), (0,))}
    assert rays[(0, 1)].flows_in and rays[(0, -1)].flows_in
    assert rays[(0, 1)].coefficient == pytest.approx(-3 * 3 ** (4 / 3))
    # no free hidden slot: only the learnt modes have rays
    assert {r.mode for r in mode_rays(DIAG31, (2, 1, 1, 2), (0,))} == {0}


def test_negative_ray_flows_into_the_origin_for_odd_depth_only():
    # h = 3, mode 1 (σ = 3): near 0 the chain is dw/dt = σw², so 1/w(t) = 1/w₀ − σt, i.e.
    # w(t) ~ −((h−2)σt)^{−1/(h−2)} = −1/(3t); the neglected −w⁵ term changes w by O(w³/σ) ≈ 1e-6.
    w0, widths = -0.05, (2, 2, 2, 2)
    start = ray_point(DIAG31, widths, (), 0, w0)
    for t in (100.0, 1000.0):
        sol = solve(start, DIAG31, jnp.asarray(t), rtol=jnp.asarray(1e-10), atol=jnp.asarray(1e-14))
        w = _scalar(DeepLinearNetwork(tuple(y[-1] for y in sol.ys)), 0)
        assert w == pytest.approx(1 / (1 / w0 - 3 * t), rel=1e-4)
        assert w * 3 * t == pytest.approx(-1, rel=0.01 if t == 1000 else 0.07)
    # the positive ray escapes and learns the mode: w → σ^{1/3}
    sol = solve(
        ray_point(DIAG31, widths, (), 0, 0.05),
        DIAG31,
        jnp.asarray(100.0),
        rtol=jnp.asarray(1e-10),
        atol=jnp.asarray(1e-14),
    )
    assert _scalar(DeepLinearNetwork(tuple(y[-1] for y in sol.ys)), 0) == pytest.approx(
        3 ** (1 / 3), rel=1e-6
    )
    # h = 4: dw/dt = σw³ pushes the negative ray away too, to w = −σ^{1/4} (W = σ, learnt)
    sol = solve(
        ray_point(DIAG31, (2,) * 5, (), 0, -0.05),
        DIAG31,
        jnp.asarray(1000.0),
        rtol=jnp.asarray(1e-10),
        atol=jnp.asarray(1e-14),
    )
    assert _scalar(DeepLinearNetwork(tuple(y[-1] for y in sol.ys)), 0) == pytest.approx(
        -(3 ** (1 / 4)), rel=1e-6
    )


def test_non_whitened_classification_matches_the_whitened_task():
    # whitening maps W_1 ↦ W_1 Σ_xx^{½}, a linear invertible change of the weights: Taylor
    # coefficients along lines are the same and the Hessians are congruent (same inertia)
    X = jax.random.normal(jax.random.key(1), (3, 12))
    Y = jax.random.normal(jax.random.key(2), (2, 12))
    raw, white = Task.from_data(X, Y), Task.from_data(X, Y, whiten=True)
    widths = (3, 2, 2, 2)
    for c in critical_values(raw, widths):
        a = classify_critical_point(critical_point(raw, widths, c.subset), raw)
        b = classify_critical_point(critical_point(white, widths, c.subset), white)
        assert (a.kind, a.order, a.inertia, a.subset) == (b.kind, b.order, b.inertia, b.subset)
        assert a.critical_value == pytest.approx(b.critical_value, rel=1e-12)
        assert a.kind == (
            "global_minimum"
            if c.is_global_minimum
            else "nonstrict_saddle"
            if c.subset in ((), (0,))
            else "strict_saddle"
        )


def test_bad_inputs_name_the_argument():
    net = critical_point(DIAG31, (2, 2, 2), ())
    with pytest.raises(ValueError, match="net must be a DeepLinearNetwork"):
        classify_critical_point(net.weights, DIAG31)
    with pytest.raises(ValueError, match="net.widths"):
        classify_critical_point(net, RANK4)
    with pytest.raises(ValueError, match="probes must be a positive integer"):
        classify_critical_point(net, DIAG31, probes=0)
    with pytest.raises(ValueError, match="step must be finite and > 0"):
        classify_critical_point(net, DIAG31, step=-0.1)
    with pytest.raises(ValueError, match="whitened task"):
        mode_rays(Task.from_data(jnp.eye(2), jnp.eye(2)), (2, 2, 2), ())
