"""`"layerwise"` internals: the sweep's energy and gain, the screen, the random starting gauges."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_frustration import channel_gauge_cnn, random_weights

from jaxflow.signed import SignedGraph
from jaxflow.signed._search import (
    SCREEN_SWEEPS,
    random_signs as _random_signs,
    screen as _screen,
    sweep as _sweep,
)
from jaxflow.signed.frustration import frustration


def dense_energy(A, s):
    """`δ = ½(Σ|a| − sᵀAs)` per row of `s`, from the dense matrix."""
    return 0.5 * (np.abs(A).sum() - np.einsum("kp,pq,kq->k", s, A, s))


def flat(graph, s):
    return np.concatenate([np.asarray(x).reshape(len(x), -1) for x in s], axis=1)


def test_sweep_returns_the_energy_of_its_gauges_and_the_gain():
    """On a CNN graph with skips and pooling: the energy summed from the incoming fields during the
    sweep is `δ` of the gauges it returns, and the gain is exactly the drop in `δ`."""
    g = channel_gauge_cnn(3)
    A = np.asarray(g.to_dense())
    s0 = jax.vmap(g.unflatten)(_random_signs(jax.random.key(0), 16, g.num_nodes, jnp.float64))
    s1, gain, energy = jax.jit(_sweep)(g, tuple(s0))
    before, after = dense_energy(A, flat(g, s0)), dense_energy(A, flat(g, s1))
    scale = np.abs(A).sum()  # rounding of sums over ~1,000 edges, relative to Σ|a|
    np.testing.assert_allclose(energy, after, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(gain, before - after, rtol=0, atol=1e-13 * scale)
    assert np.all(gain > 0)  # a random gauge is never a fixed point of this graph
    # a second sweep from a fixed point changes nothing and gains exactly 0
    fixed = frustration(g, method="layerwise", restarts=4, survivors=4, key=jax.random.key(1)).gauge
    s2, gain, energy = jax.jit(_sweep)(g, tuple(x[None] for x in fixed))
    assert float(gain[0]) == 0.0 and all(np.array_equal(a[0], b) for a, b in zip(s2, fixed))


def test_screen_keeps_the_restarts_lowest_after_its_sweeps():
    """Integer weights make float32 and float64 energies exact, so the screen's ranking is checkable."""
    rng = np.random.default_rng(4)
    widths = (6, 9, 8, 7)
    g = SignedGraph.from_weights(
        [rng.integers(-3, 4, size=(b, a)).astype(float) for a, b in zip(widths, widths[1:])]
    )
    A = np.asarray(g.to_dense())
    s = tuple(jax.vmap(g.unflatten)(_random_signs(jax.random.key(2), 64, g.num_nodes, jnp.float64)))
    kept = jax.jit(_screen, static_argnums=2)(g, s, 8)
    assert kept[0].dtype == jnp.float64 and kept[0].shape == (8, widths[0])
    swept = s
    for _ in range(SCREEN_SWEEPS):
        swept = jax.jit(_sweep)(g, swept)[0]
    lowest = np.sort(dense_energy(A, flat(g, swept)))[:8]
    np.testing.assert_array_equal(np.sort(dense_energy(A, flat(g, kept))), lowest)


def test_survivors_option():
    g = SignedGraph.from_weights(random_weights(5, (5, 7, 7, 5)))
    key = jax.random.key(3)
    screened = frustration(g, method="layerwise", restarts=64, survivors=8, key=key)
    assert screened.restart_values.shape == (8,) and screened.iterations >= SCREEN_SWEEPS + 1
    # the sweep's running energy and the value recomputed per block differ only by rounding
    np.testing.assert_allclose(screened.value, jnp.min(screened.restart_values), rtol=1e-13)
    # survivors >= restarts: no screen, the same search as without one
    full = frustration(g, method="layerwise", restarts=16, survivors=16, key=key)
    assert full.restart_values.shape == (16,)
    same = frustration(g, method="layerwise", restarts=16, survivors=100, key=key)
    np.testing.assert_array_equal(same.restart_values, full.restart_values)
    with pytest.raises(ValueError, match='survivors applies to method="layerwise" only'):
        frustration(g, method="anneal", survivors=4)
    with pytest.raises(ValueError, match="survivors must be a positive integer"):
        frustration(g, method="layerwise", survivors=0)


def test_random_signs_are_fair_coins():
    x = np.asarray(_random_signs(jax.random.key(0), 256, 100, jnp.float64))
    assert x.shape == (256, 100) and set(np.unique(x)) == {-1.0, 1.0}
    # every node (bit position) is a fair coin: |mean| within 4 standard errors (1/√256 each)
    assert np.all(np.abs(x.mean(0)) < 4 / np.sqrt(256))
    # nodes 32 apart come from different words: they agree about half the time, not always
    assert abs(np.mean(x[:, :68] == x[:, 32:]) - 0.5) < 4 * 0.5 / np.sqrt(256 * 68)
