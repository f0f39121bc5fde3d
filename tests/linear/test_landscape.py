"""Critical values, canonical critical points, the quotient by the hidden-node symmetry."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow import DeepLinearNetwork, Task, loss, vector_field
from jaxflow.linear import (
    apply_symmetry,
    critical_levels,
    critical_point,
    critical_values,
    fiber,
    hessian_spectrum,
    level_index,
    mode_strengths,
    nearest_critical_value,
    network_class,
    random_symmetry,
)
from jaxflow.linear.flow import solve
from jaxflow.linear.objective import gradient_norm

EPS = np.finfo(np.float64).eps
DIAG31 = Task.from_spectrum(jnp.array([3.0, 1.0]), 2, 2)


@jax.jit
def _stats(net, task):
    """Loss, max |∂L/∂W_i| and max |C_i| in one compiled call."""
    grad = jnp.max(jnp.stack([jnp.abs(g).max() for g in vector_field(net, task).weights]))
    return loss(net, task), grad, jnp.max(jnp.stack([jnp.abs(C).max() for C in net.conserved()]))


def _data_task(key, d_in=3, d_out=2, n=12, whiten=False, singular=False):
    kx, ky = jax.random.split(key)
    X = jax.random.normal(kx, (d_in, n))
    if singular:  # the last input is the sum of the first two: Σ_xx has rank d_in − 1
        X = X.at[-1].set(X[0] + X[1])
    Y = jax.random.normal(ky, (d_out, n))
    return X, Y, Task.from_data(X, Y, whiten=whiten)


def test_critical_values_of_diag_3_1():
    # L_S = ½ Σ_{j∉S} σ_j² with σ = (3, 1): S = (0, 1) -> 0, (0,) -> ½·1, (1,) -> ½·9, () -> ½·10.
    cvs = critical_values(DIAG31, (2, 2, 2))
    assert [(c.value, c.subset) for c in cvs] == [(0.0, (0, 1)), (0.5, (0,)), (4.5, (1,)), (5.0, ())]
    assert [c.is_global_minimum for c in cvs] == [True, False, False, False]
    # a width-1 bottleneck allows one learnt mode: the global minimum learns σ_1 = 3 (L = ½)
    cvs = critical_values(DIAG31, (2, 1, 2))
    assert [(c.value, c.subset, c.is_global_minimum) for c in cvs] == [
        (0.5, (0,), True),
        (4.5, (1,), False),
        (5.0, (), False),
    ]
    # depth 1 is convex: one critical class, the global minimum
    assert [(c.value, c.subset) for c in critical_values(DIAG31, (2, 2))] == [(0.0, (0, 1))]


def test_repeated_and_zero_singular_values():
    # σ = (2, 2, 1, 0): mode 3 is never learnt (it changes nothing); swapping the two σ = 2 modes
    # gives bitwise-equal values, and both 2-subsets of them are global minima under width 2.
    task = Task.from_spectrum(jnp.array([2.0, 2.0, 1.0, 0.0]), 4, 5)
    cvs = critical_values(task, (4, 2, 5))
    assert all(3 not in c.subset for c in cvs)
    assert len(cvs) == 1 + 3 + 3  # subsets of {0, 1, 2} of size <= 2
    by = {c.subset: c for c in cvs}
    assert by[(0,)].value == by[(1,)].value == 0.5 * (4 + 1)
    assert by[(0, 2)].value == by[(1, 2)].value == 0.5 * 4
    assert [c.subset for c in cvs if c.is_global_minimum] == [(0, 1)]
    assert by[(0, 1)].value == 0.5
    # the distinct levels are exactly the distinct values
    np.testing.assert_array_equal(critical_levels(task, (4, 2, 5)), np.unique([c.value for c in cvs]))
    # a repeated σ inside the top-k set: with width 1 either σ = 2 mode is a global minimum
    glob = [c.subset for c in critical_values(task, (4, 1, 5)) if c.is_global_minimum]
    assert glob == [(0,), (1,)]


@pytest.mark.parametrize("singular", [False, True])
def test_non_whitened_critical_points(key, singular):
    X, Y, task = _data_task(key, singular=singular)
    widths = (3, 2, 2)
    cvs = critical_values(task, widths)
    assert len(cvs) == 4
    for c in cvs:
        net = critical_point(task, widths, c.subset)
        # critical (∇L = 0 to rounding), on its level, and 0-balanced
        L, grad, drift = _stats(net, task)
        assert grad < 1e3 * EPS and drift < 1e3 * EPS
        assert abs(float(L) - c.value) < 1e3 * EPS
        assert network_class(net, task).subset == c.subset
    # global minimum = least squares ‖Y − W X‖²/(2N) (no bottleneck: width 2 >= d_out)
    W = np.linalg.lstsq(np.asarray(X).T, np.asarray(Y).T, rcond=None)[0].T
    lsq = np.sum((np.asarray(Y) - W @ np.asarray(X)) ** 2) / (2 * X.shape[1])
    assert abs(cvs[0].value - lsq) < 1e2 * EPS * max(lsq, 1.0)
    if not singular:  # whitening is a reparametrisation of W_1: the same critical values
        white = Task.from_data(X, Y, whiten=True)
        np.testing.assert_allclose(
            [c.value for c in critical_values(white, widths)], [c.value for c in cvs], rtol=1e-12
        )


def test_unbounded_task_has_no_critical_values():
    # Σ_xx = diag(1, 0) but Σ_yx has weight on the null input: L = −⟨Σ_yx, W⟩ + … is unbounded
    task = Task(jnp.diag(jnp.array([1.0, 0.0])), jnp.array([[1.0, 1.0]]), jnp.asarray(2.0), False)
    with pytest.raises(ValueError, match="unbounded below"):
        critical_values(task, (2, 1))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="task maps 2 -> 2"):
        critical_values(DIAG31, (3, 2, 2))
    with pytest.raises(ValueError, match="subset must hold distinct mode indices"):
        critical_point(DIAG31, (2, 2, 2), (0, 0))
    with pytest.raises(ValueError, match="allow at most 1"):
        critical_point(DIAG31, (2, 1, 2), (0, 1))
    with pytest.raises(ValueError, match="T must hold 1 matrices"):
        apply_symmetry(critical_point(DIAG31, (2, 2, 2), ()), ())
    with pytest.raises(ValueError, match=r"T\[0\] must have shape \(2, 2\)"):
        apply_symmetry(critical_point(DIAG31, (2, 2, 2), ()), (jnp.eye(3),))
    with pytest.raises(ValueError, match="invertible"):
        apply_symmetry(critical_point(DIAG31, (2, 2, 2), ()), (jnp.zeros((2, 2)),))
    with pytest.raises(ValueError, match="group must be one of"):
        random_symmetry(jax.random.key(0), (2, 2, 2), "unitary")


def test_mode_strengths_read_aligned_networks(key):
    task = Task.from_spectrum(jnp.array([3.0, 2.0, 0.5]), 3, 4)
    s = jnp.array([0.7, 0.1, 2.0])
    net = DeepLinearNetwork.init((3, 3, 3, 4), key, "aligned", task=task, strengths=s)
    np.testing.assert_allclose(mode_strengths(net.end_to_end(), task), s, rtol=1e-13)
    # vmap over end-to-end maps (the task's SVD is shared)
    Ws = jnp.stack([net.end_to_end(), 2 * net.end_to_end()])
    np.testing.assert_allclose(
        jax.vmap(mode_strengths, (0, None))(Ws, task), jnp.stack([s, 2 * s]), rtol=1e-13
    )


def test_nearest_critical_value_and_level_index(key):
    net = critical_point(DIAG31, (2, 2, 2), (1,))
    bump = DeepLinearNetwork(
        tuple(w + 1e-3 * jax.random.normal(k, w.shape) for w, k in zip(net.weights, jax.random.split(key)))
    )
    near = nearest_critical_value(bump, DIAG31)
    assert (near.value, near.subset, near.is_global_minimum) == (4.5, (1,), False)
    assert near.distance == pytest.approx(abs(float(loss(bump, DIAG31)) - 4.5), abs=1e-15)
    levels = jnp.asarray(critical_levels(DIAG31, (2, 2, 2)))  # (0, 0.5, 4.5, 5)
    np.testing.assert_array_equal(level_index(jnp.array([[4.9, 0.2], [2.0, 3.0]]), levels), [[3, 0], [1, 2]])
    # halfway between two levels takes the lower; NaN the highest; one level is always index 0
    np.testing.assert_array_equal(
        level_index(jnp.array([0.25, 2.5, jnp.nan, -1.0, 9.0]), levels), [0, 1, 3, 0, 3]
    )
    np.testing.assert_array_equal(level_index(jnp.array([1.0, -3.0]), levels[:1]), [0, 0])
    # ties in value are broken by the end-to-end map: σ = (2, 2), mode 1 learnt
    task = Task.from_spectrum(jnp.array([2.0, 2.0]), 2, 2)
    assert nearest_critical_value(critical_point(task, (2, 1, 2), (1,)), task).subset == (1,)


@pytest.fixture(scope="module")
def saddle():
    # h = 3, mode 1 of σ = (3, 1) learnt: a non-strict saddle with spare hidden width
    return critical_point(DIAG31, (2, 3, 3, 2), (0,))


@pytest.mark.parametrize("group", ["orthogonal", "gl"])
def test_fiber_keeps_loss_end_to_end_and_criticality(saddle, key, group):
    pts = fiber(saddle, key, 4, group, scale=0.5)
    np.testing.assert_allclose(jax.vmap(loss, (0, None))(pts, DIAG31), 0.5, rtol=1e-13)
    np.testing.assert_allclose(
        jax.vmap(DeepLinearNetwork.end_to_end)(pts), jnp.stack([saddle.end_to_end()] * 4), atol=1e-13
    )
    # L(g·θ) = L(θ) for all θ, so ∇L(g·θ) = g^{−T}∇L(θ): GL keeps criticality too
    assert float(jax.vmap(gradient_norm, (0, None))(pts.weights, DIAG31).max()) < 1e-12
    assert network_class(jax.tree.map(lambda x: x[0], pts), DIAG31).subset == (0,)


def test_gl_versus_orthogonal(key):
    # Off critical points: ∇_{W_i}L(T·θ) = T_i^{−T} ∇_{W_i}L(θ) T_{i−1}ᵀ (chain rule through the
    # linear action). Orthogonal T keep ‖∇L‖, the Hessian spectrum and C_i = 0; GL keep only the
    # inertia (Sylvester: H(T·θ*) = J^{−T} H(θ*) J^{−1} at a critical point).
    net = DeepLinearNetwork.init((2, 3, 3, 2), key, "gaussian", scale=1.0)
    T = random_symmetry(jax.random.key(1), net.widths, "gl", scale=0.7)
    moved = apply_symmetry(net, T)
    grads, moved_grads = vector_field(net, DIAG31).weights, vector_field(moved, DIAG31).weights
    full = (jnp.eye(2),) + T + (jnp.eye(2),)
    for i in range(3):
        expected = jnp.linalg.solve(full[i + 1].T, grads[i]) @ full[i].T
        np.testing.assert_allclose(moved_grads[i], expected, atol=1e-12)
    Q = random_symmetry(jax.random.key(2), net.widths, "orthogonal")
    rotated = apply_symmetry(net, Q)
    assert float(gradient_norm(rotated.weights, DIAG31)) == pytest.approx(
        float(gradient_norm(net.weights, DIAG31)), rel=1e-13
    )
    assert (
        abs(float(gradient_norm(moved.weights, DIAG31)) / float(gradient_norm(net.weights, DIAG31)) - 1)
        > 1e-2
    )

    star = critical_point(DIAG31, (2, 3, 3, 2), (0,))
    lam = np.asarray(hessian_spectrum(star, DIAG31))
    lam_o = np.asarray(hessian_spectrum(apply_symmetry(star, Q), DIAG31))
    lam_g = np.asarray(hessian_spectrum(apply_symmetry(star, T), DIAG31))
    np.testing.assert_allclose(lam_o, lam, atol=1e-12)
    assert np.abs(lam_g - lam).max() > 1e-2
    tol = 1e-10  # eigenvalues of a congruent matrix, computed with T's conditioning
    for spec in (lam_o, lam_g):
        assert (np.sum(spec < -tol), np.sum(np.abs(spec) <= tol), np.sum(spec > tol)) == (
            np.sum(lam < -tol),
            np.sum(np.abs(lam) <= tol),
            np.sum(lam > tol),
        )
    assert all(float(jnp.abs(C).max()) < 1e-13 for C in apply_symmetry(star, Q).conserved())
    assert max(float(jnp.abs(C).max()) for C in apply_symmetry(star, T).conserved()) > 1e-2


def test_flow_is_equivariant_under_orthogonal_elements_only(key):
    net = DeepLinearNetwork.init((2, 3, 3, 2), key, "gaussian", scale=0.5)
    Q = random_symmetry(jax.random.key(3), net.widths, "orthogonal")
    T = random_symmetry(jax.random.key(4), net.widths, "gl", scale=0.7)
    ts = jnp.array([0.5, 1.0, 2.0])
    run = lambda n: solve(n, DIAG31, ts[-1], rtol=jnp.asarray(1e-11), atol=jnp.asarray(1e-11),
                          saveat=diffrax.SaveAt(ts=ts)).ys  # fmt: skip
    base = run(net)
    for g, equivariant in ((Q, True), (T, False)):
        moved = run(apply_symmetry(net, g))
        for k in range(ts.size):
            mapped = apply_symmetry(DeepLinearNetwork(tuple(y[k] for y in base)), g).weights
            err = max(float(jnp.abs(a - b[k]).max()) for a, b in zip(mapped, moved))
            assert (err < 1e-8) if equivariant else (err > 1e-3)
