"""DeepLinearNetwork: the adjacency picture and what each initializer promises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from jaxflow import DeepLinearNetwork, Task
from jaxflow.linear.network import layer_offsets

EPS = np.finfo(np.float64).eps
widths_strategy = st.lists(st.integers(1, 3), min_size=2, max_size=4).map(tuple)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / max(float(jnp.linalg.norm(b)), 1e-300))


@settings(max_examples=8, deadline=None)
@given(widths=widths_strategy, seed=st.integers(0, 2**16))
def test_adjacency_powers_blocks_and_round_trip(widths, seed):
    net = DeepLinearNetwork.init(widths, jax.random.key(seed), "gaussian", scale=1.0)
    h, off = net.depth, layer_offsets(widths)
    A = net.adjacency()
    assert A.shape == (sum(widths),) * 2
    assert net.num_parameters == sum(a * b for a, b in zip(widths, widths[1:]))
    # A^h holds W = W_h ⋯ W_1 in block (h, 0) and nothing else; A^{h+1} = 0 exactly.
    Ah = jnp.linalg.matrix_power(A, h)
    expected = jnp.zeros_like(A).at[off[h] :, : off[1]].set(net.end_to_end())
    np.testing.assert_allclose(Ah, expected, rtol=1e-13, atol=1e-13)
    assert not np.any(np.asarray(Ah @ A))
    back = DeepLinearNetwork.from_adjacency(A, widths)
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights))


def test_from_adjacency_rejects_entries_off_the_block_pattern(key):
    widths = (2, 3, 2)
    A = DeepLinearNetwork.init(widths, key, "gaussian").adjacency()
    for p, q in ((6, 0), (3, 4), (0, 2)):  # skips a layer, stays inside one, goes backwards
        with pytest.raises(ValueError, match=rf"A\[{p}, {q}\]"):
            DeepLinearNetwork.from_adjacency(A.at[p, q].set(1e-300), widths)
    with pytest.raises(ValueError, match=r"shape \(7, 7\)"):
        DeepLinearNetwork.from_adjacency(A[:6, :6], widths)
    with pytest.raises(ValueError, match="non-finite"):
        DeepLinearNetwork.from_adjacency(A.at[2, 0].set(jnp.nan), widths)


@pytest.mark.parametrize("widths", [(3, 5, 2), (4, 2, 6, 3), (1, 4, 4, 1)])
def test_balanced_init_is_exactly_zero_balanced(widths, key):
    net = DeepLinearNetwork.init(widths, key, "balanced", scale=0.7)
    assert len(net.conserved()) == len(widths) - 2
    for i, C in enumerate(net.conserved()):
        size = float(jnp.sum(net.weights[i] ** 2) + jnp.sum(net.weights[i + 1] ** 2))
        assert float(jnp.linalg.norm(C)) <= 50 * EPS * size  # zero up to rounding of the products


@pytest.mark.parametrize(("widths", "delta"), [((2, 3, 3, 5), 0.3), ((3, 3, 3), 1.0), ((5, 4, 4, 2), -0.4)])
def test_delta_balanced_init_has_C_equal_delta_identity(widths, delta, key):
    net = DeepLinearNetwork.init(widths, key, "delta_balanced", scale=0.5, delta=delta)
    for i, C in enumerate(net.conserved(), start=1):
        np.testing.assert_allclose(C, delta * np.eye(widths[i]), atol=1e-13)


@pytest.mark.parametrize(("widths", "delta"), [((2, 5, 3), 0.3), ((2, 3, 4), -0.3), ((2, 2, 3, 2, 4), 1.0)])
def test_delta_balanced_rejects_widths_that_cannot_hold_delta_identity(widths, delta, key):
    with pytest.raises(ValueError, match="delta_balanced with delta [<>] 0 needs"):
        DeepLinearNetwork.init(widths, key, "delta_balanced", delta=delta)


def test_delta_balanced_needs_delta(key):
    with pytest.raises(ValueError, match="needs delta="):
        DeepLinearNetwork.init((2, 2, 2), key, "delta_balanced")


@pytest.mark.parametrize("widths", [(4, 3, 5, 3), (4, 6, 3)])
def test_aligned_init_is_aligned_with_given_strengths(widths, key):
    task = Task.teacher(jax.random.key(7), widths[0], widths[-1])  # generic U, V
    r = min(widths)
    strengths = jnp.linspace(0.5, 0.1, r)
    net = DeepLinearNetwork.init(widths, key, "aligned", task=task, strengths=strengths)
    U, _, Vt = task.svd()
    np.testing.assert_allclose(net.end_to_end(), U[:, :r] @ jnp.diag(strengths) @ Vt[:r], atol=1e-14)
    for C in net.conserved():
        np.testing.assert_allclose(C, 0, atol=1e-15)


def test_aligned_init_validation(key):
    task = Task.from_spectrum(jnp.array([1.0, 0.5]), 3, 2)
    with pytest.raises(ValueError, match="needs task="):
        DeepLinearNetwork.init((3, 2, 2), key, "aligned")
    with pytest.raises(ValueError, match="task maps 3 -> 2"):
        DeepLinearNetwork.init((4, 2, 2), key, "aligned", task=task)
    with pytest.raises(ValueError, match="strengths must be"):
        DeepLinearNetwork.init((3, 2, 2), key, "aligned", task=task, strengths=jnp.array([1.0, -1.0]))


def test_gaussian_init_variance_is_scale_squared_over_fan_in(key):
    widths, scale = (200, 300, 100), 0.5
    net = DeepLinearNetwork.init(widths, key, "gaussian", scale=scale)
    for w, fan_in in zip(net.weights, widths):
        x = np.asarray(w).ravel() / (scale / np.sqrt(fan_in))  # should be i.i.d. N(0, 1)
        # N >= 2e4 samples: the sample variance has std sqrt(2/N) <= 0.01 and the mean 1/sqrt(N)
        # <= 0.007; 5 standard deviations keeps the test deterministic-in-practice.
        assert abs(x.var() - 1) < 5 * np.sqrt(2 / x.size)
        assert abs(x.mean()) < 5 / np.sqrt(x.size)


@pytest.mark.parametrize("widths", [(3, 5, 2), (4, 4)])
def test_orthogonal_init_is_scaled_semi_orthogonal(widths, key):
    scale = 0.3
    for w in DeepLinearNetwork.init(widths, key, "orthogonal", scale=scale).weights:
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        np.testing.assert_allclose(gram, scale**2 * np.eye(gram.shape[0]), atol=1e-14)


@pytest.mark.parametrize(
    ("widths", "kwargs", "match"),
    [
        ((3,), {}, "widths must be the layer widths d_0, ..., d_h \\(depth h >= 1\\): 2 or more positive"),
        ((), {}, "2 or more positive integers, got \\(\\)"),
        ((3, 0, 2), {}, r"widths\[1\] must be a positive integer"),
        ((3, -2, 2), {}, r"widths\[1\] must be a positive integer"),
        ((3, 2.5, 2), {}, r"widths\[1\] must be a positive integer"),
        ((3, 2), {"scheme": "xavier"}, "scheme must be one of"),
        ((3, 2), {"scale": 0.0}, "scale must be finite and > 0"),
        ((3, 2), {"scale": float("nan")}, "scale must be finite and > 0"),
    ],
)
def test_init_rejects_bad_input(widths, kwargs, match, key):
    with pytest.raises(ValueError, match=match):
        DeepLinearNetwork.init(widths, key, **kwargs)


def test_weights_must_chain(key):
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(2, 4\) but must take 3 inputs"):
        DeepLinearNetwork((jnp.ones((3, 2)), jnp.ones((2, 4))))
