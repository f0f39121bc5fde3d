"""Task: second moments from data, spectra and teachers, and the loss they define."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow import DeepLinearNetwork, Task, loss
from jaxflow.linear.objective import end_to_end_loss
from jaxflow.linear.task import mode_strengths, modes_learnt, task_modes


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 40)) * np.array([[2.0], [0.5], [1.0]])  # anisotropic inputs
    Y = rng.normal(size=(2, 3)) @ X + 0.1 * rng.normal(size=(2, 40))
    return X, Y


def test_from_data_loss_is_mean_squared_error(data, key):
    X, Y = data
    task = Task.from_data(X, Y)
    assert not task.whitened and (task.d_in, task.d_out) == (3, 2)
    for seed in range(3):
        net = DeepLinearNetwork.init((3, 4, 2), jax.random.key(seed), "gaussian", scale=1.0)
        W = np.asarray(net.end_to_end())
        np.testing.assert_allclose(loss(net, task), np.sum((Y - W @ X) ** 2) / (2 * X.shape[1]), rtol=1e-13)


def test_whitening_gives_identity_input_covariance_and_the_whitened_data_loss(data):
    X, Y = data
    task = Task.from_data(X, Y, whiten=True)
    assert task.whitened
    np.testing.assert_array_equal(task.sigma_xx, np.eye(3))
    # The task is that of the whitened inputs Σ_xx^{-1/2} X, computed here independently.
    evals, evecs = np.linalg.eigh(X @ X.T / X.shape[1])
    Xw = evecs @ np.diag(evals**-0.5) @ evecs.T @ X
    np.testing.assert_allclose(Xw @ Xw.T / X.shape[1], np.eye(3), atol=1e-13)
    W = np.random.default_rng(1).normal(size=(2, 3))
    np.testing.assert_allclose(
        end_to_end_loss(jnp.asarray(W), task), np.sum((Y - W @ Xw) ** 2) / (2 * X.shape[1]), rtol=1e-13
    )


def test_from_spectrum_loss_is_half_squared_distance():
    sigma = jnp.array([3.0, 1.0])
    task = Task.from_spectrum(sigma, 4, 3)
    target = np.zeros((3, 4))
    target[[0, 1], [0, 1]] = [3.0, 1.0]
    np.testing.assert_array_equal(task.sigma_yx, target)
    np.testing.assert_allclose(task.singular_values, [3.0, 1.0, 0.0], atol=1e-15)
    W = np.random.default_rng(2).normal(size=(3, 4))
    L = end_to_end_loss(jnp.asarray(W), task)
    np.testing.assert_allclose(L, 0.5 * np.sum((target - W) ** 2), rtol=1e-14)


def test_teacher_task_has_its_rank_and_a_zero_loss_optimum(key):
    task = Task.teacher(key, 5, 4, rank=2, scale=1.5)
    assert task.whitened
    sv = np.asarray(task.singular_values)
    assert np.all(sv[:2] > 1e-3) and np.all(sv[2:] < 1e-13 * sv[0])
    assert abs(float(end_to_end_loss(task.sigma_yx, task))) < 1e-14
    U, s, Vt = task.svd()
    np.testing.assert_allclose(U[:, :4] @ np.diag(s) @ Vt[:4], task.sigma_yx, atol=1e-14)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Task.from_data(np.ones((2, 5)), np.ones((1, 4))), "same number of samples"),
        (lambda: Task.from_data(np.full((2, 5), np.nan), np.ones((1, 5))), "X contains 10 non-finite"),
        (lambda: Task.from_data(np.ones(5), np.ones((1, 5))), "X must have 2 dimensions"),
        (lambda: Task.from_data(np.ones((2, 5)), np.ones((1, 5)), whiten=True), "full-rank"),
        (lambda: Task.from_spectrum([1.0, 2.0, 3.0], 2, 4), "at most 2"),
        (lambda: Task.from_spectrum([1.0, -2.0], 2, 4), ">= 0"),
        (lambda: Task.from_spectrum([1.0], 0, 4), "d_in must be a positive integer"),
        (lambda: Task.from_spectrum([np.inf], 2, 4), "non-finite"),
        (lambda: Task.teacher(jax.random.key(0), 3, 2, rank=3), "rank must be in 1..2"),
    ],
)
def test_bad_task_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_modes_learnt_is_strength_above_half_the_mode_and_never_a_zero_mode(key):
    task = Task.from_spectrum(jnp.array([3.0, 1.0]), 3, 3)  # modes μ = (3, 1, 0)
    mu = task_modes(task).mu
    np.testing.assert_array_equal(modes_learnt(jnp.array([1.6, 0.4, 0.2]), mu), [True, False, False])
    np.testing.assert_array_equal(
        modes_learnt(np.array([1.5, 0.6, -1.0]), np.array([3.0, 1.0, 0.0])), [False, True, False]
    )
    # on the critical point of a subset exactly that subset is learnt; batched over leading axes
    nets = [
        DeepLinearNetwork.init((3, 3, 3), key, "aligned", task=task, strengths=jnp.array(s))
        for s in ([3.0, 0.01, 0.0], [0.01, 1.0, 0.0])
    ]
    strengths = jnp.stack([mode_strengths(n.end_to_end(), task) for n in nets])
    np.testing.assert_array_equal(modes_learnt(strengths, mu), [[True, False, False], [False, True, False]])
