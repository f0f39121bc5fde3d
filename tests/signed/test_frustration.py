"""Frustration: exact optima by brute force, heuristics as upper bounds, balanced graphs, gauge invariance."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_bounds import sparse_layered  # in-degree layered graphs, shared with the bound tests

from jaxflow.signed import (
    Conv2d,
    Dense,
    Layer,
    Pool,
    SignedGraph,
    Skip,
    block_frustration,
    gauge_frustration,
)
from jaxflow.signed.estimators import (
    LADDER_PATIENCE,
    LADDER_TOL,
    LARGE_GRAPH_EDGES,
    LOCAL_ANNEAL_STEPS,
    RESTARTS,
    Anneal,
    Ladder,
    Layerwise,
    as_estimator,
    default_anneal_steps,
    default_restarts,
    from_toml,
    ladder_batch,
    ladder_jobs,
    structure,
)
from jaxflow.signed.frustration import frustration

WIDTHS = (3, 4, 4, 3)  # 14 nodes, 40 edges: brute force over 2^13 gauges
INSTANCES = 100
HEURISTICS = ("layerwise", "anneal", "greedy")


def random_weights(seed, widths=WIDTHS):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(widths[i + 1], widths[i])) for i in range(len(widths) - 1)]


def brute_force(A, weighted=True):
    """`min_s ½(Σ|a| − sᵀAs)` over all gauges with `s_0 = +1`, from the dense matrix."""
    A = A if weighted else np.sign(A)
    n = A.shape[0]
    S = np.array(list(itertools.product([1.0, -1.0], repeat=n - 1)))
    S = np.concatenate([np.ones((len(S), 1)), S], axis=1)
    return np.min(0.5 * (np.abs(A).sum() - np.einsum("kp,pq,kq->k", S, A, S)))


@pytest.fixture(scope="module")
def instances():
    graphs = [SignedGraph.from_weights(random_weights(seed)) for seed in range(INSTANCES)]
    optima = np.array([brute_force(np.asarray(g.to_dense())) for g in graphs])
    return graphs, optima


def test_exact_equals_brute_force(instances):
    graphs, optima = instances
    for g, opt in zip(graphs[:20], optima[:20]):
        res = frustration(g, method="exact")
        assert res.optimal and res.converged
        np.testing.assert_allclose(res.value, opt, rtol=1e-12)
        np.testing.assert_allclose(res.lower_bound, opt, rtol=1e-6)  # HiGHS' dual bound, 1e-6 feasibility
    g = graphs[0]
    res = frustration(g, method="exact", weighted=False)
    assert res.value == brute_force(np.asarray(g.to_dense()), weighted=False)
    assert res.total == g.num_edges() and res.normalized == res.value / g.num_edges()


@pytest.mark.parametrize("method", HEURISTICS)
def test_heuristics_are_upper_bounds_and_usually_optimal(instances, method):
    graphs, optima = instances
    values, bounds = [], []
    for seed, g in enumerate(graphs):
        res = frustration(g, method=method, key=jax.random.key(seed))
        # the returned value is the energy of the returned gauge, recomputed from scratch
        assert res.value == gauge_frustration(g, res.gauge) == gauge_frustration(g, res.flat_gauge)
        assert res.is_upper_bound and res.converged
        bounds.append(float(res.lower_bound))
        values.append(float(res.value))
    values, bounds = np.array(values), np.array(bounds)
    assert np.all(values >= optima - 1e-12)
    assert np.all(bounds <= optima) and np.all(bounds > 0)  # proven: never above the optimum
    hits = np.isclose(values, optima, rtol=1e-12, atol=0)
    print(f"\n{method}: optimum on {hits.sum()}/{INSTANCES} instances")
    if method == "layerwise":
        assert hits.mean() >= 0.95


def test_energy_matches_dense_formula(instances):
    g = instances[0][1]
    A = np.asarray(g.to_dense())
    rng = np.random.default_rng(6)
    for _ in range(5):
        s = rng.choice([-1.0, 1.0], size=g.num_nodes)
        frustrated = (s[:, None] * A * s[None, :]) < 0
        np.testing.assert_allclose(
            gauge_frustration(g, jnp.asarray(s)), np.abs(A)[frustrated].sum(), rtol=1e-13
        )
        assert float(gauge_frustration(g, jnp.asarray(s), weighted=False)) == frustrated.sum()
        parts = block_frustration(g, g.unflatten(jnp.asarray(s)))
        assert len(parts) == len(g.blocks)
        np.testing.assert_allclose(sum(parts), 0.5 * (np.abs(A).sum() - s @ A @ s), rtol=1e-12)


def channel_gauge_cnn(seed, signs=None):
    """A small CNN (conv, residual conv + skip, average pool, dense) with weights `σ_p σ_q |a|`.

    `signs = (σ_in, σ_channels, σ_out)` gives one sign per input channel, per channel of the hidden
    layers and per output node; `None` keeps random signs. Pooling and skips join equal channels,
    so their positive edges stay balanced.
    """
    rng = np.random.default_rng(seed)
    mags = [np.abs(rng.normal(size=s)) for s in [(3, 1, 3, 3), (3, 3, 3, 3), (4, 27)]]
    if signs is None:
        k1, k2, w = (m * rng.choice([-1, 1], size=m.shape) for m in mags)
    else:
        s_in, s_ch, s_out = signs
        k1 = mags[0] * s_ch[:, None, None, None] * s_in[None, :, None, None]
        k2 = mags[1] * s_ch[:, None, None, None] * s_ch[None, :, None, None]
        w = mags[2] * s_out[:, None] * np.repeat(s_ch, 9)[None, :]
    return SignedGraph.from_layers(
        [
            Layer("x", shape=(1, 6, 6)),
            Layer("h", {"x": Conv2d(k1, (1, 6, 6), padding=1)}),
            Layer("r", {"h": Conv2d(k2, (3, 6, 6), padding=1), "x": Conv2d(k1, (1, 6, 6), padding=1)}),
            Layer("s", {"r": Skip((3, 6, 6)), "h": Skip((3, 6, 6))}),
            Layer("p", {"s": Pool(2, (3, 6, 6), stride=2, mode="avg")}),
            Layer("y", {"p": Dense(w, in_shape=(3, 3, 3))}),
        ]
    )


@pytest.fixture(scope="module")
def balanced_cnn():
    rng = np.random.default_rng(7)
    signs = [rng.choice([-1.0, 1.0], size=d) for d in (1, 3, 4)]
    return channel_gauge_cnn(8, signs)


@pytest.mark.parametrize("method", (*HEURISTICS, "exact"))
def test_balanced_graphs_have_zero_frustration(balanced_cnn, method):
    rng = np.random.default_rng(9)
    s = [rng.choice([-1.0, 1.0], size=d) for d in WIDTHS]
    balanced_dense = SignedGraph.from_weights(
        [s[i + 1][:, None] * np.abs(w) * s[i][None, :] for i, w in enumerate(random_weights(9))]
    )
    for g in (balanced_dense, balanced_cnn):
        res = frustration(g, method=method, key=jax.random.key(1))
        assert res.value == 0.0 and res.normalized == 0.0
        A = np.asarray(g.to_dense())
        s = np.asarray(res.flat_gauge)
        assert np.all(s[:, None] * A * s[None, :] >= 0), "the gauge found balances every edge"


def test_gauge_invariance(instances):
    """Flipping the signs of a node's edges (A → DAD) is a change of gauge: the frustration is unchanged."""
    g, opt = instances[0][3], instances[1][3]
    ws = [np.asarray(b.weight).copy() for b in g.blocks]
    ws[0][:, 1] *= -1  # flip input node 1 (its out-edges) ...
    ws[0][2, :] *= -1  # ... and node 2 of layer 1 (its in- and out-edges)
    ws[1][:, 2] *= -1
    flipped = SignedGraph.from_weights(ws)
    assert not np.array_equal(flipped.to_dense(), g.to_dense())
    np.testing.assert_allclose(frustration(flipped, method="exact").value, opt, rtol=1e-12)
    # energy level: δ_{DAD}(D s) = δ_A(s) for every gauge, here with channel flips of a conv graph
    rng = np.random.default_rng(10)
    signs = [rng.choice([-1.0, 1.0], size=d) for d in (1, 3, 4)]
    base, gauged = channel_gauge_cnn(11, [np.ones(d) for d in (1, 3, 4)]), channel_gauge_cnn(11, signs)
    per_node = [signs[0], signs[1], signs[1], signs[1], signs[1], signs[2]]  # x, h, r, s, p, y
    D = np.concatenate([np.repeat(d, size // len(d)) for d, size in zip(per_node, base.sizes)])
    # base is all-positive; the gauged graph has the channel signs: A' = D A D
    np.testing.assert_array_equal(gauged.to_dense(), D[:, None] * base.to_dense() * D[None, :])
    for _ in range(3):
        s = rng.choice([-1.0, 1.0], size=base.num_nodes)
        np.testing.assert_allclose(
            gauge_frustration(gauged, jnp.asarray(D * s)), gauge_frustration(base, jnp.asarray(s)), rtol=1e-13
        )


def test_exact_beyond_brute_force_bounds_every_heuristic():
    g = SignedGraph.from_weights(random_weights(12, (5, 7, 7, 5)))  # 24 nodes: past brute force
    exact = frustration(g, method="exact")
    assert exact.optimal
    for method in HEURISTICS:
        res = frustration(g, method=method, key=jax.random.key(0))
        assert res.value >= exact.value - 1e-12
        if method == "layerwise":
            np.testing.assert_allclose(res.value, exact.value, rtol=1e-12)


def test_float32_and_unweighted():
    g = SignedGraph.from_weights(random_weights(13))
    res = frustration(g, dtype=jnp.float32)
    assert res.value.dtype == jnp.float32 and res.gauge[0].dtype == jnp.float32
    assert res.value == gauge_frustration(g.astype(jnp.float32), res.gauge)
    res = frustration(g, weighted=False)
    assert res.total == g.num_edges() and res.value == gauge_frustration(g, res.gauge, weighted=False)
    assert res.value == brute_force(np.asarray(g.to_dense()), weighted=False)


def test_bad_input_gives_clear_errors():
    g = SignedGraph.from_weights(random_weights(0))
    with pytest.raises(ValueError, match="method must be one of"):
        frustration(g, method="tabu")
    with pytest.raises(ValueError, match="restarts must be a positive integer"):
        frustration(g, restarts=0)
    with pytest.raises(ValueError, match="max_edges=10 edges, this one has 40"):
        frustration(g, method="exact", max_edges=10)
    with pytest.raises(ValueError, match="temperatures must satisfy start >= end > 0"):
        frustration(g, method="anneal", anneal_temperatures=(0.1, 1.0))
    with pytest.raises(ValueError, match="temperatures must satisfy start >= end > 0"):
        Anneal(temperatures=(0.1, 1.0))  # checked when the estimator is made
    with pytest.raises(ValueError, match='survivors applies to method="layerwise" only'):
        frustration(g, method="anneal", survivors=4)
    with pytest.raises(ValueError, match="sample is not an effort keyword"):
        frustration(g, sample=4)
    with pytest.raises(ValueError, match="not both"):
        frustration(g, Ladder(), restarts=4)
    with pytest.raises(ValueError, match="estimator must be an Estimator"):
        frustration(g, 3)
    with pytest.raises(ValueError, match="gauge must be a ±1 vector over all 14 nodes"):
        gauge_frustration(g, jnp.ones(13))
    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
        frustration(g, key=jax.random.split(jax.random.key(0)))
    with pytest.raises(ValueError, match="graph must be a SignedGraph"):
        frustration(np.eye(3))
    with pytest.raises(ValueError, match="up to 8192"):
        frustration(SignedGraph.from_weights([np.ones((4100, 4100))]), method="greedy")
    assert Dense(np.ones((2, 2))).num_edges() == 4


def test_structure_sets_the_defaults_of_anneal_by_name():
    rng = np.random.default_rng(0)
    assert structure(sparse_layered(rng, (40, 40, 40), 3)) == "sparse"
    assert structure(SignedGraph.from_weights(random_weights(0))) == "dense"  # however small
    assert structure(sparse_layered(rng, (40, 40, 40), 12)) == "local"  # in-degree above SPARSE_MAX_IN_DEGREE
    conv = conv_chain(rng)  # 676 edges over 2,500 node pairs, 9 in-edges per node
    assert structure(conv) == "local" and default_anneal_steps(conv) == LOCAL_ANNEAL_STEPS
    assert default_restarts(conv, "anneal") == RESTARTS  # 2^16 // 125 nodes, capped
    wide = Conv2d(np.ones((64, 64, 3, 3)), (64, 32, 32), padding=1)  # 3.7e7 edges
    big = SignedGraph.from_layers([Layer("x", shape=(64, 32, 32)), Layer("y", {"x": wide})])
    assert structure(big) == "large" and big.num_edges() > LARGE_GRAPH_EDGES
    assert default_restarts(big, "layerwise") == 8


def conv_chain(rng) -> SignedGraph:
    """(2, 5, 5) → (1, 5, 5) → (2, 5, 5), 3×3 convolutions (padding 1), Gaussian kernels: 125 nodes,
    a vertex cover of 25 (the middle layer), so `"exact"` enumerates it in a second."""
    a = Conv2d(rng.normal(size=(1, 2, 3, 3)), (2, 5, 5), padding=1)
    b = Conv2d(rng.normal(size=(2, 1, 3, 3)), (1, 5, 5), padding=1)
    return SignedGraph.from_layers([Layer("x", shape=(2, 5, 5)), Layer("a", {"x": a}), Layer("b", {"a": b})])


def check_ladder(res, graph):
    """The evidence of a `"ladder"` result obeys its rule: the best value after each rung never
    rises and ends at the value; after the descent and the first annealing rung each rung doubles
    the sweeps or the restarts of the last; the ladder stopped at its first `LADDER_PATIENCE` idle
    rungs in a row (or with both at their caps), and never before."""
    bests, rungs = np.asarray(res.rung_values), res.settings.rungs
    assert res.method == "ladder" and len(bests) == len(rungs) >= 3
    assert np.all(np.diff(bests) <= 0)
    # the value is recomputed block by block; the rungs hold the search's ½(Σ|a| − sᵀAs)
    assert bests[-1] == pytest.approx(float(res.value), rel=1e-12)
    assert rungs[0][1] == 0 and all(t > 0 for _, t in rungs[1:])
    for (r0, t0), (r1, t1) in zip(rungs[1:], rungs[2:]):
        assert (r1, t1) in ((min(2 * r0, RESTARTS), t0), (r0, 2 * t0))
    idle = [b0 - b1 <= LADDER_TOL * b1 for b0, b1 in zip(bests[1:], bests[2:])]
    runs = [all(idle[i : i + LADDER_PATIENCE]) for i in range(len(idle) - LADDER_PATIENCE + 1)]
    assert runs[-1] or rungs[-1] == (RESTARTS, 8192)
    assert not any(runs[:-1])


def test_convolutions_reach_the_optimum_by_default():
    """On 3×3 conv chains the default ladder ends at the proven optimum, where block-coordinate
    descent ends up to 8% above it (measured on these two: 0% and 6–8.5%)."""
    rng = np.random.default_rng(0)
    stalls = []
    for seed in range(2):  # one shape: each program compiles once
        graph = conv_chain(rng)
        optimum = frustration(graph, method="exact")
        assert optimum.optimal
        auto = frustration(graph, key=jax.random.key(seed), bound=False)
        check_ladder(auto, graph)
        # float64 sums of 676 weights in different orders: a few ulps of Σ|a|
        assert auto.value == pytest.approx(float(optimum.value), rel=1e-12)
        descent = frustration(graph, method="layerwise", key=jax.random.key(seed), bound=False)
        stalls.append(float(descent.value / optimum.value) - 1)
    assert max(stalls) > 0.01  # the descent alone misses the 1% on these


def test_sparse_graphs_reach_one_percent_of_the_optimum_by_default():
    """In-degree 3, 150 nodes: the default ladder ends within 1% of the proven optimum on every
    instance, where block-coordinate descent stalls far above it (measured: 11–48% on such graphs
    of 300–5,000 edges)."""
    rng = np.random.default_rng(7)
    stalls = []
    for seed in range(2):  # one shape: the programs compile once
        graph = sparse_layered(rng, (30,) * 5, 3)
        optimum = frustration(graph, method="exact")
        assert optimum.optimal
        auto = frustration(graph, key=jax.random.key(seed), bound=False)
        check_ladder(auto, graph)
        assert optimum.value - 1e-9 <= auto.value <= 1.01 * optimum.value
        descent = frustration(graph, method="layerwise", key=jax.random.key(seed), bound=False)
        stalls.append(float(descent.value / optimum.value) - 1)
    assert max(stalls) > 0.01  # the descent alone misses the 1% on this family


def test_a_ladder_repeats_from_its_rungs_and_reuses_its_batches():
    """`rungs=` climbs exactly the given rungs: the result's own rungs give back its value bitwise,
    and a rung that doubles the restarts of the last only adds batches: its best is the lower of
    the last rung's and the new batches' alone."""
    rng = np.random.default_rng(3)
    graph = sparse_layered(rng, (120,) * 4, 3)  # 480 nodes: batches of 2^16 // 480 = 136 → 64
    key = jax.random.key(5)
    res = frustration(graph, key=key, bound=False)
    again = frustration(graph, key=key, rungs=res.settings.rungs, bound=False)
    assert again.value == res.value and np.array_equal(again.rung_values, res.rung_values)
    effort = dict(key=key, restarts=16, batch_size=8, bound=False)
    small = frustration(graph, rungs=((16, 0), (8, 64), (16, 64)), **effort)
    batch = ladder_batch(graph, small.settings)
    jobs, ends = ladder_jobs(small.settings.rungs, batch)
    assert batch == 8 and jobs == [(0, 16), (64, 0), (64, 1)] and ends == [1, 2, 3]
    alone = frustration(graph, rungs=((16, 0), (8, 64)), **effort)
    np.testing.assert_array_equal(small.rung_values[:2], alone.rung_values)
    np.testing.assert_array_equal(small.restart_values[:2], alone.restart_values)
    assert small.rung_values[2] == min(alone.rung_values[1], small.restart_values[2])


def test_estimators_are_the_shortcuts_and_their_toml():
    """An estimator object and its shortcut (`method=` with effort keywords) search alike, bitwise;
    an estimator's TOML form gives it back."""
    rng = np.random.default_rng(5)
    g = conv_chain(rng)
    key = jax.random.key(2)
    pairs = [
        (Anneal(restarts=8, sweeps=50), dict(method="anneal", restarts=8, anneal_steps=50)),
        (Layerwise(restarts=32, survivors=8), dict(method="layerwise", restarts=32, survivors=8)),
        (Ladder(max_restarts=16, max_sweeps=64), dict(restarts=16, anneal_steps=64)),
    ]
    for est, shortcut in pairs:
        assert as_estimator(**shortcut) == est
        a, b = frustration(g, est, key=key, bound=False), frustration(g, key=key, bound=False, **shortcut)
        assert a.value == b.value and a.settings == b.settings
        assert from_toml(est.to_toml()) == est
    assert from_toml("auto") == Ladder() and Ladder().to_toml() == {"name": "ladder"}
    assert from_toml({"name": "ladder", "rungs": [[8, 0], [8, 32]]}).rungs == ((8, 0), (8, 32))
    with pytest.raises(ValueError, match="method.sweep: unknown field of Anneal"):
        from_toml({"name": "anneal", "sweep": 3})


def test_rungs_are_checked():
    g = SignedGraph.from_weights(random_weights(0))
    with pytest.raises(ValueError, match='rungs applies to method="ladder"'):
        frustration(g, method="anneal", rungs=((8, 64),))
    with pytest.raises(ValueError, match="rungs must be a sequence of"):
        frustration(g, rungs=(8, 64))
    with pytest.raises(ValueError, match=r"rungs\[1\] sweeps must be an integer >= 0"):
        frustration(g, rungs=((8, 0), (8, -1)))
    with pytest.raises(ValueError, match="at least one"):
        frustration(g, rungs=())
