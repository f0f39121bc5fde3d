"""Loss, vector fields and the gradient flow / descent, against theory (float64).

Flows share the widths `(2, 3, 3)` (depth 2) and `(2, 3, 3, 3)` (depth 3), 21 save times, so the
compiled solves are reused across tests.
"""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

from jaxflow import (
    DeepLinearNetwork,
    Task,
    gradient_descent,
    gradient_flow,
    loss,
    mode_trajectory,
    vector_field,
)
from jaxflow.linear import flow as flow_module
from jaxflow.linear.objective import gradient_norm, loss_adjacency, vector_field_adjacency

W2, W3 = (2, 3, 3), (2, 3, 3, 3)
SIGMA = jnp.array([2.0, 1.0])
T1, SAVES = 10.0, 21
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture(scope="module")
def spectrum_task():
    return Task.from_spectrum(SIGMA, 2, 3)


@pytest.fixture(scope="module")
def teacher_task():
    return Task.teacher(jax.random.key(3), 2, 3, scale=2.0)


@pytest.fixture(scope="module")
def teacher_run(teacher_task):
    net = DeepLinearNetwork.init(W2, jax.random.key(1), "gaussian", scale=0.5)
    return net, gradient_flow(net, teacher_task, T1, saveat=SAVES, **TIGHT)


def _data_task(seed, d_in, d_out, whiten=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(d_in, 4 * d_in + 3))
    return Task.from_data(
        X, rng.normal(size=(d_out, d_in)) @ X + 0.3 * rng.normal(size=(d_out, X.shape[1])), whiten=whiten
    )


# --- the loss and its gradient, on the weights and on A -----------------------------------------


@settings(max_examples=6, deadline=None)
@given(
    widths=st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple),
    kind=st.sampled_from(["teacher", "data", "whitened data"]),
    seed=st.integers(0, 1000),
)
def test_blockwise_field_equals_adjacency_field_equals_minus_autodiff_gradient(widths, kind, seed):
    key = jax.random.key(seed)
    if kind == "teacher":
        task = Task.teacher(key, widths[0], widths[-1])
    else:
        task = _data_task(seed, widths[0], widths[-1], whiten=kind == "whitened data")
    net = DeepLinearNetwork.init(widths, key, "gaussian", scale=1.0)
    grads, field, FA, LA, L = _fields(net, task)
    for f, g in zip(field.weights, grads):
        np.testing.assert_allclose(f, -g, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(FA, field.adjacency(), rtol=1e-12, atol=1e-13)  # also: block sub-diagonal
    np.testing.assert_allclose(LA, L, rtol=1e-13)


@jax.jit  # one compilation per shape instead of one per primitive
def _fields(net, task):
    grads = jax.grad(lambda ws: loss(DeepLinearNetwork(ws), task))(net.weights)
    A = net.adjacency()
    return (
        grads,
        vector_field(net, task),
        vector_field_adjacency(A, net.widths, task),
        loss_adjacency(A, net.widths, task),
        loss(net, task),
    )


def test_whitened_loss_on_A_is_half_squared_distance_to_E(spectrum_task, key):
    net = DeepLinearNetwork.init(W3, key, "gaussian", scale=1.0)
    n, h = sum(W3), len(W3) - 1
    E = jnp.zeros((n, n)).at[n - 3 :, :2].set(spectrum_task.sigma_yx)
    Ah = jnp.linalg.matrix_power(net.adjacency(), h)
    np.testing.assert_allclose(
        loss_adjacency(net.adjacency(), W3, spectrum_task), 0.5 * jnp.sum((E - Ah) ** 2)
    )


# --- the flow: what theory says is conserved, monotone and exact ------------------------------


def test_loss_non_increasing_and_conserved_blocks_constant(teacher_run):
    net, traj = teacher_run
    assert bool(traj.stats.successful) and bool(jnp.all(traj.reached))
    np.testing.assert_allclose(traj.ts, np.linspace(0, T1, SAVES))
    L = np.asarray(traj.losses)
    assert np.all(np.diff(L) <= 1e-13 * L[0])  # dL/dt = −‖∇L‖² <= 0, up to rounding
    assert float(jnp.max(traj.conservation_drift)) < 1e-8
    for c, c0 in zip(traj.final.conserved(), net.conserved()):
        np.testing.assert_allclose(c, c0, atol=1e-8 * float(jnp.linalg.norm(c0)))


def test_saved_reductions_match_the_final_network(teacher_run, teacher_task):
    _, traj = teacher_run
    np.testing.assert_allclose(traj.losses[-1], loss(traj.final, teacher_task), rtol=1e-12, atol=1e-15)
    sv = jnp.linalg.svd(traj.final.end_to_end(), compute_uv=False)
    np.testing.assert_allclose(traj.singular_values[-1], sv, rtol=1e-12)
    assert float(traj.stats.t_final) == T1 and int(traj.stats.num_steps) > 0


@pytest.mark.parametrize("t1", [0.5, 2.0])
def test_adjacency_stays_nilpotent_with_spectrum_zero(t1, teacher_task):
    net = DeepLinearNetwork.init(W2, jax.random.key(1), "gaussian", scale=0.5)
    A = gradient_flow(net, teacher_task, t1, saveat=SAVES).final.adjacency()
    h = len(W2) - 1
    assert not np.any(np.asarray(jnp.linalg.matrix_power(A, h + 1)))
    # Eigenvalues of a nilpotent matrix of index h + 1 computed in floating point scatter like
    # (eps ‖A‖)^{1/(h+1)} (a Jordan block's sensitivity): bound them by 10× that.
    bound = 10 * (np.finfo(float).eps * float(jnp.linalg.norm(A, 2))) ** (1 / (h + 1))
    assert np.max(np.abs(np.linalg.eigvals(np.asarray(A)))) < bound


@pytest.mark.parametrize("widths", [W2, W3])
def test_aligned_balanced_modes_follow_the_closed_form(widths, spectrum_task, key):
    s0, h = 1e-2, len(widths) - 1
    net = DeepLinearNetwork.init(widths, key, "aligned", task=spectrum_task, strengths=s0)
    traj = gradient_flow(net, spectrum_task, T1, saveat=SAVES, **TIGHT)
    theory = mode_trajectory(np.asarray(traj.ts)[:, None], s0, np.asarray(SIGMA), h)
    assert theory[-1, 1] > 0.999 * SIGMA[1]  # the run crosses both plateaus
    # Solved at rtol 1e-10, the modes sit ~1e-9 from the exact curves (the issue asks for 1e-6).
    np.testing.assert_allclose(traj.singular_values, theory, atol=1e-8 * float(SIGMA[0]))


def test_delta_balanced_two_layer_modes_follow_their_ode(spectrum_task):
    delta, a = 0.3, jnp.array([0.05, 0.02])
    U, _, Vt = spectrum_task.svd()
    R, _ = jnp.linalg.qr(jax.random.normal(jax.random.key(5), (3, 3)))  # hidden frame
    b = jnp.sqrt(jnp.append(a, 0.0) ** 2 + delta)  # b_k² − a_k² = δ, also on the free direction
    net = DeepLinearNetwork((R[:, :2] @ jnp.diag(a) @ Vt, U @ jnp.diag(b) @ R.T))
    np.testing.assert_allclose(net.conserved()[0], delta * np.eye(3), atol=1e-14)
    traj = gradient_flow(net, spectrum_task, T1, saveat=SAVES, **TIGHT)
    theory = mode_trajectory(
        np.asarray(traj.ts)[:, None], np.asarray(a * b[:2]), np.asarray(SIGMA), 2, delta=delta
    )
    np.testing.assert_allclose(traj.singular_values, theory, atol=1e-8 * float(SIGMA[0]))


def test_stop_at_convergence_reaches_least_squares_and_holds_after_the_stop():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(2, 20)), rng.normal(size=(3, 20))
    task = Task.from_data(X, Y)  # not whitened; a (2 -> 3) map of rank <= 2 is unconstrained
    W_ls = np.linalg.lstsq(X.T, Y.T, rcond=None)[0].T
    L_min = np.sum((Y - W_ls @ X) ** 2) / (2 * X.shape[1])
    net = DeepLinearNetwork.init(W2, jax.random.key(2), "gaussian", scale=0.5)
    traj = gradient_flow(net, task, 500.0, saveat=SAVES, stop_at_convergence=True, gtol=1e-9, **TIGHT)
    t_stop = float(traj.stats.t_final)
    assert bool(traj.stats.converged) and float(traj.stats.grad_norm) < 1e-9 and t_stop < 500.0
    # Near the (strict, PL) minimum L − L_min <= ‖∇L‖²/(2μ): far below the tolerance used here.
    np.testing.assert_allclose(float(loss(traj.final, task)), L_min, rtol=1e-12)
    np.testing.assert_array_equal(traj.reached, traj.ts <= t_stop)
    assert 0 < int(jnp.sum(traj.reached)) < SAVES
    np.testing.assert_array_equal(traj.losses[~traj.reached], loss(traj.final, task))
    np.testing.assert_allclose(traj.ts, np.linspace(0, 500.0, SAVES))


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Heun()], ids=["fsal", "not-fsal"])
def test_stop_event_fires_at_the_first_step_end_below_gtol(solver, teacher_task):
    """The event reads `g` carried in the state (the FSAL stage, or a field evaluation for other
    solvers); it must stop where an independent `‖∇L‖` of the saved step ends first drops below."""
    net = DeepLinearNetwork.init(W2, jax.random.key(5), "gaussian", scale=0.5)
    args = dict(solver=solver, rtol=jnp.asarray(1e-6), atol=jnp.asarray(1e-6), max_steps=4096)
    every = diffrax.SaveAt(steps=True, fn=lambda t, w, task: gradient_norm(w, task))
    free = flow_module.solve(net, teacher_task, jnp.asarray(40.0), saveat=every, **args)
    norms, ts = np.asarray(free.ys), np.asarray(free.ts)
    gtol = float(np.quantile(norms[np.isfinite(ts)], 0.3))  # crossed somewhere mid-run
    first = int(np.argmax(norms < gtol))
    stopped = flow_module.solve(net, teacher_task, jnp.asarray(40.0), gtol=jnp.asarray(gtol), **args)
    assert float(stopped.ts[-1]) == ts[first]  # same steps up to the stop, bitwise
    np.testing.assert_allclose(
        gradient_norm(tuple(w[-1] for w in stopped.ys), teacher_task), norms[first], rtol=1e-12
    )


@pytest.mark.parametrize("solver", [diffrax.Tsit5(), diffrax.Dopri5(), diffrax.Dopri8(), diffrax.Bosh3()])
def test_unrolled_stages_step_like_diffrax(solver, teacher_task):
    """`solve` steps FSAL Runge–Kutta solvers itself (stages unrolled); Diffrax steps them under
    `BacksolveAdjoint`. Same steps, same dense output at the save times, to rounding. (`dt0` keeps
    the first error estimate above rounding, where the two sums' rounding would steer the steps.)"""
    net = DeepLinearNetwork.init(W2, jax.random.key(6), "gaussian", scale=0.5)
    ts = jnp.linspace(0.0, 6.0, 7)
    run = lambda **kw: flow_module.solve(
        net, teacher_task, jnp.asarray(6.0), solver=solver, rtol=jnp.asarray(1e-8), atol=jnp.asarray(1e-8),
        saveat=diffrax.SaveAt(ts=ts), dt0=jnp.asarray(0.2), **kw
    )  # fmt: skip
    ours, theirs = run(), run(adjoint=diffrax.BacksolveAdjoint())
    assert int(ours.stats["num_steps"]) == int(theirs.stats["num_steps"])
    for a, b in zip(ours.ys, theirs.ys):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_failed_run_is_reported_not_raised_with_throw_false(teacher_task, key):
    net = DeepLinearNetwork.init(W2, key, "gaussian", scale=0.5)
    traj = gradient_flow(net, teacher_task, T1, saveat=SAVES, max_steps=4, throw=False)
    assert not bool(traj.stats.successful) and not bool(traj.stats.converged)
    assert int(traj.stats.num_steps) == 4 and float(traj.stats.t_final) < T1
    assert np.all(np.isfinite(traj.losses)) and not bool(jnp.all(traj.reached))


def test_new_tolerances_and_t1_reuse_the_compiled_solve(teacher_task, key, monkeypatch):
    traces = []
    original = flow_module.solve
    monkeypatch.setattr(flow_module, "solve", lambda *a, **k: traces.append(1) or original(*a, **k))
    net = DeepLinearNetwork.init(W2, key, "gaussian", scale=0.5)
    gradient_flow(net, teacher_task, T1, saveat=SAVES, rtol=1e-9, atol=1e-9)
    first = len(traces)  # 0 if an earlier test compiled this signature already, else 1
    gradient_flow(net, teacher_task, 3.0, saveat=SAVES, rtol=1e-7, atol=1e-6, gtol=1e-3)
    assert first <= 1 and len(traces) == first  # solve is only called while tracing


# --- gradient descent ------------------------------------------------------------------------


def test_gradient_descent_error_to_the_flow_is_first_order_in_the_step(teacher_run, teacher_task):
    net, _ = teacher_run
    T = 2.0
    W_flow = gradient_flow(net, teacher_task, T, saveat=SAVES, rtol=1e-12, atol=1e-12).final.end_to_end()
    errors = []
    for eta in (0.02, 0.01, 0.005):
        steps = round(T / eta)
        gd = gradient_descent(net, teacher_task, eta, steps, save_every=steps)
        np.testing.assert_allclose(gd.ts, [0.0, T])
        errors.append(float(jnp.linalg.norm(gd.final.end_to_end() - W_flow)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    # Euler's global error is C η + O(η²): halving η halves it, up to the O(η) relative term.
    np.testing.assert_allclose(ratios, 2.0, rtol=0.01)


def test_gradient_descent_matches_a_numpy_loop_and_its_conservation_defect(teacher_run, teacher_task):
    net, _ = teacher_run
    eta, steps = 0.05, 5
    gd = gradient_descent(net, teacher_task, eta, steps)
    W1, W2_ = (np.asarray(w) for w in net.weights)
    S = np.asarray(teacher_task.sigma_yx)
    losses = []
    for _ in range(steps):
        R = S - W2_ @ W1  # whitened: −∂L/∂W, and L = ½‖R‖² for a teacher (tr Σ_yy = ‖Σ_yx‖²)
        losses.append(0.5 * np.sum(R**2))
        G1, G2 = -W2_.T @ R, -R @ W1.T
        C_before = W2_.T @ W2_ - W1 @ W1.T
        W1, W2_ = W1 - eta * G1, W2_ - eta * G2
        # One step changes C_1 by exactly η² (G_2ᵀ G_2 − G_1 G_1ᵀ): the cross terms cancel.
        np.testing.assert_allclose(
            W2_.T @ W2_ - W1 @ W1.T - C_before, eta**2 * (G2.T @ G2 - G1 @ G1.T), atol=1e-13
        )
    np.testing.assert_allclose(gd.losses[:-1], losses, rtol=1e-12)
    np.testing.assert_allclose(gd.final.weights[0], W1, rtol=1e-12)
    np.testing.assert_allclose(gd.final.weights[1], W2_, rtol=1e-12)
    assert float(gd.conservation_drift[-1]) > 0  # descent does not conserve C_1


def test_gradient_descent_uses_the_optimizer_factory(teacher_run, teacher_task):
    net, _ = teacher_run
    half = gradient_descent(
        net, teacher_task, 0.02, 100, optimizer=lambda lr: optax.sgd(lr / 2), save_every=100
    )
    plain = gradient_descent(net, teacher_task, 0.01, 100, save_every=100)
    np.testing.assert_allclose(half.final.weights[0], plain.final.weights[0], rtol=1e-13)


# --- bad input ------------------------------------------------------------------------------


def _bad_flow_calls(task):
    net = DeepLinearNetwork.init(W2, jax.random.key(0), "gaussian")
    nan_net = DeepLinearNetwork((net.weights[0].at[0, 0].set(jnp.nan), net.weights[1]))
    inf_net = DeepLinearNetwork((net.weights[0], net.weights[1].at[0, 0].set(jnp.inf)))
    f32 = DeepLinearNetwork(tuple(w.astype(jnp.float32) for w in net.weights))
    other = DeepLinearNetwork.init((3, 3, 3), jax.random.key(0), "gaussian")
    return [
        (lambda: gradient_flow(net, task, 0.0), "t1 must be finite and > 0"),
        (lambda: gradient_flow(net, task, -1.0), "t1 must be finite and > 0"),
        (lambda: gradient_flow(net, task, float("nan")), "t1 must be finite and > 0"),
        (lambda: gradient_flow(nan_net, task, 1.0), r"net.weights\[0\] contains 1 non-finite"),
        (lambda: gradient_flow(inf_net, task, 1.0), r"net.weights\[1\] contains 1 non-finite"),
        (lambda: gradient_flow(other, task, 1.0), "net maps d_0 = 3 -> d_h = 3 .* task maps d_in = 2"),
        (lambda: gradient_flow(DeepLinearNetwork(()), task, 1.0), "depth 0"),
        (lambda: gradient_descent(net, task, 0.1, 10, save_every=0), "save_every must be a positive integer"),
        (lambda: gradient_flow(f32, task, 1.0), "share one floating dtype"),
        (lambda: gradient_flow(net.weights, task, 1.0), "net must be a DeepLinearNetwork"),
        (lambda: gradient_flow(net, task.sigma_yx, 1.0), "task must be a Task"),
        (lambda: gradient_flow(net, task, 1.0, rtol=0.0), "rtol must be finite and > 0"),
        (lambda: gradient_flow(net, task, 1.0, gtol=-1.0), "gtol must be finite and > 0"),
        (lambda: gradient_flow(net, task, 1.0, max_steps=0), "max_steps must be a positive integer"),
        (lambda: gradient_flow(net, task, 1.0, saveat=1), "saveat must be an integer >= 2"),
        (lambda: gradient_flow(net, task, 1.0, saveat=jnp.array([0.5, 0.2])), "non-decreasing"),
        (lambda: gradient_flow(net, task, 1.0, saveat=jnp.array([0.0, 2.0])), r"lie in \[0, t1 = 1.0\]"),
        (lambda: gradient_flow(net, task, 1.0, saveat=jnp.ones((2, 2))), "saveat must have 1 dimensions"),
        (lambda: gradient_flow(net, task, 1.0, solver="tsit5"), "solver must be a diffrax solver"),
        (lambda: gradient_descent(net, task, 0.0, 10), "learning_rate must be finite and > 0"),
        (lambda: gradient_descent(net, task, 0.1, 0), "steps must be a positive integer"),
        (lambda: gradient_descent(net, task, 0.1, 10, save_every=3), "save_every must divide steps"),
        (lambda: gradient_descent(net, task, 0.1, 10, optimizer=optax.sgd(0.1)), "Optax factory"),
        (lambda: gradient_descent(nan_net, task, 0.1, 10), "non-finite"),
    ]


@pytest.mark.parametrize("case", range(24))
def test_bad_flow_input_raises_a_clear_error(case, spectrum_task):
    calls = _bad_flow_calls(spectrum_task)
    assert len(calls) == 24
    call, match = calls[case]
    with pytest.raises(ValueError, match=match):
        call()


def test_hold_after_stop_fills_unreached_slots_with_the_end_values():
    saved_ts = jnp.array([0.0, 1.0, jnp.inf, jnp.inf])
    saved = (jnp.array([3.0, 2.0, jnp.nan, jnp.nan]), jnp.arange(8.0).reshape(4, 2))
    end = (jnp.array(1.5), jnp.array([-1.0, -2.0]))
    reached, (losses, rows) = flow_module.hold_after_stop(saved_ts, saved, end)
    np.testing.assert_array_equal(reached, [True, True, False, False])
    np.testing.assert_array_equal(losses, [3.0, 2.0, 1.5, 1.5])
    np.testing.assert_array_equal(rows, [[0.0, 1.0], [2.0, 3.0], [-1.0, -2.0], [-1.0, -2.0]])
