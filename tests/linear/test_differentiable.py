"""`gradient_flow` under `jax.jit`, `jax.vmap` and `jax.grad` (Diffrax adjoints), in float64.

Same shapes as test_flow.py (widths (2, 3, 3), 21 save times) so the forward solve is compiled once.
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow import DeepLinearNetwork, Task, gradient_flow, learning_time, loss
from jaxflow.linear.flow import solve

WIDTHS, SIGMA, SAVES, T1 = (2, 3, 3), jnp.array([2.0, 1.0]), 21, 2.0
TOL = {"rtol": 1e-12, "atol": 1e-12}
S0 = 0.05  # aligned initial strength: mode 1 is learnt (s = σ/2) at t = log(σ/s0 − 1)/(2σ) ≈ 0.92


@pytest.fixture(scope="module")
def task():
    return Task.from_spectrum(SIGMA, 2, 3)


@pytest.fixture(scope="module")
def net(task):
    return DeepLinearNetwork.init(WIDTHS, jax.random.key(0), "aligned", task=task, strengths=S0)


def _task(syx):
    """A whitened task with `tr Σ_yy = ‖Σ_yx‖²`, so `L = ½‖Σ_yx − W‖²` (as `Task.from_spectrum`)."""
    return Task(jnp.eye(syx.shape[1]), syx, jnp.sum(syx**2), whitened=True)


SAVE_TIMES = jnp.linspace(0.7, 1.1, SAVES)  # dense around the plateau exit of mode 1


def _outcomes(weights, syx):
    """`[L(t1), t_learn]`: the loss at t1 and the time mode 1 reaches σ_1/2 (linear interpolation)."""
    traj = gradient_flow(DeepLinearNetwork(weights), _task(syx), T1, saveat=SAVE_TIMES, **TOL)
    t_learn = jnp.interp(syx[0, 0] / 2, traj.singular_values[:, 0], traj.ts)
    return jnp.stack([loss(traj.final, _task(syx)), t_learn])


def _directional_fd(f, x, v, eps=1e-5):
    plus = f(jax.tree.map(lambda a, b: a + eps * b, x, v))
    minus = f(jax.tree.map(lambda a, b: a - eps * b, x, v))
    return (plus - minus) / (2 * eps)


def _directions(x, n, seed):
    keys = jax.random.split(jax.random.key(seed), n)
    leaves, treedef = jax.tree.flatten(x)
    return [
        jax.tree.unflatten(
            treedef,
            [jax.random.normal(k2, a.shape) for k2, a in zip(jax.random.split(k, len(leaves)), leaves)],
        )
        for k in keys
    ]


@pytest.fixture(scope="module")
def jacobians(net, task):
    """Reverse mode through `RecursiveCheckpointAdjoint`, under `jax.jit`."""
    return jax.jit(jax.jacrev(_outcomes, argnums=(0, 1)))(net.weights, task.sigma_yx)


def test_outcomes_match_theory(net, task):
    L, t_learn = _outcomes(net.weights, task.sigma_yx)
    # Aligned 0-balanced, h = 2: s_k(t) logistic, L = ½ Σ_k (σ_k − s_k(t))².
    s = SIGMA / (1 + (SIGMA / S0 - 1) * jnp.exp(-2 * SIGMA * T1))
    np.testing.assert_allclose(L, 0.5 * jnp.sum((SIGMA - s) ** 2), rtol=1e-9)
    # Linear interpolation of s on a 0.02 grid: the crossing time is off by O(dt² s''/s') ≈ 1e-6.
    np.testing.assert_allclose(t_learn, learning_time(S0, 2.0, 2), rtol=1e-5)


def test_gradient_wrt_initial_weights_matches_finite_differences(net, task, jacobians):
    J_w, _ = jacobians
    for v in _directions(net.weights, 3, seed=1):
        fd = _directional_fd(lambda w: _outcomes(w, task.sigma_yx), net.weights, v)
        ad = sum(jnp.tensordot(j, d, axes=d.ndim) for j, d in zip(J_w, v))
        # FD in float64 with eps = 1e-5: truncation ~eps² and solver noise ~tol/eps ≈ 1e-7.
        np.testing.assert_allclose(ad, fd, rtol=1e-6, atol=1e-9)


def test_gradient_wrt_sigma_yx_matches_finite_differences_and_theory(net, task, jacobians):
    _, J_s = jacobians
    for v in _directions(task.sigma_yx, 2, seed=2):
        fd = _directional_fd(lambda s: _outcomes(net.weights, s), task.sigma_yx, v)
        np.testing.assert_allclose(jnp.tensordot(J_s, v, axes=2), fd, rtol=1e-6, atol=1e-9)

    # dL(t1)/dσ_1 with the initial network fixed: moving Σ_yx[0, 0] keeps the modes aligned, so it
    # is the derivative of the closed form ½ Σ_k (σ_k − s_k(t1; σ_k))².
    def closed_form(sigma):
        s = sigma / (1 + (sigma / S0 - 1) * jnp.exp(-2 * sigma * T1))
        return 0.5 * jnp.sum((sigma - s) ** 2)

    np.testing.assert_allclose(J_s[0, 0, 0], jax.grad(closed_form)(SIGMA)[0], rtol=1e-9)


def test_backsolve_adjoint_gradient_of_final_loss(net, task, jacobians):
    @eqx.filter_jit
    def final_loss(weights, syx):
        t = _task(syx)
        sol = solve(
            DeepLinearNetwork(weights),
            t,
            jnp.asarray(T1),
            adjoint=diffrax.BacksolveAdjoint(),
            rtol=jnp.asarray(1e-12),
            atol=jnp.asarray(1e-12),
        )
        return loss(DeepLinearNetwork(tuple(w[-1] for w in sol.ys)), t)

    g_w, g_s = jax.grad(final_loss, argnums=(0, 1))(net.weights, task.sigma_yx)
    J_w, J_s = jacobians  # discretise-then-optimise; backsolve optimises-then-discretises
    for a, b in zip(g_w, J_w):
        np.testing.assert_allclose(a, b[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g_s, J_s[0], rtol=1e-7, atol=1e-9)


def test_jit_gives_the_eager_result(net, task):
    eager = gradient_flow(net, task, T1, saveat=SAVE_TIMES, **TOL)
    jitted = jax.jit(lambda n, t1: gradient_flow(n, task, t1, saveat=SAVE_TIMES, **TOL))(net, T1)
    np.testing.assert_allclose(jitted.losses, eager.losses, rtol=1e-13)
    np.testing.assert_allclose(jitted.final.weights[1], eager.final.weights[1], rtol=1e-13)


def test_vmap_over_initializations_with_per_lane_stopping(task):
    keys = jax.random.split(jax.random.key(4), 3)
    nets = [DeepLinearNetwork.init(WIDTHS, k, "gaussian", scale=s) for k, s in zip(keys, (0.1, 0.5, 1.5))]
    batch = jax.tree.map(lambda *ws: jnp.stack(ws), *nets)
    gtol = 1e-3
    run = jax.vmap(
        lambda n: gradient_flow(n, task, 20.0, saveat=SAVES, stop_at_convergence=True, gtol=gtol, **TOL)
    )
    trajs = run(batch)
    t_stop = np.asarray(trajs.stats.t_final)
    assert len(set(t_stop.tolist())) == 3 and np.all(t_stop < 20.0)
    assert np.all(np.asarray(trajs.stats.grad_norm) < gtol)
    for i, n in enumerate(nets):
        alone = gradient_flow(n, task, 20.0, saveat=SAVES, **TOL)  # same steps up to the stop
        reached = np.asarray(trajs.reached[i])
        np.testing.assert_array_equal(reached, np.asarray(alone.ts) <= t_stop[i])
        np.testing.assert_allclose(trajs.losses[i][reached], alone.losses[reached], rtol=1e-11, atol=1e-14)
