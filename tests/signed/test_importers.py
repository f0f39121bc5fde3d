"""Importers: the graphs of Equinox and npz models carry the models' functions and edges (ONNX:
test_onnx.py)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.config import ModelConfig
from jaxflow.signed import Pool, SignedGraph
from jaxflow.signed.importers import from_equinox, from_npz, load_graph
from jaxflow.train import make_model

RELU = {"Relu": jax.nn.relu, "relu": jax.nn.relu, "identity": lambda v: v}


def forward(graph: SignedGraph, x, activations=RELU):
    """Evaluate the graph as a network: each layer is its activation of the sum of its blocks."""
    values = [jnp.asarray(x, graph.dtype)]
    for j in range(1, graph.num_layers):
        total = sum(graph.blocks[b].apply(values[graph.links[b][0]]) for b in graph.incoming(j))
        values.append(activations[graph.activations[j].name](total))
    return values[-1]


def transfer(graph: SignedGraph):
    """`(I − A)⁻¹ = Σ_k A^k` restricted to output ← input: the sum over all paths of their weights."""
    A = np.asarray(graph.to_dense())
    N = np.linalg.inv(np.eye(len(A)) - A)
    off = graph.offsets
    return N[off[-2] : off[-1], off[0] : off[1]]


def without_biases(model):
    return eqx.tree_at(
        lambda m: [x.bias for x in jax.tree.leaves(m, is_leaf=_has_bias) if _has_bias(x)],
        model,
        replace_fn=jnp.zeros_like,
    )


def _has_bias(x):
    return isinstance(x, (eqx.nn.Linear, eqx.nn.Conv2d)) and x.bias is not None


# ---------------------------------------------------------------------- Equinox


@pytest.mark.parametrize(
    "config", [ModelConfig("mlp", hidden=(6, 5)), ModelConfig("cnn", channels=(2,), pool="avg")]
)
def test_equinox_graph_is_the_model_without_biases(config, key):
    model = make_model(config, key)
    shape = (64,) if config.kind == "mlp" else (1, 8, 8)
    graph = from_equinox(model, shape)
    x = jax.random.uniform(jax.random.fold_in(key, 1), (5, *shape))
    expect = jax.vmap(without_biases(model))(x)
    got = jax.vmap(lambda v: forward(graph, v))(x)
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-12)
    assert [a.name for a in graph.activations] == (
        ["identity", "relu", "relu", "identity"]
        if config.kind == "mlp"
        else ["identity", "relu", "identity", "identity"]
    )


def test_linear_equinox_path_sums_are_the_jacobian(key):
    # identity activations: the model is linear and its Jacobian is the sum over paths of edge products
    mlp = eqx.nn.MLP(5, 3, 4, 2, activation=jax.nn.relu, key=key)
    linear = eqx.nn.Sequential([mlp.layers[0], mlp.layers[1], mlp.layers[2]])
    graph = from_equinox(linear)
    jac = jax.jacobian(linear)(jnp.zeros(5))
    np.testing.assert_allclose(transfer(graph), jac, rtol=1e-12, atol=1e-14)
    assert graph.num_edges() == 5 * 4 + 4 * 4 + 4 * 3
    relu_graph = from_equinox(mlp)  # eqx.nn.MLP: activation recorded between the Linear layers
    assert [a.name for a in relu_graph.activations] == ["identity", "relu", "relu", "identity"]
    assert eqx.tree_equal(relu_graph.blocks, graph.blocks)


def test_equinox_max_pool_links_every_input_of_the_window(key):
    graph = from_equinox(make_model(ModelConfig("cnn", channels=(3,), pool="max"), key), (1, 8, 8))
    pool = graph.blocks[1]
    assert isinstance(pool, Pool) and pool.mode == "max"
    # 2x2 windows, stride 2 over 3 channels of 8x8: every input node has exactly one edge of weight 1
    np.testing.assert_array_equal(np.asarray(pool.to_dense()).sum(axis=0), np.ones(3 * 64))
    assert pool.num_edges() == 3 * 64


def test_equinox_unsupported_layers_are_named(key):
    model = eqx.nn.Sequential([eqx.nn.Linear(3, 2, key=key), eqx.nn.Lambda(jnp.sin)])
    with pytest.raises(ValueError, match=r"model.layers\[1\] \(Lambda\('sin'\)\): unsupported layer"):
        from_equinox(model)
    with pytest.raises(ValueError, match="input_shape is required"):
        from_equinox(eqx.nn.Sequential([eqx.nn.Lambda(jax.nn.relu)]))
    with pytest.raises(ValueError, match=r"model\[1\] \(Linear\): weight of shape \(2, 4\)"):
        from_equinox([eqx.nn.Linear(3, 5, key=key), eqx.nn.Linear(4, 2, key=key)])


# ---------------------------------------------------------------------- npz


def test_npz_graph_and_format_errors(tmp_path):
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(4, 3)), rng.normal(size=(2, 4))]
    path = tmp_path / "net.npz"
    np.savez(path, W_1=ws[0], W_2=ws[1], b_1=np.ones(4), activations=np.array(["Relu", "identity"]))
    graph = load_graph(path)
    assert eqx.tree_equal(graph.blocks, SignedGraph.from_weights(ws).blocks)
    assert [a.name for a in graph.activations] == ["identity", "Relu", "identity"]
    np.savez(path, W_1=ws[0], W_3=ws[1])
    with pytest.raises(ValueError, match="expected arrays W_1 ... W_h"):
        from_npz(path)
    np.savez(path, W_1=ws[0], W_2=ws[1].T)
    with pytest.raises(ValueError, match=r"W_2: weight of shape \(4, 2\) must be \(outputs, 4\)"):
        from_npz(path)
    np.savez(path, W_1=ws[0], activations=np.array(["Swish"]))
    with pytest.raises(ValueError, match="unknown activation 'Swish'"):
        from_npz(path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable npz file"):
        from_npz(path)
    with pytest.raises(ValueError, match=r"must end in \.onnx or \.npz"):
        load_graph(tmp_path / "net.pt")
