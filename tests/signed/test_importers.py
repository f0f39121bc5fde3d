"""Importers: the graphs of Equinox, npz and ONNX models carry the models' functions and edges."""

import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from jaxflow.config import ModelConfig
from jaxflow.signed import Conv2d, Pool, SignedGraph
from jaxflow.signed.importers import from_equinox, from_npz, from_onnx, load_graph
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
    graph = SignedGraph.from_equinox(linear)
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


# ---------------------------------------------------------------------- ONNX


def _model(nodes, inputs, outputs, consts, opset=17):
    typed = {k: np.asarray(v) for k, v in consts.items()}
    typed = {k: v.astype(np.int64 if v.dtype.kind == "i" else np.float32) for k, v in typed.items()}
    inits = [numpy_helper.from_array(v, k) for k, v in typed.items()]
    graph = helper.make_graph(nodes, "test", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _resnet_like(rng, *, bn_shift: bool):
    """Conv-BN-Relu, grouped Conv-BN + skip, Relu, AvgPool, Concat with a strided 1x1 Conv,
    GlobalAveragePool, Flatten, two Gemm heads. Without `bn_shift` every bias is zero."""
    n = rng.normal
    c = {
        "w1": n(size=(4, 2, 3, 3)), "w2": n(size=(4, 2, 3, 3)), "w3": n(size=(3, 4, 1, 1)),
        "g1": np.array([1.5, -0.5, 2.0, -1.0]), "v1": rng.uniform(0.5, 2, 4),
        "g2": n(size=4), "v2": rng.uniform(0.5, 2, 4),
        "fc1": n(size=(5, 7)), "fc2": n(size=(2, 7)), "shape": np.array([1, -1]),
    }  # fmt: skip
    for k in ("b1", "m1", "b2", "m2", "bias"):
        c[k] = n(size=4) if bn_shift else np.zeros(4)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "bias"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g1", "b1", "m1", "v1"], ["n1"], "bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["r1"], "relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], "conv2", pads=[1, 1, 1, 1], group=2),
        helper.make_node("BatchNormalization", ["c2", "g2", "b2", "m2", "v2"], ["n2"], "bn2"),
        helper.make_node("Add", ["n2", "r1"], ["s"], "add"),
        helper.make_node("Relu", ["s"], ["r2"], "relu2"),
        helper.make_node("AveragePool", ["r2"], ["p"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], "conv3", strides=[2, 2]),
        helper.make_node("Concat", ["p", "c3"], ["cat"], "concat", axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], "gap"),
        helper.make_node("Reshape", ["gap", "shape"], ["flat"], "flatten"),
        helper.make_node("Gemm", ["flat", "fc1"], ["y1"], "head1", transB=1),
        helper.make_node("Gemm", ["flat", "fc2"], ["y2"], "head2", transB=1, alpha=0.5),
    ]
    outs = [_input("y1", [1, 5]), _input("y2", [1, 2])]
    return _model(nodes, [_input("x", [1, 2, 6, 6])], outs, c), c


def _run(model, x):
    return np.concatenate(
        [y.ravel() for y in ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})]
    )


def test_onnx_graph_is_the_model_and_folds_batchnorm():
    rng = np.random.default_rng(1)
    model, c = _resnet_like(rng, bn_shift=False)
    graph = SignedGraph.from_onnx(model)
    x = rng.normal(size=(2, 6, 6))
    # float32 reference evaluation (ONNX) vs the float64 graph: agreement to float32 rounding
    np.testing.assert_allclose(forward(graph, x), _run(model, x[None]), rtol=2e-5, atol=2e-5)
    # BN folded into conv1: kernel scaled by gamma / sqrt(var + eps) per output channel (signs flip)
    conv1 = graph.blocks[graph.incoming(graph.names.index("n1"))[0]]
    scale = c["g1"].astype(np.float32) / np.sqrt(c["v1"].astype(np.float32) + 1e-3)
    np.testing.assert_allclose(
        conv1.kernel, c["w1"].astype(np.float32) * scale[:, None, None, None], rtol=1e-6
    )
    # the residual layer sums the folded grouped conv and identity edges from relu1; two heads stacked
    assert graph.names[-1] == "output" and graph.shapes[-1] == (7,)
    assert [a.name for a in graph.activations].count("Relu") == 2
    # biases and BN shifts are not edges: the graph with them is the same graph
    shifted, _ = _resnet_like(np.random.default_rng(1), bn_shift=True)
    assert eqx.tree_equal(from_onnx(shifted), graph)


def test_onnx_linear_version_path_sums_are_the_jacobian():
    rng = np.random.default_rng(2)
    model, _ = _resnet_like(rng, bn_shift=False)
    for node in model.graph.node:
        if node.op_type == "Relu":
            node.op_type = "Identity"
    graph = from_onnx(model)
    jac = np.stack([_run(model, e.reshape(1, 2, 6, 6)) for e in np.eye(72)], axis=1)
    np.testing.assert_allclose(transfer(graph), jac, rtol=1e-5, atol=1e-5)  # float32 reference


def test_onnx_rearrangements_constants_and_activations():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 2, 3, 3))
    fc = rng.normal(size=(4 * 3 * 3, 6))
    shuffle = [
        helper.make_node("Reshape", ["x", "s5"], ["a"], "split"),
        helper.make_node("Transpose", ["a"], ["b"], "swap", perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["b", "s4"], ["shuffled"], "merge"),
    ]  # a channel shuffle (ShuffleNet): the conv reads the input's channels in the order 0, 2, 1, 3
    nodes = [
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w.astype(np.float32))),
        *shuffle,
        helper.make_node("Conv", ["shuffled", "w"], ["c"], "conv", group=2),
        helper.make_node("PRelu", ["c", "slope"], ["r"], "prelu"),
        helper.make_node("Transpose", ["r"], ["t"], "hw", perm=[0, 1, 3, 2]),
        helper.make_node("Shape", ["t"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zeros"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["t", "target"], ["flat"], "flatten"),
        helper.make_node("MatMul", ["flat", "fc"], ["m"], "matmul"),
        helper.make_node("Sub", ["m", "bias"], ["y"], "bias"),
    ]
    consts = {
        "s5": [1, 2, 2, 5, 5],
        "s4": [1, 4, 5, 5],
        "slope": np.full((4, 1, 1), 0.25),
        "fc": fc,
        "bias": np.ones(6),
    }
    model = _model(nodes, [_input("x", ["N", 4, 5, 5])], [_input("y", ["N", 6])], consts)
    for name, v in {"zero": np.array(0), "zeros": np.array([0]), "minus1": np.array([-1])}.items():
        model.graph.initializer.append(numpy_helper.from_array(v.astype(np.int64), name))
    graph = from_onnx(model)
    x = rng.normal(size=(4, 5, 5))
    leaky = {"PRelu": lambda v: jnp.where(v >= 0, v, 0.25 * v), "identity": lambda v: v}
    expect = ReferenceEvaluator(model).run(None, {"x": x[None].astype(np.float32)})[0][0] + 1
    np.testing.assert_allclose(forward(graph, x, leaky), expect, rtol=2e-5, atol=2e-5)
    # the shuffle and the transposes add no nodes or edges: input, conv output, output
    assert graph.shapes == ((4, 5, 5), (4, 3, 3), (6,))
    # each of 4 outputs reads 2 (shuffled) channels with 9 taps at 9 positions; then the dense layer
    assert graph.num_edges() == 4 * 2 * 9 * 9 + 36 * 6
    assert graph.activations[1].monotone


@pytest.mark.parametrize(
    ("op", "attrs", "extra", "monotone"),
    [
        ("Relu", {}, {}, True),
        ("Sigmoid", {}, {}, True),
        ("Tanh", {}, {}, True),
        ("HardSigmoid", {"alpha": 0.3}, {}, True),
        ("LeakyRelu", {"alpha": 0.1}, {}, True),
        ("LeakyRelu", {"alpha": -0.1}, {}, False),
        ("PRelu", {}, {"slope": np.array([0.2, -0.1, 0.3])}, False),
        ("Clip", {}, {"lo": np.array(0.0), "hi": np.array(6.0)}, True),
        ("Gelu", {}, {}, False),
    ],
)
def test_onnx_activation_monotonicity(op, attrs, extra, monotone):
    args = ["h", *extra]
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["h"], "fc", transB=1),
        helper.make_node(op, args, ["y"], "act", **attrs),
    ]
    model = _model(
        nodes, [_input("x", [1, 2])], [_input("y", [1, 3])], {"w": np.ones((3, 2)), **extra}, opset=20
    )
    graph = from_onnx(model)
    assert graph.activations[-1] == (op, monotone)


def test_onnx_bad_inputs_give_clear_errors(tmp_path):
    def gemm_then(op, w=None, **attrs):
        nodes = [
            helper.make_node("Gemm", ["x", "w"], ["h"], "fc", transB=1),
            helper.make_node(op, ["h"], ["y"], "last", **attrs),
        ]
        w = np.ones((3, 2)) if w is None else w
        return _model(nodes, [_input("x", [1, 2])], [_input("y", [1, 3])], {"w": w})

    with pytest.raises(ValueError, match=r"ONNX node 'last' \(Softmax\): unsupported op 'Softmax'"):
        from_onnx(gemm_then("Softmax"))
    with pytest.raises(
        ValueError, match=r"node 'fc' \(Gemm\): weight of shape \(3, 4\) must be \(outputs, 2\)"
    ):
        from_onnx(gemm_then("Relu", w=np.ones((3, 4))))
    add = _model(
        [
            helper.make_node("Gemm", ["x", "w"], ["h"], "fc", transB=1),
            helper.make_node("Add", ["h", "x"], ["y"], "skip"),
        ],
        [_input("x", [1, 2])],
        [_input("y", [1, 3])],
        {"w": np.ones((3, 2))},
    )
    with pytest.raises(
        ValueError, match=r"node 'skip' \(Add\): cannot add tensors of shapes \(3,\) and \(2,\)"
    ):
        from_onnx(add)
    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf")
    with pytest.raises(ValueError, match="garbage.onnx is not a readable ONNX model|malformed ONNX model"):
        from_onnx(bad)
    dangling = gemm_then("Relu")
    dangling.graph.node[1].input[0] = "nowhere"
    with pytest.raises(ValueError, match="malformed ONNX model"):
        from_onnx(dangling)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        from_onnx(tmp_path / "missing.onnx")
    path = tmp_path / "ok.onnx"
    onnx.save(gemm_then("Relu"), path)
    assert load_graph(path).shapes == ((2,), (3,))


def test_onnx_is_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxflow\[onnx\]'"):
        from_onnx("model.onnx")


def test_onnx_ceil_mode_pooling_matches_the_reference_shape():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["y"], "pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    ]
    model = _model(nodes, [_input("x", [1, 1, 6, 6])], [_input("y", [1, 1, 3, 3])], {})
    graph = from_onnx(model)
    ref = ReferenceEvaluator(model).run(None, {"x": np.zeros((1, 1, 6, 6), np.float32)})[0]
    assert graph.shapes[-1] == ref.shape[1:] == (1, 3, 3)
    # windows at rows/cols 0-2, 2-4, 4-5: the last window holds only the 2 inputs inside the image
    assert graph.num_edges() == (3 + 3 + 2) ** 2
    assert isinstance(graph.blocks[0], Pool)


def test_onnx_shared_values_preactivation_bn_and_merged_paths():
    """c1 is read raw and through a Relu (the Relu gets nodes of its own); BN after the Relu is a
    per-channel layer; conv(r) + r merges two paths from one layer; Sub subtracts a tensor."""
    rng = np.random.default_rng(5)
    c = {
        "w1": rng.normal(size=(2, 2, 3, 3)), "w2": rng.normal(size=(2, 2, 3, 3)),
        "g": np.array([0.7, -1.3]), "zero": np.zeros(2), "v": np.array([0.5, 2.0]),
    }  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r"], "relu"),
        helper.make_node("BatchNormalization", ["r", "g", "zero", "zero", "v"], ["bn"], "bn"),
        helper.make_node("Conv", ["bn", "w2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "bn"], ["y"], "residual"),
        helper.make_node("Sub", ["y", "c1"], ["out"], "sub"),
    ]
    model = _model(nodes, [_input("x", [1, 2, 4, 4])], [_input("out", [1, 2, 4, 4])], c)
    graph = from_onnx(model)
    x = rng.normal(size=(2, 4, 4))
    expect = ReferenceEvaluator(model).run(None, {"x": x[None].astype(np.float32)})[0][0]
    np.testing.assert_allclose(forward(graph, x), expect, rtol=2e-5, atol=2e-5)
    # x, c1 (identity), r (Relu, identity edges from c1), bn (depthwise from r), out
    assert graph.names == ("x", "c1", "r", "bn", "out")
    assert [a.name for a in graph.activations] == ["identity", "identity", "Relu", "identity", "identity"]
    # out = conv2(bn) + bn - c1: the conv and the identity edges from bn are one block
    (merged,) = (graph.blocks[b] for b in graph.incoming(4) if graph.links[b][0] == 3)
    assert isinstance(merged, Conv2d)
    np.testing.assert_array_equal(
        np.asarray(merged.kernel)[:, :, 1, 1], c["w2"].astype(np.float32)[:, :, 1, 1] + np.eye(2)
    )
