import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.config import ModelConfig, TrainConfig
from jaxflow.signed import Activation, Dense, Layer, SignedGraph
from jaxflow.signed.frustration import frustration
from jaxflow.signed.function import GraphFunction
from jaxflow.signed.importers import from_equinox
from jaxflow.signed.monotonicity import (
    AGREEMENT_CHUNK,
    CONFIDENCE_Z,
    Orthant,
    _agreements,
    _scores,
    active_subnetworks,
    forward_size,
    jacobian_plan,
    monotonicity_score,
    null_model_monotonicity,
    orthant_perturbation_test,
    relu_masks,
    restrict,
)
from jaxflow.train import make_model, train_digits

WIDTHS = (5, 7, 7, 3)


def _mlp(key, activation):
    return eqx.nn.MLP(
        WIDTHS[0], WIDTHS[-1], WIDTHS[1], len(WIDTHS) - 2, activation=activation, key=key, dtype=jnp.float64
    )


def _map_weights(mlp, f):
    """Replace each layer's weight `W_i` by `f(i, W_i)` (i = 1..h); biases are kept."""
    weights = [f(i, layer.weight) for i, layer in enumerate(mlp.layers, start=1)]
    return eqx.tree_at(lambda m: [layer.weight for layer in m.layers], mlp, weights)


def _gauge_weights(mlp, gauge):
    """`W_i ↦ S_i W_i S_{i−1}`: the network whose graph is balanced under `gauge` when `mlp`'s
    graph is all-positive."""
    return _map_weights(mlp, lambda i, w: gauge[i][:, None] * w * gauge[i - 1][None, :])


def _random_gauge(key):
    keys = jax.random.split(key, len(WIDTHS))
    return [jnp.where(jax.random.bernoulli(k, 0.5, (d,)), 1.0, -1.0) for k, d in zip(keys, WIDTHS)]


@pytest.fixture(scope="module")
def inputs():
    return jax.random.normal(jax.random.key(1), (16, WIDTHS[0]), jnp.float64)


@pytest.mark.parametrize("activation", [jax.nn.relu, jnp.tanh, jax.nn.sigmoid])
def test_nonnegative_network_is_monotone_under_any_gauge(activation, inputs):
    key_net, key_gauge = jax.random.split(jax.random.key(0))
    positive = _map_weights(_mlp(key_net, activation), lambda i, w: jnp.abs(w))
    plus_in, plus_out = jnp.ones(WIDTHS[0]), jnp.ones(WIDTHS[-1])
    score = monotonicity_score(positive, plus_in, plus_out, inputs)
    finite = score.per_input[~jnp.isnan(score.per_input)]
    assert finite.size > 0 and np.all(finite == 1.0) and score.mean == 1.0

    for k in jax.random.split(key_gauge, 3):
        gauge = _random_gauge(k)
        gauged = _gauge_weights(positive, gauge)
        # the gauged network is balanced under `gauge`: its score under the same gauge is 1
        # exactly (S_out J S_in is a sum of non-negative products), wherever J(x) != 0
        score = monotonicity_score(gauged, gauge[0], gauge[-1], inputs)
        finite = score.per_input[~jnp.isnan(score.per_input)]
        assert finite.size > 0 and np.all(finite == 1.0)
        # ... and under the all-plus gauge it is not monotone (the gauge matters)
        assert monotonicity_score(gauged, plus_in, plus_out, inputs).mean < 1.0


def _fd_jacobian(fn, x, eps=1e-6):
    x = np.asarray(x)
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * eps))
    return np.stack(cols, axis=1)


def test_jacobian_score_matches_finite_differences(inputs):
    net = _mlp(jax.random.key(2), jnp.tanh)
    s_in = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    s_out = np.array([-1.0, 1.0, 1.0])
    score = monotonicity_score(net, s_in, s_out, inputs)
    expected = []
    for x in np.asarray(inputs):
        J = _fd_jacobian(net, x)
        M = s_out[:, None] * J * s_in[None, :]
        expected.append(np.maximum(M, 0).sum() / np.abs(J).sum())
    # central differences with eps = 1e-6 on a smooth (tanh) network: truncation O(eps²)
    # and rounding O(1e-16 / eps) ≈ 1e-10 per entry
    np.testing.assert_allclose(score.per_input, expected, rtol=1e-8, atol=0)
    assert score.mean == pytest.approx(np.mean(expected), rel=1e-8)
    assert 0.0 < score.mean < 1.0


def test_zero_jacobian_is_nan_and_skipped_by_mean():
    fn = lambda x: jnp.stack([jax.nn.relu(x[0]), jax.nn.relu(x[1])])
    x = jnp.array([[1.0, 2.0], [-1.0, -2.0], [1.0, -2.0]])
    score = monotonicity_score(fn, jnp.ones(2), jnp.ones(2), x)
    assert score.per_input[0] == 1.0 and jnp.isnan(score.per_input[1]) and score.per_input[2] == 1.0
    assert score.mean == 1.0


def test_orthant_sample_lies_in_orthant_with_given_norm(key):
    signs = jnp.array([1.0, -1.0, -1.0, 1.0])
    deltas = Orthant(signs).sample(key, jnp.array([0.3]), 50)[0]
    assert jax.vmap(Orthant(signs).contains)(deltas).all()
    np.testing.assert_allclose(jnp.linalg.norm(deltas, axis=1), 0.3, rtol=1e-14)


def test_perturbation_test_on_linear_maps(key):
    d = 6
    x = jnp.zeros((40, d))
    s_in = jnp.where(jnp.arange(d) % 2 == 0, 1.0, -1.0)
    identity = lambda v: v
    res = orthant_perturbation_test(identity, s_in, s_in, x, key, sizes=(0.1, 1.0), samples=50)
    # δ ∈ K_in and Δ = δ: always in K_out
    np.testing.assert_array_equal(res.coordinate, 1.0)
    np.testing.assert_array_equal(res.vector, 1.0)
    # random orthant r: Δ_k agrees with s_k iff r_k = s_k (probability ½ per coordinate, 2^-d for
    # all); 40·50 = 2000 draws of 6 coordinates: std of the mean ≤ 0.5/√12000 ≈ 0.005
    np.testing.assert_allclose(res.reference_coordinate, 0.5, atol=0.025)
    np.testing.assert_allclose(res.reference_vector, 2.0**-d, atol=0.02)
    anti = orthant_perturbation_test(lambda v: -v, s_in, s_in, x, key, sizes=(0.1,), samples=5)
    assert anti.coordinate[0] == 0.0 and anti.vector[0] == 0.0


@pytest.mark.parametrize(
    "s_in, s_out, inputs, match",
    [
        (np.ones(4), np.ones(3), np.zeros((2, 5)), "s_in must have one sign per input"),
        (np.ones(5), np.ones(2), np.zeros((2, 5)), "s_out must have one sign per output"),
        (np.array([1, 0, 1, 1, 1.0]), np.ones(3), np.zeros((2, 5)), r"s_in must hold only \+1 and -1"),
        (np.ones(5), np.ones(3), np.zeros(5), "inputs must be a non-empty batch"),
        (np.ones(5), np.ones(3), np.zeros((2, 5), int), "inputs must be floating point"),
        (np.ones(5), np.ones(3), np.full((2, 5), np.nan), "inputs contains 10 non-finite"),
    ],
)
def test_bad_input_gives_clear_error(s_in, s_out, inputs, match):
    net = _mlp(jax.random.key(0), jnp.tanh)
    with pytest.raises(ValueError, match=match):
        monotonicity_score(net, s_in, s_out, inputs)


def test_bad_lines_give_clear_errors():
    net, args = _mlp(jax.random.key(0), jnp.tanh), (np.ones(5), np.ones(3), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="lines must be an integer >= 2, got 1"):
        monotonicity_score(net, *args, lines=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="key must be one JAX PRNG key"):
        monotonicity_score(net, *args, lines=2)


def test_fn_that_does_not_take_one_input_is_reported():
    with pytest.raises(ValueError, match=r"fn cannot be applied to one input of shape \(4,\)"):
        monotonicity_score(lambda x: x @ jnp.ones((3, 2)), np.ones(4), np.ones(2), np.zeros((2, 4)))


def test_restrict_is_the_masked_dense_matrix(key):
    ws = [
        jax.random.normal(k, (d_out, d_in))
        for k, d_in, d_out in zip(jax.random.split(key, 3), WIDTHS, WIDTHS[1:])
    ]
    graph = SignedGraph.from_weights(ws)
    masks = [jax.random.bernoulli(jax.random.fold_in(key, j), 0.6, s) for j, s in enumerate(graph.shapes)]
    m = np.concatenate([np.asarray(x) for x in masks]).astype(float)
    dense = np.asarray(graph.to_dense()) * m[:, None] * m[None, :]
    sub = restrict(graph, masks)
    np.testing.assert_array_equal(sub.to_dense(), dense)
    assert float(sub.abs_sum()) == pytest.approx(np.abs(dense).sum(), rel=1e-14)
    assert sub.num_edges() == np.count_nonzero(dense)
    v = jax.random.normal(key, (graph.num_nodes,))
    np.testing.assert_allclose(sub.flatten(sub.matvec(sub.unflatten(v))), dense @ v, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(
        sub.flatten(sub.rmatvec(sub.unflatten(v))), dense.T @ v, rtol=1e-13, atol=1e-13
    )
    with pytest.raises(ValueError, match="masks must hold one array per layer"):
        restrict(graph, masks[:-1])
    with pytest.raises(ValueError, match="masks must be boolean"):
        restrict(graph, [m.astype(float) for m in masks])


# Same model config, restarts and null samples as tests/configs/study_tiny.toml: compiled once.
@pytest.fixture(scope="module", params=["mlp", "cnn"])
def trained(request):
    config = ModelConfig(kind=request.param, hidden=(32,), channels=(4,))
    result, data = train_digits(config, TrainConfig(epochs=8, checkpoint_every=8))
    return request.param, result.model, data


def test_trained_digits_network_is_more_monotone_than_its_null_models(trained, key):
    kind, model, data = trained
    x = data.x_test[:64]
    graph = from_equinox(model, tuple(x.shape[1:]))
    best = frustration(graph, key=key, restarts=8)
    score = monotonicity_score(model, best.gauge[0], best.gauge[-1], x)
    null = null_model_monotonicity(model, graph, x, key, samples=3, restarts=8)
    random = float(np.mean(null.random_orthants))
    print(
        f"\n{kind}: frustration {float(best.normalized):.4f}; Jacobian score {float(score.mean):.4f} vs "
        f"null networks {float(null.mean):.4f} ± {float(null.std):.4f}, random orthants {random:.4f}"
    )
    assert score.mean > null.mean and score.mean > random
    if kind == "cnn":
        return  # the active subnetworks of the MLP suffice here (their graph compiles anew)
    active = active_subnetworks(model, graph, x[:3], key, full_gauge=best.gauge, restarts=8)
    print(
        f"{kind}: active subnetworks frustration {np.round(active.normalized, 4)}, agreement with "
        f"the full gauge {np.round(active.agreement_full, 3)}"
    )
    # a subgraph's frustration is at most that of the best full gauge restricted to it, so at most
    # the full graph's frustration (same total can only shrink); normalized values stay in [0, ½]
    assert np.all(np.asarray(active.normalized) <= 0.5)
    np.testing.assert_allclose(np.diag(active.agreement), 1.0, rtol=1e-12)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_graph_function_is_the_bias_free_network(pool, key):
    model = make_model(ModelConfig(kind="cnn", channels=(2,), pool=pool), key)
    is_layer = lambda x: isinstance(x, (eqx.nn.Linear, eqx.nn.Conv2d))
    biases = lambda m: [x.bias for x in jax.tree.leaves(m, is_leaf=is_layer) if is_layer(x)]
    model = eqx.tree_at(biases, model, [jnp.zeros_like(b) for b in biases(model)])
    graph = from_equinox(model, (1, 8, 8))
    x = jax.random.uniform(key, (4, 1, 8, 8), jnp.float64)
    fn = GraphFunction(graph)
    # the graph's own forward pass against Equinox's layers: the same sums in another order
    np.testing.assert_allclose(jax.vmap(fn)(x), jax.vmap(model)(x), rtol=1e-12, atol=1e-14)
    for a, b in zip(relu_masks(fn, graph, x[0]), relu_masks(model, graph, x[0])):
        np.testing.assert_array_equal(a, b)


def test_graph_function_refuses_unknown_activations():
    graph = SignedGraph.from_layers(
        [Layer("x", shape=(2,)), Layer("y", {"x": Dense(np.eye(2))}, activation=Activation("gelu", False))]
    )
    with pytest.raises(ValueError, match="layer 'y' has activation 'gelu'"):
        GraphFunction(graph)


def _dense_scores(fn, s_in, s_out, xs):
    """The Jacobian score from the whole `jax.jacfwd` Jacobian (the definition)."""
    out = []
    for x in xs:
        J = np.asarray(jax.jit(jax.jacfwd(fn))(x)).reshape(np.size(s_out), np.size(s_in))
        M = np.ravel(s_out)[:, None] * J * np.ravel(s_in)[None, :]
        out.append(np.maximum(M, 0).sum() / np.abs(J).sum())
    return np.array(out)


@pytest.mark.parametrize("chunk", [1, 3, 10])
def test_chunked_jacobian_score_is_the_dense_one(chunk, key):
    # a CNN with max pooling seen as its graph's function: 64 inputs, 10 outputs, so rows of J are
    # pulled back (vjp) in chunks of 1 (budget 1 byte), of 3 (not dividing 10), or all at once
    model = make_model(ModelConfig(kind="cnn", channels=(3,), pool="max"), key)
    graph = from_equinox(model, (1, 8, 8))
    fn = GraphFunction(graph)
    k_x, k_in, k_out = jax.random.split(key, 3)
    x = jax.random.uniform(k_x, (5, 1, 8, 8), jnp.float64)
    s_in = jnp.where(jax.random.bernoulli(k_in, 0.5, (1, 8, 8)), 1.0, -1.0)
    s_out = jnp.where(jax.random.bernoulli(k_out, 0.5, (10,)), 1.0, -1.0)
    one = jax.ShapeDtypeStruct((1, 8, 8), jnp.float64)
    size = forward_size(fn, one)
    per_row = 8 * (size + 64 + 10)  # bytes: a cotangent through the network, its row, its basis vector
    budget = {1: 1, 3: 8 * size + 3 * per_row, 10: 2**29}[chunk]
    plan = jacobian_plan(fn, one, 10, 5, memory_budget=budget, batch_size=64)
    assert plan.reverse and plan.chunk == chunk and plan.batch == (5 if chunk == 10 else 1)
    score = monotonicity_score(fn, s_in, s_out, x, memory_budget=budget)
    np.testing.assert_allclose(score.per_input, _dense_scores(fn, s_in, s_out, x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("budget", [1, 4_000, 2**29])
def test_chunked_jacobian_score_forward_mode(budget, key):
    # more outputs (9) than inputs (5): columns of J pushed forward (jvp) in chunks
    net = _mlp(key, jnp.tanh)
    fn = lambda x: jnp.concatenate([net(x), -(net(x) ** 2), net(x)])
    x = jax.random.normal(key, (7, WIDTHS[0]), jnp.float64)
    s_in = np.array([1.0, -1.0, 1.0, 1.0, -1.0])
    s_out = np.where(np.arange(9) % 3 == 0, -1.0, 1.0)
    plan = jacobian_plan(
        fn, jax.ShapeDtypeStruct((5,), jnp.float64), 9, 7, memory_budget=budget, batch_size=3
    )
    assert not plan.reverse and plan.batch <= 3
    score = monotonicity_score(fn, s_in, s_out, x, memory_budget=budget, batch_size=3)
    np.testing.assert_allclose(score.per_input, _dense_scores(fn, s_in, s_out, x), rtol=1e-13, atol=0)


def test_perturbation_test_does_not_depend_on_the_batching(key):
    net = _mlp(jax.random.key(4), jax.nn.relu)
    x = jax.random.normal(key, (6, WIDTHS[0]), jnp.float64)
    s_in, s_out = np.array([1.0, -1.0, 1.0, 1.0, -1.0]), np.array([-1.0, 1.0, 1.0])
    args = (net, s_in, s_out, x, key)
    whole = orthant_perturbation_test(*args, sizes=(0.1, 1.0), samples=5)
    tiny = orthant_perturbation_test(*args, sizes=(0.1, 1.0), samples=5, memory_budget=1, batch_size=2)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(tiny)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="memory_budget must be a positive integer"):
        orthant_perturbation_test(*args, memory_budget=0)


def test_gauge_agreements_from_gram_matrices():
    rng = np.random.default_rng(0)
    n_inputs, n = 5, 3 * AGREEMENT_CHUNK // 2 + 7  # more than one chunk of nodes
    gauges = rng.choice(np.array([-1, 1], np.int8), (n_inputs, n))
    masks = rng.random((n_inputs, n)) < 0.7
    masks[4] = False  # an input with no active node: agreement 0 by the max(#common, 1) rule
    full = rng.choice(np.array([-1, 1], np.int8), n)
    agreement, agreement_full = _agreements(gauges, masks, full)

    def naive(sa, sb, common):
        return abs(np.sum(np.where(common, sa.astype(float) * sb, 0))) / max(common.sum(), 1)

    expected = [
        [naive(gauges[a], gauges[b], masks[a] & masks[b]) for b in range(n_inputs)] for a in range(n_inputs)
    ]
    np.testing.assert_allclose(agreement, expected, rtol=1e-15, atol=0)
    np.testing.assert_allclose(agreement_full, [naive(g, full, m) for g, m in zip(gauges, masks)], rtol=1e-15)
    np.testing.assert_array_equal(np.diag(agreement)[:4], 1.0)


def _row_heavy_mlp(key, n_in=48, n_out=40):
    """A ReLU MLP with more inputs than outputs (rows by vjp), 35% negative weights (scores about
    0.6: the error bound is not trivially 0) and output rows scaled by `exp(0.3 N(0, 1))`."""
    k_net, k_neg, k_scale = jax.random.split(key, 3)
    mlp = eqx.nn.MLP(n_in, n_out, 16, 2, activation=jax.nn.relu, key=k_net, dtype=jnp.float64)
    keys = jax.random.split(k_neg, len(mlp.layers))
    flip = lambda i, w: jnp.abs(w) * jnp.where(jax.random.bernoulli(keys[i - 1], 0.35, w.shape), -1.0, 1.0)
    mlp = _map_weights(mlp, flip)
    scale = jnp.exp(0.3 * jax.random.normal(k_scale, (n_out, 1)))
    return eqx.tree_at(lambda m: m.layers[-1].weight, mlp, mlp.layers[-1].weight * scale)


def test_sampled_score_error_bound_holds_over_many_models():
    # 100 random networks × 8 inputs, 16 of the 40 Jacobian rows each: the stated error holds
    # wherever |D̂ − D| <= 3 standard errors (normal approximation: 0.27% of draws fail); allow 1%
    dense = eqx.filter_jit(lambda m, x: jax.vmap(jax.jacrev(m))(x))
    xs = jax.random.normal(jax.random.key(1), (100, 8, 48), jnp.float64)
    deviations, errors = [], []
    for k, x in zip(jax.random.split(jax.random.key(0), len(xs)), xs):
        net = _row_heavy_mlp(k)
        J = np.asarray(dense(net, x))
        exact = np.maximum(J, 0).sum((1, 2)) / np.abs(J).sum((1, 2))  # the definition (all-plus gauge)
        est = monotonicity_score(net, np.ones(48), np.ones(40), x, lines=16, key=jax.random.fold_in(k, 1))
        deviations.append(np.abs(np.asarray(est.per_input) - exact))
        errors.append(np.asarray(est.error))
    deviations, errors = np.concatenate(deviations), np.concatenate(errors)
    judged = ~np.isnan(deviations)  # J(x) = 0 (a dead ReLU layer): NaN in both
    assert judged.sum() > 700 and np.array_equal(judged, ~np.isnan(errors))
    violations = np.sum(deviations[judged] > errors[judged] + 1e-12)
    assert violations <= 0.01 * judged.sum()
    # the bound is informative: far below 1, and above the typical deviation
    assert np.mean(deviations[judged]) < np.mean(errors[judged]) < 0.15


def test_gauges_share_one_set_of_lines(key):
    net = _row_heavy_mlp(key)
    x = jax.random.normal(key, (6, 48), jnp.float64)
    k_in, k_out, k_lines = jax.random.split(key, 3)
    s_in = jnp.where(jax.random.bernoulli(k_in, 0.5, (3, 48)), 1.0, -1.0)
    s_out = jnp.where(jax.random.bernoulli(k_out, 0.5, (3, 40)), 1.0, -1.0)
    for lines in (None, 8):
        together = _scores(net, s_in, s_out, x, k_lines, lines, 64, 2**29)
        for g in range(3):
            alone = monotonicity_score(net, s_in[g], s_out[g], x, lines=lines, key=k_lines)
            np.testing.assert_allclose(together.per_input[g], alone.per_input, rtol=1e-13, atol=0)
            np.testing.assert_allclose(together.error[g], alone.error, rtol=1e-13, atol=1e-16)
    exact = _scores(net, s_in, s_out, x, k_lines, None, 64, 2**29)
    for g in range(3):
        np.testing.assert_allclose(exact.per_input[g], _dense_scores(net, s_in[g], s_out[g], x), rtol=1e-13)
    np.testing.assert_array_equal(exact.error, 0.0)
    # as many lines as rows: every row is taken, the same exact score
    every = monotonicity_score(net, s_in[0], s_out[0], x, lines=40, key=k_lines)
    np.testing.assert_allclose(every.per_input, exact.per_input[0], rtol=1e-14, atol=0)
    np.testing.assert_array_equal(every.error, 0.0)


def test_sampled_score_is_the_identity_on_the_sampled_rows(key):
    # m̂ = ½ (1 + a / D̂): a = s_outᵀ J s_in exact, D̂ = (n/r) Σ of the sampled rows' ‖J_k‖_1;
    # rebuilt from the dense Jacobian and the rows jax.random.choice draws for each input
    net = _row_heavy_mlp(key)
    x = jax.random.normal(key, (4, 48), jnp.float64)
    s_in = np.where(np.arange(48) % 3 == 0, -1.0, 1.0)
    s_out = np.where(np.arange(40) % 4 == 0, -1.0, 1.0)
    est = monotonicity_score(net, s_in, s_out, x, lines=10, key=key)
    for xi, k, m, err in zip(x, jax.random.split(key, 4), est.per_input, est.error):
        J = np.asarray(jax.jacrev(net)(xi))
        norms = np.abs(J[np.asarray(jax.random.choice(k, 40, (10,), replace=False))]).sum(1)
        a, d_hat = s_out @ J @ s_in, 4 * norms.sum()
        assert m == pytest.approx((1 + a / d_hat) / 2, rel=1e-13)
        se = 40 * np.sqrt((1 - 10 / 40) * norms.var(ddof=1) / 10)
        low, high = max(d_hat - CONFIDENCE_Z * se, abs(a), norms.sum()), d_hat + CONFIDENCE_Z * se
        assert err == pytest.approx(abs(a) * (1 / low - 1 / high) / 2, rel=1e-12)
