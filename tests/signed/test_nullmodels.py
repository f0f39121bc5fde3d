"""Sign-shuffle null models: what each model keeps, and the statistics against the graph's own value."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.signed import (
    Conv2d,
    Dense,
    Layer,
    Pool,
    SignedGraph,
    Skip,
    null_model_frustration,
    shuffle_signs,
)
from jaxflow.signed.frustration import frustration


@pytest.fixture(scope="module")
def cnn():
    """Convs, a residual sum with skips, a max pool and a dense head: learned and structural blocks."""
    rng = np.random.default_rng(0)
    return SignedGraph.from_layers(
        [
            Layer("x", shape=(2, 4, 4)),
            Layer("h", {"x": Conv2d(rng.normal(size=(4, 2, 3, 3)), (2, 4, 4), padding=1)}),
            Layer(
                "r",
                {
                    "h": Conv2d(rng.normal(size=(4, 4, 3, 3)), (4, 4, 4), padding=1),
                    "x": Conv2d(rng.normal(size=(4, 2, 1, 1)), (2, 4, 4)),
                },
            ),
            Layer("s", {"r": Skip((4, 4, 4)), "h": Skip((4, 4, 4))}),
            Layer("p", {"s": Pool(2, (4, 4, 4), mode="max")}),
            Layer("y", {"p": Dense(rng.normal(size=(3, 16)), in_shape=(4, 2, 2))}),
        ]
    )


def weights(graph):
    return [np.asarray(b.kernel if isinstance(b, Conv2d) else b.weight) for b in graph.blocks if b.learned]


@pytest.mark.parametrize("model", ["block", "kernel", "global", "flip"])
def test_shuffles_keep_magnitudes_in_place_and_the_negative_counts(cnn, model, key):
    null = shuffle_signs(cnn, key, model)
    before, after = weights(cnn), weights(null)
    for w, v in zip(before, after):
        np.testing.assert_array_equal(np.abs(v), np.abs(w))  # magnitudes (hence their multiset) in place
    negatives = [(np.sum(w < 0), np.sum(v < 0)) for w, v in zip(before, after)]
    if model == "block":
        assert all(a == b for a, b in negatives)
    if model == "kernel":  # per output filter: K[o] of a conv, row W[o] of a dense block
        for w, v in zip(before, after):
            np.testing.assert_array_equal(np.sum(w < 0, axis=tuple(range(1, w.ndim))),
                                          np.sum(v < 0, axis=tuple(range(1, v.ndim))))  # fmt: skip
    if model == "global":
        assert sum(a for a, _ in negatives) == sum(b for _, b in negatives)
    assert any(not np.array_equal(w, v) for w, v in zip(before, after)), "the signs moved"
    for b, block in enumerate(cnn.blocks):  # pooling and skips are structure: untouched
        if not block.learned:
            assert eqx.tree_equal(null.blocks[b], block)


def test_block_shuffle_is_uniform_over_sign_arrangements(key):
    """2 negative signs among 6 weights: all 15 arrangements equally likely (chi-square, 14 dof)."""
    g = SignedGraph.from_weights([np.array([[-1.0, 2.0, 3.0], [4.0, -5.0, 6.0]])])
    n = 3000
    signs = jax.vmap(lambda k: shuffle_signs(g, k).blocks[0].weight < 0)(jax.random.split(key, n))
    codes = np.asarray(signs).reshape(n, 6) @ (2 ** np.arange(6))
    assert np.all(np.asarray(signs).reshape(n, 6).sum(axis=1) == 2)
    counts = np.bincount(codes, minlength=64)[[c for c in range(64) if bin(c).count("1") == 2]]
    chi2 = np.sum((counts - n / 15) ** 2 / (n / 15))
    assert chi2 < 36.1  # the 0.999 quantile of chi-square with 14 degrees of freedom


def test_flip_model_matches_the_negative_fraction(key):
    w = np.where(np.arange(4000).reshape(40, 100) % 4 == 0, -1.0, 2.0)  # a quarter negative
    g = SignedGraph.from_weights([w])
    flips = jax.vmap(lambda k: shuffle_signs(g, k, "flip").blocks[0].weight)(jax.random.split(key, 20))
    frac = float(jnp.mean(flips < 0))
    assert abs(frac - 0.25) < 4 * np.sqrt(0.25 * 0.75 / flips.size)  # within 4 binomial std. errors


@pytest.mark.parametrize("model", ["block", "kernel", "global", "flip"])
def test_signs_move_among_edges_only(model, key):
    """A kernel widened with zeros (as an importer folds a channel split into a convolution):
    zeros stay zeros and the shuffles keep the negative count among the edges (`"flip"`: the
    fraction among the edges, not among all entries)."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(64, 96)) * (rng.random((64, 96)) < 0.1)  # 90% structural zeros
    g = SignedGraph.from_weights([w])
    negatives = int(np.sum(w < 0))
    n = 200
    after = np.asarray(
        jax.vmap(lambda k: shuffle_signs(g, k, model).blocks[0].weight)(jax.random.split(key, n))
    )
    assert np.all((after == 0) == (w == 0))
    if model == "flip":
        frac, edges = (after < 0).sum() / (n * np.sum(w != 0)), n * np.sum(w != 0)
        expected = negatives / np.sum(w != 0)
        assert abs(frac - expected) < 4 * np.sqrt(expected * (1 - expected) / edges)  # 4 binomial s.e.
    elif model == "kernel":
        np.testing.assert_array_equal((after < 0).sum(axis=2), np.broadcast_to((w < 0).sum(axis=1), (n, 64)))
    else:
        np.testing.assert_array_equal((after < 0).sum(axis=(1, 2)), negatives)


@pytest.fixture(scope="module")
def balanced():
    """A dense layered graph balanced by a random gauge: frustration 0, its sign shuffles are not."""
    rng = np.random.default_rng(1)
    widths = (3, 4, 4, 3)
    s = [rng.choice([-1.0, 1.0], size=d) for d in widths]
    ws = [
        s[i + 1][:, None] * np.abs(rng.normal(size=(widths[i + 1], widths[i]))) * s[i][None, :]
        for i in range(3)
    ]
    return SignedGraph.from_weights(ws)


def test_balanced_network_beats_every_null_sample(balanced, key):
    nul = null_model_frustration(balanced, key, samples=16, restarts=16)
    assert nul.observed.value == 0.0 and nul.values.shape == (16,) and nul.block_values.shape == (16, 3)
    assert np.all(nul.values > 0)
    np.testing.assert_allclose(nul.values, nul.block_values.sum(axis=1), rtol=1e-14)
    np.testing.assert_allclose(nul.pvalue(), 1 / 17, rtol=1e-15)  # (1 + 0) / (16 + 1)
    v = np.asarray(nul.values)
    np.testing.assert_allclose(nul.zscore(), (0.0 - v.mean()) / v.std(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(nul.pvalue(np.median(v)), (1 + np.sum(v <= np.median(v))) / 17, rtol=1e-15)


def test_null_samples_use_the_same_estimator_and_effort(balanced, key):
    """Sample k is `frustration` of the k-th shuffled graph with the graph's own settings and key.

    Chunking the samples does not change them.
    """
    nul = null_model_frustration(balanced, key, samples=16, restarts=16, chunk_size=4)
    ref = null_model_frustration(balanced, key, samples=16, restarts=16)
    np.testing.assert_allclose(nul.values, ref.values, rtol=1e-14)
    np.testing.assert_allclose(nul.rung_values, ref.rung_values, rtol=1e-14)
    rungs = nul.observed.settings.rungs  # the ladder the graph climbed, repeated on every sample
    assert nul.rung_values.shape == (16, len(rungs)) and np.all(np.diff(nul.rung_values, axis=1) <= 0)
    # the rungs hold the search's ½(Σ|a| − sᵀAs), the values δ summed block by block: ulps apart
    np.testing.assert_allclose(nul.rung_values[:, -1], nul.values, rtol=1e-12)
    _, k_null = jax.random.split(key)
    for k, value, rung_values in list(zip(jax.random.split(k_null, 16), nul.values, nul.rung_values))[:3]:
        k_shuffle, k_search = jax.random.split(k)
        res = frustration(shuffle_signs(balanced, k_shuffle), key=k_search, restarts=16, rungs=rungs)
        np.testing.assert_allclose(value, res.value, rtol=1e-14)
        np.testing.assert_allclose(rung_values, res.rung_values, rtol=1e-14)
    exact = null_model_frustration(balanced, key, samples=3, method="exact")
    for k, value, heuristic in zip(jax.random.split(k_null, 3), exact.values, nul.values):
        res = frustration(shuffle_signs(balanced, jax.random.split(k)[0]), method="exact")
        np.testing.assert_allclose(value, res.value, rtol=1e-14)
        assert value <= heuristic + 1e-12  # the same shuffled graph: the optimum bounds the heuristic


def test_bad_input_gives_clear_errors(balanced, key):
    with pytest.raises(ValueError, match="model must be one of"):
        null_model_frustration(balanced, key, model="rows")
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        null_model_frustration(balanced, key, samples=0)
    with pytest.raises(ValueError, match="model must be one of"):
        shuffle_signs(balanced, key, "swap")
    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
        null_model_frustration(balanced, 0)
