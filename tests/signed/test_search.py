"""The search engine's two drivers: one program per search, or one compiled function per signature.

Both run the same sweep; on graphs where both apply they return the same gauges and values, and the
per-signature driver compiles one function per distinct block signature and layer shape, reused by
every block and layer that shares it (so its compile time does not grow with depth).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_frustration import channel_gauge_cnn

from jaxflow.signed import (
    Conv2d,
    Dense,
    Layer,
    Layerwise,
    SignedGraph,
    Skip,
    _search as engine,
    as_estimator,
    block_frustration,
    estimators,
    frustration as fr,
    null_model_frustration,
)
from jaxflow.signed.frustration import frustration
from jaxflow.signed.nullmodels import _null_blocks


def settings(
    graph, method="layerwise", restarts=None, tol=None, anneal_steps=200, batch_size=None, survivors=None
):
    effort = dict(restarts=restarts, tol=tol, batch_size=batch_size)
    if method == "layerwise":
        return Layerwise(survivors=survivors, **effort).settings(graph)
    if method == "anneal":
        effort["anneal_steps"] = anneal_steps
    return as_estimator(method, survivors=survivors, **effort).settings(graph)


def assert_same_estimate(a, b):
    gauge_a, value_a, total_a, values_a, its_a, ok_a = a
    gauge_b, value_b, total_b, values_b, its_b, ok_b = b
    assert all(np.array_equal(x, y) for x, y in zip(gauge_a, gauge_b)), "the same best gauge"
    np.testing.assert_allclose(value_b, value_a, rtol=1e-12)
    np.testing.assert_allclose(total_b, total_a, rtol=1e-12)
    np.testing.assert_allclose(values_b, values_a, rtol=1e-12)
    assert int(its_a) == int(its_b) and bool(ok_a) == bool(ok_b)


def test_drivers_agree_on_a_cnn():
    """A float64 CNN graph (convs, a residual sum with skips, average pooling, a dense head), default
    effort: 4,096 restarts screened (in float32) to 1,024."""
    g = channel_gauge_cnn(3)
    s = settings(g)
    key = jax.random.key(5)
    assert_same_estimate(fr._estimate(g, key, s, "program"), fr._estimate(g, key, s, "signatures"))


@pytest.mark.parametrize(
    "options",
    [
        {"restarts": 48, "survivors": 8, "batch_size": 16, "tol": 1e-3},  # restart chunks, each screened
        {"method": "anneal", "restarts": 8, "anneal_steps": 12},
        {"method": "greedy", "restarts": 6, "batch_size": 4},  # chunks of the dense baseline, in turn
    ],
)
def test_drivers_agree_on_a_deep_graph(options):
    g = deep_chain(8, 3)
    s = settings(g, **options)
    key = jax.random.key(6)
    assert_same_estimate(fr._estimate(g, key, s, "program"), fr._estimate(g, key, s, "signatures"))


def test_drivers_agree_on_null_samples():
    """Chunks of 2 samples (lanes, the last chunk padded) and one sample at a time, against `lax.map`,
    for the shuffles within each block and across all blocks."""
    g = deep_chain(6, 4)
    s = settings(g, restarts=16)
    keys = jax.random.split(jax.random.key(2), 3)
    for model, chunks in (("block", (2, 1)), ("global", (2,))):
        ref = _null_blocks(g, keys, model, True, s, 2, "program")
        assert ref.shape == (3, len(g.blocks))
        for chunk in chunks:
            np.testing.assert_allclose(
                _null_blocks(g, keys, model, True, s, chunk, "signatures"), ref, rtol=1e-12
            )


def test_sweep_and_screen_agree():
    g = deep_chain(8, 5)
    s0 = tuple(jax.vmap(g.unflatten)(engine.random_signs(jax.random.key(0), 16, g.num_nodes, jnp.float64)))
    a = jax.jit(engine.sweep)(g, s0)
    b = engine.sweep(g, s0, None, engine.SIGNATURES)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
    np.testing.assert_allclose(b[1], a[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b[2], a[2], rtol=1e-12)
    kept = jax.jit(engine.screen, static_argnums=2)(g, s0, 4)
    assert all(np.array_equal(x, y) for x, y in zip(kept, engine.screen(g, s0, 4, engine.SIGNATURES)))


def deep_chain(depth, seed, width=6):
    """`x → h_1 → … → h_depth → y`, dense blocks of three distinct shapes, and an identity skip
    around every other hidden layer: 4 block signatures (Dense 6×5, 6×6, 3×6; Skip 6) and 3 layer
    shapes, at any depth."""
    rng = np.random.default_rng(seed)
    layers = [Layer("x", shape=(5,)), Layer("h1", {"x": Dense(rng.normal(size=(width, 5)))})]
    for i in range(2, depth + 1):
        inputs = {f"h{i - 1}": Dense(rng.normal(size=(width, width)))}
        if i % 2 == 0 and i > 2:
            inputs[f"h{i - 2}"] = Skip((width,))
        layers.append(Layer(f"h{i}", inputs))
    layers.append(Layer("y", {f"h{depth}": Dense(rng.normal(size=(3, width)))}))
    return SignedGraph.from_layers(layers)


def test_compiled_functions_are_reused_across_equal_signatures(monkeypatch):
    """Block products are traced (hence compiled) once per block signature and direction, layer
    updates once per layer shape, whatever the depth; a deeper graph of the same signatures compiles
    nothing new. The energy's block products reuse the sweep's (8 restarts, `ENERGY_BATCH`)."""
    traces = {"product": set(), "layer": set()}
    product, layer = engine._product, engine._descent_layer

    def counting_product(block, x, acc, *, transpose):
        traces["product"].add((type(block).__name__, block.in_shape, block.out_shape, transpose, x.shape))
        counting_product.calls += 1
        return product(block, x, acc, transpose=transpose)

    def counting_layer(s, *args):
        traces["layer"].add(s.shape)
        counting_layer.calls += 1
        return layer(s, *args)

    counting_product.calls = counting_layer.calls = 0
    monkeypatch.setattr(engine, "_product", counting_product)
    monkeypatch.setattr(engine, "_descent_layer", counting_layer)
    g = deep_chain(40, 0)
    assert len(g.blocks) == 60 and len(engine.block_signatures(g)) == 4 and len(set(g.shapes)) == 3
    assert engine.choose_driver(g) == "signatures"  # deep: the per-signature driver is the default
    s = settings(g, restarts=8)
    assert s.survivors == 8 and engine.ENERGY_BATCH == 8  # no screen; energies share the batch size
    fr._estimate(g, jax.random.key(0), s)
    assert counting_product.calls == 2 * 4  # every trace is a compilation: 4 signatures, 2 directions
    assert counting_layer.calls == 3  # 3 layer shapes
    assert len(traces["product"]) == 8 and len(traces["layer"]) == 3
    deeper = deep_chain(64, 1)
    assert len(deeper.blocks) == 96 and engine.block_signatures(deeper) == engine.block_signatures(g)
    res = frustration(deeper, method="layerwise", restarts=8, key=jax.random.key(1))
    assert counting_product.calls == 8 and counting_layer.calls == 3, "nothing new to compile"
    assert res.value == sum(block_frustration(deeper, res.gauge))  # block by block, the same functions


def test_null_samples_reuse_the_estimates_functions(monkeypatch):
    """One null sample at a time (the default chunk of big graphs): a shuffled graph has its
    graph's signatures, so the null search compiles no block product of its own."""
    g = deep_chain(34, 2)
    assert len(g.blocks) >= engine.SIGNATURE_MIN_BLOCKS
    calls = []
    product = engine._product

    def counting_product(block, x, acc, *, transpose):
        calls.append(1)
        return product(block, x, acc, transpose=transpose)

    monkeypatch.setattr(engine, "_product", counting_product)
    nul = null_model_frustration(g, jax.random.key(0), Layerwise(restarts=8), samples=3, chunk_size=1)
    assert len(calls) == 2 * len(engine.block_signatures(g))
    assert nul.values.shape == (3,) and np.all(nul.values > 0)


def test_driver_choice():
    small = channel_gauge_cnn(0)
    assert engine.choose_driver(small) == "program"
    assert engine.choose_driver(deep_chain(engine.SIGNATURE_MIN_BLOCKS, 0)) == "signatures"
    assert engine.choose_driver(deep_chain(20, 0)) == "program"  # 30 blocks
    with pytest.raises(ValueError, match="driver must be one of"):
        fr._estimate(small, jax.random.key(0), settings(small), "python")


def test_default_tol_follows_the_size_rule():
    """`tol = 0` (sweep to a fixed point) up to `LARGE_GRAPH_EDGES` edges, `LARGE_GRAPH_TOL` above;
    an explicit `tol` wins."""
    small = channel_gauge_cnn(1)
    assert estimators.default_tol(small) == 0.0
    res = frustration(small, key=jax.random.key(0), restarts=8, method="layerwise")
    assert res.settings.tol == 0.0 and res.converged
    assert settings(small, tol=1e-3).tol == 1e-3
    k = np.ones((64, 64, 3, 3))  # a 64×64×64 conv layer: 64·64·9·62² + borders ≈ 1.5e8 edges
    big = SignedGraph.from_layers(
        [Layer("x", shape=(64, 64, 64)), Layer("y", {"x": Conv2d(k, (64, 64, 64), padding=1)})]
    )
    assert big.num_edges() > estimators.LARGE_GRAPH_EDGES >= small.num_edges()
    assert estimators.default_tol(big) == estimators.LARGE_GRAPH_TOL == 1e-5
    assert settings(big).tol == 1e-5 and settings(big, tol=0.0).tol == 0.0


def test_anneal_uniforms_cover_their_grid_evenly():
    """The heat bath's uniforms: on the grid `(k + ½)/2^23` (exact in float32), so that `P(u < p)`
    is within `2^-23` of `p`, and evenly spread. 2^20 draws: every count of a 2^8-point coarsening is
    binomial with mean 4096, s.d. 64; the bound 6 s.d. fails with probability < 1e-6 over them."""
    n = 2**19
    u = np.asarray(engine._uniforms(jnp.uint32(3), jnp.zeros((2, n)), 0)).ravel()
    assert u.dtype == np.float32 and u.size == 2 * n
    k = u.astype(np.float64) * 2**engine.UNIFORM_BITS - 0.5
    np.testing.assert_array_equal(k, np.round(k))
    assert k.min() >= 0 and k.max() < 2**engine.UNIFORM_BITS
    counts = np.bincount((k // 2 ** (engine.UNIFORM_BITS - 8)).astype(int), minlength=2**8)
    assert counts.size == 2**8 and np.all(np.abs(counts - 2**12) < 6 * 64)
    for p in (1e-3, 0.3, 0.5, 0.999):
        assert abs(np.mean(u < p) - p) < 6 * np.sqrt(p * (1 - p) / u.size) + 2**-engine.UNIFORM_BITS


@pytest.mark.parametrize("pair", ["neighbour nodes", "neighbour restarts", "neighbour seeds"])
def test_anneal_uniforms_are_pairwise_independent(pair):
    """Counter-based draws: the uniforms of neighbouring nodes, restarts, and seeds one apart (the
    counters and seeds most alike) are independent. 2^18 pairs in a 16×16 grid: each count is
    binomial with mean 1024, s.d. < 32; the bound 6 s.d. fails with probability < 1e-6 over them."""
    draw = lambda seed: np.asarray(engine._uniforms(jnp.uint32(seed), jnp.zeros((512, 1024)), 0))
    u = draw(7)
    x, y = {
        "neighbour nodes": (u[:, 0::2], u[:, 1::2]),
        "neighbour restarts": (u[0::2], u[1::2]),
        "neighbour seeds": (u[:, :512], draw(8)[:, :512]),
    }[pair]
    counts = np.histogram2d(x.ravel(), y.ravel(), bins=16, range=[[0, 1], [0, 1]])[0]
    assert x.size == 2**18 and np.all(np.abs(counts - 2**10) < 6 * 32)


def test_anneal_uniforms_depend_on_node_numbers_not_layers():
    """A layer's draws are those of its nodes' numbers: layers of shapes `(3, 4)` and `(5,)` from
    node 12 draw exactly what one flat layer of 17 nodes draws (same seed, same restarts)."""
    seed = jnp.uint32(11)
    whole = np.asarray(engine._uniforms(seed, jnp.zeros((4, 17)), 0))
    first = np.asarray(engine._uniforms(seed, jnp.zeros((4, 3, 4)), 0))
    second = np.asarray(engine._uniforms(seed, jnp.zeros((4, 5)), 12))
    np.testing.assert_array_equal(np.concatenate([first.reshape(4, 12), second], axis=1), whole)
    assert len(np.unique(whole)) == whole.size  # (2^23 grid points: 68 draws collide w.p. ~3e-4)


def test_a_dense_block_energy_copies_none_of_its_weights():
    """`δ_b` of a dense block is summed elementwise from its weights, not by products with the
    positive and negative parts of its matrix (two more copies of it; VGG-16's first dense layer is
    0.4 GB): it equals `½(Σ|a| − sᵀAs)`, and the compiled energies' scratch stays far below the
    weights."""
    rng = np.random.default_rng(0)
    W = rng.standard_normal((512, 2048)).astype(np.float32)
    g = SignedGraph.from_weights([W])
    gauge = tuple(jnp.asarray(rng.choice([-1.0, 1.0], s), jnp.float32) for s in g.shapes)
    (got,) = engine.block_energies(g, gauge)
    s_in, s_out = (np.asarray(x, np.float64) for x in gauge)
    want = 0.5 * (np.abs(W).sum(dtype=np.float64) - s_out @ W.astype(np.float64) @ s_in)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    plus = (jnp.ones(2048, jnp.float32), jnp.ones(512, jnp.float32))
    assert float(engine.block_energies(SignedGraph.from_weights([np.abs(W)]), plus)[0]) == 0.0  # exactly
    compiled = jax.jit(lambda g, s: sum(engine.block_energies(g, s))).lower(g, gauge).compile()
    assert compiled.memory_analysis().temp_size_in_bytes < W.nbytes / 4
