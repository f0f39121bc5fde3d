"""ONNX import: small models written the way today's torch exporters write them, checked against
the ONNX reference evaluator (biases zeroed) and hand-built matrices; refusals by their messages.

Models are float64 (initializers and input), so the graph evaluated as a network agrees with the
reference to ~1e-12; the few float32 models say why.
"""

import dataclasses
import math
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from jax import lax
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from jaxflow.signed import (
    Broadcast,
    ChannelRoute,
    ChannelScale,
    Conv2d,
    ConvTranspose2d,
    Pool,
    Route,
    SignedGraph,
    Skip,
    Sparse,
    _builder,
)
from jaxflow.signed.function import GraphFunction
from jaxflow.signed.importers import from_onnx, load_graph

node = helper.make_node
TOL = {"rtol": 1e-10, "atol": 1e-10}
DOUBLE = TensorProto.DOUBLE  # stash_type: normalization statistics in float64 (the default is float32)
EPS = float(np.float32(1e-6))  # attributes are float32


def _hard_sigmoid(z):
    return jnp.clip(z / 6 + 0.5, 0, 1)


def _normalize(z, axes, eps):
    return (z - z.mean(axes, keepdims=True)) / jnp.sqrt(z.var(axes, keepdims=True) + eps)


ACTS = {
    "identity": lambda z: z,
    "Relu": jax.nn.relu,
    "Sigmoid": jax.nn.sigmoid,
    "HardSigmoid": lambda z: jnp.clip(z / 4 + 0.5, 0, 1),  # alpha = 1/4: exact in a float32 attribute
    "silu": jax.nn.silu,
    "hard_swish": lambda z: z * _hard_sigmoid(z),
    "HardSwish": lambda z: z * _hard_sigmoid(z),
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "Gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "Mul(x, x)": lambda z: z * z,
    "PRelu": lambda z: jnp.where(z >= 0, z, 0.25 * z),
}


# ---------------------------------------------------------------------- helpers


def _model(nodes, consts, x_shape, *, outputs=("y",), shapes=None, opset=18, dtype=np.float64, probe=None):
    """A model with input `x`, initializers `consts` (floats in `dtype`, ints as int64) and
    outputs of `shapes`, or of the shapes the reference evaluator finds (on `probe` for symbolic
    input dimensions)."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    typed = {k: np.asarray(v) for k, v in consts.items()}
    kind = {"i": np.int64, "u": np.int64, "b": bool}
    typed = {k: v.astype(kind.get(v.dtype.kind, dtype)) for k, v in typed.items()}
    inits = [numpy_helper.from_array(v, k) for k, v in typed.items()]
    x = helper.make_tensor_value_info("x", elem, x_shape)

    def build(outs):
        graph = helper.make_graph(nodes, "test", [x], outs, inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    if shapes is None:
        probing = build([helper.make_empty_tensor_value_info(o) for o in outputs])
        shapes = [
            y.shape for y in ReferenceEvaluator(probing).run(None, {"x": np.ones(probe or x_shape, dtype)})
        ]
    return build([helper.make_tensor_value_info(o, elem, s) for o, s in zip(outputs, shapes)])


def reference(model, x):
    return np.concatenate([y.ravel() for y in ReferenceEvaluator(model).run(None, {"x": x})])


def evaluate(graph: SignedGraph, x, acts=ACTS):
    """The graph as a network: each layer is its activation of the sum of its blocks (a max pool
    takes its window's maximum; a `"gate"` layer is the product of its two inputs)."""
    values = [jnp.asarray(x).reshape(graph.shapes[0])]
    for j in range(1, graph.num_layers):
        parts = []
        for b in graph.incoming(j):
            block, src = graph.blocks[b], values[graph.links[b][0]]
            if isinstance(block, Pool) and block.mode == "max":
                window, stride = (1, *block.window), (1, *block.stride)
                pads = ((0, 0), *block.padding)
                parts.append(lax.reduce_window(src, -jnp.inf, lax.max, window, stride, pads) * block.scale)
            else:
                parts.append(block.apply(src))
        name = graph.activations[j].name
        z = math.prod(parts) if name == "gate" else sum(parts)
        for act in reversed(name.split("∘")):
            z = acts[act](z) if act != "gate" else z
        values.append(z)
    return np.ravel(values[-1])


def transfer(graph: SignedGraph):
    """`Σ_k A^k` restricted to output ← input: the sum over all paths of their weights."""
    A = np.asarray(graph.to_dense())
    N = np.linalg.inv(np.eye(len(A)) - A)
    off = graph.offsets
    return N[off[-2] : off[-1], off[0] : off[1]]


def jacobian(model, shape):
    """The Jacobian of a linear (bias-free, no activation) model, column by column."""
    n = math.prod(shape)
    return np.stack([reference(model, e.reshape(shape)) for e in np.eye(n)], axis=1)


def check_network(nodes, consts, biases, x_shape, acts=ACTS, tol=TOL, **kw):
    """The graph of the model with biases `biases` is the graph of the model without them, and
    evaluated as a network it is the bias-free model. Returns that graph."""
    rng = np.random.default_rng(0)
    with_bias = from_onnx(_model(nodes, {**consts, **biases}, x_shape, **kw))
    zero = _model(nodes, {**consts, **{k: np.zeros_like(v) for k, v in biases.items()}}, x_shape, **kw)
    graph = from_onnx(zero)
    assert eqx.tree_equal(with_bias, graph)
    x = rng.normal(size=x_shape)
    np.testing.assert_allclose(evaluate(graph, x[0], acts), reference(zero, x), **tol)
    return graph


def check_linear(nodes, consts, x_shape, **kw):
    """A linear model: the graph's path sums are its Jacobian. Returns the graph."""
    model = _model(nodes, consts, x_shape, **kw)
    graph = from_onnx(model)
    np.testing.assert_allclose(transfer(graph), jacobian(model, x_shape), **TOL)
    return graph


def blocks_into(graph: SignedGraph, name: str) -> dict:
    """The blocks feeding layer `name`, by source layer name."""
    j = graph.names.index(name)
    return {graph.names[graph.links[b][0]]: graph.blocks[b] for b in graph.incoming(j)}


# ---------------------------------------------------------------------- the basics


def _resnet_like(rng, *, shift: bool):
    """Conv-BN-Relu, grouped Conv-BN + skip, Relu, AvgPool, Concat with a strided 1x1 Conv,
    GlobalAveragePool, Reshape, two Gemm heads. Without `shift` every bias is zero."""
    n = rng.normal
    c = {
        "w1": n(size=(4, 2, 3, 3)), "w2": n(size=(4, 2, 3, 3)), "w3": n(size=(3, 4, 1, 1)),
        "g1": np.array([1.5, -0.5, 2.0, -1.0]), "v1": rng.uniform(0.5, 2, 4),
        "g2": n(size=4), "v2": rng.uniform(0.5, 2, 4),
        "fc1": n(size=(5, 7)), "fc2": n(size=(2, 7)), "shape": np.array([1, -1]),
    }  # fmt: skip
    for k in ("b1", "m1", "b2", "m2", "bias"):
        c[k] = n(size=4) if shift else np.zeros(4)
    nodes = [
        node("Conv", ["x", "w1", "bias"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c1", "g1", "b1", "m1", "v1"], ["n1"], "bn1", epsilon=1e-3),
        node("Relu", ["n1"], ["r1"], "relu1"),
        node("Conv", ["r1", "w2"], ["c2"], "conv2", pads=[1, 1, 1, 1], group=2),
        node("BatchNormalization", ["c2", "g2", "b2", "m2", "v2"], ["n2"], "bn2"),
        node("Add", ["n2", "r1"], ["s"], "add"),
        node("Relu", ["s"], ["r2"], "relu2"),
        node("AveragePool", ["r2"], ["p"], "pool", kernel_shape=[2, 2], strides=[2, 2]),
        node("Conv", ["r2", "w3"], ["c3"], "conv3", strides=[2, 2]),
        node("Concat", ["p", "c3"], ["cat"], "concat", axis=1),
        node("GlobalAveragePool", ["cat"], ["gap"], "gap"),
        node("Reshape", ["gap", "shape"], ["flat"], "flatten"),
        node("Gemm", ["flat", "fc1"], ["y1"], "head1", transB=1),
        node("Gemm", ["flat", "fc2"], ["y2"], "head2", transB=1, alpha=0.5),
    ]
    return nodes, c


def test_graph_is_the_model_and_folds_batchnorm():
    nodes, c = _resnet_like(np.random.default_rng(1), shift=False)
    model = _model(nodes, c, [1, 2, 6, 6], outputs=("y1", "y2"))
    graph = from_onnx(model)
    x = np.random.default_rng(2).normal(size=(1, 2, 6, 6))
    np.testing.assert_allclose(evaluate(graph, x[0]), reference(model, x), **TOL)
    # BN folded into conv1: kernel scaled by gamma / sqrt(var + eps) per output channel (signs flip)
    (conv1,) = blocks_into(graph, "n1").values()
    scale = c["g1"] / np.sqrt(c["v1"] + float(np.float32(1e-3)))  # attributes are float32
    np.testing.assert_allclose(conv1.kernel, c["w1"] * scale[:, None, None, None], rtol=1e-15)
    # the residual layer sums the folded grouped conv and identity edges from relu1; two heads stacked
    assert graph.names[-1] == "output" and graph.shapes[-1] == (7,)
    assert [a.name for a in graph.activations].count("Relu") == 2
    # biases and BN shifts are not edges: the graph with them is the same graph
    shifted, c_shifted = _resnet_like(np.random.default_rng(1), shift=True)
    assert eqx.tree_equal(from_onnx(_model(shifted, c_shifted, [1, 2, 6, 6], outputs=("y1", "y2"))), graph)
    # path sums are the Jacobian of the model without its activations
    linear = [node("Identity", n.input, n.output) if n.op_type == "Relu" else n for n in nodes]
    check_linear(linear, c, [1, 2, 6, 6], outputs=("y1", "y2"))


def test_rearrangements_constants_and_activations():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 2, 3, 3))
    shuffle = [
        node("Reshape", ["x", "s5"], ["a"], "split"),
        node("Transpose", ["a"], ["b"], "swap", perm=[0, 2, 1, 3, 4]),
        node("Reshape", ["b", "s4"], ["shuffled"], "merge"),
    ]  # a channel shuffle (ShuffleNet): the conv reads the input's channels in the order 0, 2, 1, 3
    nodes = [
        node("Constant", [], ["w"], value=numpy_helper.from_array(w)),
        *shuffle,
        node("Conv", ["shuffled", "w"], ["c"], "conv", group=2),
        node("PRelu", ["c", "slope"], ["r"], "prelu"),
        node("Transpose", ["r"], ["t"], "hw", perm=[0, 1, 3, 2]),
        node("Shape", ["t"], ["shp"]),
        node("Gather", ["shp", "zero"], ["n"], axis=0),
        node("Unsqueeze", ["n", "zeros"], ["n1"]),
        node("Concat", ["n1", "minus1"], ["target"], axis=0),
        node("Reshape", ["t", "target"], ["flat"], "flatten"),
        node("MatMul", ["flat", "fc"], ["m"], "matmul"),
        node("Sub", ["m", "bias"], ["y"], "bias"),
    ]
    consts = {
        "s5": [1, 2, 2, 5, 5], "s4": [1, 4, 5, 5], "slope": np.full((4, 1, 1), 0.25),
        "fc": rng.normal(size=(36, 6)), "zero": np.array(0), "zeros": [0], "minus1": [-1],
    }  # fmt: skip
    graph = check_network(nodes, consts, {"bias": rng.normal(size=6)}, [1, 4, 5, 5])
    # the shuffle and the transposes add no nodes or edges: input, conv output, output
    assert graph.shapes == ((4, 5, 5), (4, 3, 3), (6,))
    # each of 4 outputs reads 2 (shuffled) channels with 9 taps at 9 positions; then the dense layer
    assert graph.num_edges() == 4 * 2 * 9 * 9 + 36 * 6
    assert graph.activations[1] == ("PRelu", True)


def test_constants_are_evaluated_at_the_models_opset():
    """Unsqueeze takes its axes as an attribute up to opset 12 (as torch 1.9 exported it), as an
    input from opset 13: shape arithmetic is evaluated at the model's opset."""
    nodes = [
        node("Shape", ["x"], ["shp"]),
        node("Gather", ["shp", "one"], ["n"], axis=0),
        node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        node("Concat", ["minus1", "n1"], ["target"], axis=0),
        node("Reshape", ["x", "target"], ["flat"]),
        node("MatMul", ["flat", "fc"], ["y"], "matmul"),
    ]
    fc = np.random.default_rng(4).normal(size=(6, 3))
    graph = check_linear(nodes, {"one": np.array(1), "minus1": [-1], "fc": fc}, [1, 6], opset=12)
    assert graph.shapes == ((6,), (3,))


@pytest.mark.parametrize(
    ("op", "attrs", "extra", "monotone"),
    [
        ("Relu", {}, {}, True),
        ("Sigmoid", {}, {}, True),
        ("Tanh", {}, {}, True),
        ("HardSigmoid", {"alpha": 0.3}, {}, True),
        ("HardSigmoid", {"alpha": -0.3}, {}, False),
        ("LeakyRelu", {"alpha": 0.1}, {}, True),
        ("LeakyRelu", {"alpha": -0.1}, {}, False),
        ("PRelu", {}, {"slope": np.array([0.2, -0.1, 0.3])}, False),
        ("Clip", {}, {"lo": np.array(0.0), "hi": np.array(6.0)}, True),
        ("Gelu", {}, {}, False),
        ("Mish", {}, {}, False),
    ],
)
def test_activation_monotonicity(op, attrs, extra, monotone):
    nodes = [node("Gemm", ["x", "w"], ["h"], "fc", transB=1), node(op, ["h", *extra], ["y"], "act", **attrs)]
    graph = from_onnx(_model(nodes, {"w": np.ones((3, 2)), **extra}, [1, 2], opset=20))
    assert graph.activations[-1] == (op, monotone)


def test_ceil_mode_pooling_matches_the_reference_shape():
    nodes = [node("MaxPool", ["x"], ["y"], "pool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)]
    graph = check_network(nodes, {}, {}, [1, 1, 6, 6])
    # windows at rows/cols 0-2, 2-4, 4-5: the last window holds only the 2 inputs inside the image
    assert graph.shapes[-1] == (1, 3, 3) and graph.num_edges() == (3 + 3 + 2) ** 2
    assert isinstance(graph.blocks[0], Pool)


def test_shared_values_preactivation_bn_and_merged_paths():
    """c1 is read raw and through a Relu (the Relu gets nodes of its own); BN after the Relu is a
    layer of per-channel edges; conv(bn) + bn merges two paths from one layer; Sub subtracts."""
    rng = np.random.default_rng(5)
    c = {
        "w1": rng.normal(size=(2, 2, 3, 3)), "w2": rng.normal(size=(2, 2, 3, 3)),
        "g": np.array([0.7, -1.3]), "zero": np.zeros(2), "v": np.array([0.5, 2.0]),
    }  # fmt: skip
    nodes = [
        node("Conv", ["x", "w1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r"], "relu"),
        node("BatchNormalization", ["r", "g", "zero", "zero", "v"], ["bn"], "bn"),
        node("Conv", ["bn", "w2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
        node("Add", ["c2", "bn"], ["y0"], "residual"),
        node("Sub", ["y0", "c1"], ["y"], "sub"),
    ]
    graph = check_network(nodes, c, {}, [1, 2, 4, 4])
    assert graph.names == ("x", "c1", "r", "bn", "y")
    assert [a.name for a in graph.activations] == ["identity", "identity", "Relu", "identity", "identity"]
    assert isinstance(blocks_into(graph, "bn")["r"], ChannelScale)  # BN scale: learned per-channel edges
    merged = blocks_into(graph, "y")["bn"]  # conv2 and the identity edges from bn are one block
    assert isinstance(merged, Conv2d)
    np.testing.assert_array_equal(np.asarray(merged.kernel)[:, :, 1, 1], c["w2"][:, :, 1, 1] + np.eye(2))
    np.testing.assert_array_equal(blocks_into(graph, "y")["c1"].weight, -1.0)  # Sub: a Skip of weight -1


def test_batchnorm_of_a_concatenation_makes_one_layer_per_source():
    """A DenseNet block: each layer reads BN → Relu → 1×1 Conv of the concatenation of the block's
    input and every earlier layer. The normalized concatenation is one layer per source, in the
    source's shape, so every layer of the block has one of two shapes (few compiled signatures);
    the graph is still the network."""
    rng = np.random.default_rng(21)
    c0, growth, hw = 3, 2, 4
    nodes, consts, feats = [], {}, ["x"]
    for k in range(3):
        cat, bn, r, y = f"cat{k}", f"bn{k}", f"r{k}", f"f{k}"
        width = c0 + growth * k
        consts |= {f"g{k}": rng.normal(size=width), f"v{k}": rng.uniform(0.5, 2, size=width),
                   f"z{k}": np.zeros(width), f"w{k}": rng.normal(size=(growth, width, 1, 1))}  # fmt: skip
        nodes += [
            node("Concat", feats, [cat], axis=1),
            node("BatchNormalization", [cat, f"g{k}", f"z{k}", f"z{k}", f"v{k}"], [bn], bn),
            node("Relu", [bn], [r]),
            node("Conv", [r, f"w{k}"], [y], f"conv{k}"),
        ]
        feats = [*feats, y]
    width = c0 + growth * 3
    consts |= {"gt": rng.normal(size=width), "vt": rng.uniform(0.5, 2, size=width), "zt": np.zeros(width),
               "wt": rng.normal(size=(2, width, 1, 1))}  # fmt: skip
    nodes += [  # the transition
        node("Concat", feats, ["all"], axis=1),
        node("BatchNormalization", ["all", "gt", "zt", "zt", "vt"], ["bnt"], "bnt"),
        node("Relu", ["bnt"], ["rt"]),
        node("Conv", ["rt", "wt"], ["t"], "convt"),
        node("AveragePool", ["t"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = check_network(nodes, consts, {}, [1, c0, hw, hw])
    assert set(graph.shapes[1:-1]) == {(c0, hw, hw), (growth, hw, hw)}  # no layer of a concatenation's width
    assert graph.names[3:5] == ("bn1:x", "bn1:f0")  # x, bn0 (x alone: one layer already), f0, …
    assert all(isinstance(graph.blocks[b], ChannelScale) for b in graph.incoming(graph.names.index("bn1:f0")))


# ---------------------------------------------------------------------- pooling


def _conv_then(pool_nodes, flatten=True, opset=18):
    nodes = [node("Conv", ["x", "w", "b"], ["c"], "conv", pads=[1, 1, 1, 1]), *pool_nodes]
    if flatten:
        nodes.append(node("Flatten", ["p"], ["f"], "flatten"))
    nodes.append(node("Gemm", ["f" if flatten else "p", "fc", "fb"], ["y"], "fc", transB=1))
    return nodes


@pytest.mark.parametrize(
    ("pool", "flatten", "opset"),
    [
        ([node("ReduceMean", ["c"], ["p"], "gap", axes=[2, 3], keepdims=1)], True, 17),
        ([node("ReduceMean", ["c", "axes"], ["p"], "gap", keepdims=0)], False, 18),
        ([node("GlobalAveragePool", ["c"], ["p"], "gap")], True, 18),
        ([node("ReduceSum", ["c", "axes"], ["p"], "gap", keepdims=1)], True, 13),
    ],
    ids=["ReduceMean-17", "ReduceMean-18-keepdims0", "GlobalAveragePool", "ReduceSum"],
)
def test_global_pooling_in_each_spelling(pool, flatten, opset):
    rng = np.random.default_rng(6)
    consts = {"w": rng.normal(size=(3, 2, 3, 3)), "fc": rng.normal(size=(4, 3)), "axes": [-1, -2]}
    nodes = _conv_then(pool, flatten, opset)
    graph = check_linear(nodes, {**consts, "b": np.zeros(3), "fb": np.zeros(4)}, [1, 2, 4, 4], opset=opset)
    assert graph.shapes == ((2, 4, 4), (3, 4, 4), (3, 1, 1), (4,))
    assert isinstance(blocks_into(graph, "p")["c"], Pool)
    check_network(
        nodes, consts, {"b": rng.normal(size=3), "fb": rng.normal(size=4)}, [1, 2, 4, 4], opset=opset
    )


def _adaptive_nodes(n_in: int, n_out: int):
    """Adaptive average pooling `n_in² -> n_out²` as torch's decomposition and the dynamo exporter
    write it: Transpose moving the batch axis, GatherND, Transpose back, Where masks, Gather + Add
    over the window taps, Div by the window sizes (ReduceMean over size-1 axes when no masks)."""
    i = np.arange(n_out)
    start, end = i * n_in // n_out, ((i + 1) * n_in + n_out - 1) // n_out
    taps = int((end - start).max())
    idx = np.minimum(start[:, None] + np.arange(taps), n_in - 1)  # (n_out, taps)
    indices = np.stack(np.broadcast_arrays(idx[:, :, None, None], idx[None, None]), axis=-1)
    consts = {"idx": indices, "zero": np.zeros(()), "t0": np.array(0), "t1": np.array(1)}
    nodes = [
        node("Transpose", ["c"], ["hw_first"], "to_front", perm=[2, 3, 0, 1]),
        node("GatherND", ["hw_first", "idx"], ["g"], "gather"),
        node("Transpose", ["g"], ["v"], "back", perm=[4, 5, 0, 1, 2, 3]),
    ]
    if taps == 1:
        nodes.append(node("ReduceMean", ["v", "axes"], ["p"], "mean", keepdims=0))
        return nodes, {**consts, "axes": [-3, -1]}
    outside = np.arange(taps) >= (end - start)[:, None]
    consts.update(
        mask_h=outside[:, :, None, None], mask_w=outside, count=np.outer(end - start, end - start) * 1.0
    )
    nodes += [
        node("Where", ["mask_h", "zero", "v"], ["m1"], "mask_h"),
        node("Where", ["mask_w", "zero", "m1"], ["m"], "mask_w"),
        node("Gather", ["m", "t0"], ["a0"], "tap_h0", axis=3),
        node("Gather", ["m", "t1"], ["a1"], "tap_h1", axis=3),
        node("Add", ["a0", "a1"], ["a"], "sum_h"),
        node("Gather", ["a", "t0"], ["b0"], "tap_w0", axis=4),
        node("Gather", ["a", "t1"], ["b1"], "tap_w1", axis=4),
        node("Add", ["b0", "b1"], ["s"], "sum_w"),
        node("Div", ["s", "count"], ["p"], "mean"),
    ]
    return nodes, consts


@pytest.mark.parametrize(("n_in", "n_out"), [(1, 3), (2, 3)], ids=["1->3 replicate", "2->3 adaptive"])
def test_adaptive_average_pooling_written_with_gathers(n_in, n_out):
    rng = np.random.default_rng(7)
    pool, consts = _adaptive_nodes(n_in, n_out)
    nodes = [*_conv_then(pool)]
    consts.update(w=rng.normal(size=(3, 2, 3, 3)), fc=rng.normal(size=(4, 3 * n_out**2)))
    graph = check_linear(nodes, {**consts, "b": np.zeros(3), "fb": np.zeros(4)}, [1, 2, n_in, n_in])
    # pure replication adds no layer (the Gemm reads repeated nodes); the masked taps are summed
    # by Sparse edges of weight 1 (over rows, into a layer of row sums), then 1/size (over columns)
    if n_in == 1:
        assert graph.shapes == ((2, 1, 1), (3, 1, 1), (4,))
    else:
        assert graph.shapes == ((2, 2, 2), (3, 2, 2), (3, 3, 3, 2), (3, 3, 3), (4,))
        rows, cols = blocks_into(graph, "a")["c"], blocks_into(graph, "p")["a"]
        assert isinstance(rows, Sparse) and isinstance(cols, Sparse)
        assert np.all(np.asarray(rows.weight) == 1) and np.all(np.asarray(cols.weight) > 0)


# ---------------------------------------------------------------------- elementwise products


def _activated(spelling):
    """Conv-BN, then `spelling` (nodes computing `a` from `n`), then a 1x1 Conv."""
    return [
        node("Conv", ["x", "w1", "b1"], ["c"], "conv1", pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "g", "beta", "mu", "var"], ["n"], "bn"),
        *spelling,
        node("Conv", ["a", "w2"], ["y"], "conv2"),
    ]


# name -> (recorded activation, nodes computing `a` from `n`, whether the reference evaluator
# computes in float32: its Erf is `np.vectorize(math.erf, otypes=["f"])` and attributes such as
# HardSigmoid's alpha = 1/6 are float32, so those agree to float32 rounding only)
SPELLINGS = {
    "silu": ("silu", [node("Sigmoid", ["n"], ["s"]), node("Mul", ["n", "s"], ["a"])], False),
    "hard_swish HardSigmoid": (
        "hard_swish",
        [node("HardSigmoid", ["n"], ["s"], alpha=1 / 6, beta=0.5), node("Mul", ["n", "s"], ["a"])],
        True,
    ),
    "hard_swish Clip/6 inside": (
        "hard_swish",
        [
            node("Add", ["n", "three"], ["t"]),
            node("Clip", ["t", "zero", "six"], ["r6"]),
            node("Div", ["r6", "six"], ["d"]),
            node("Mul", ["n", "d"], ["a"]),
        ],
        False,
    ),
    "hard_swish Relu6 /6 outside": (
        "hard_swish",
        [
            node("Add", ["three", "n"], ["t"]),
            node("Clip", ["t", "zero", "six"], ["r6"]),
            node("Mul", ["r6", "n"], ["m"]),
            node("Div", ["m", "six"], ["a"]),
        ],
        False,
    ),
    "HardSwish": ("HardSwish", [node("HardSwish", ["n"], ["a"])], True),
    "gelu Erf": (
        "gelu",
        [
            node("Div", ["n", "sqrt2"], ["d"]),
            node("Erf", ["d"], ["e"]),
            node("Add", ["e", "one"], ["p"]),
            node("Mul", ["n", "p"], ["m"]),
            node("Mul", ["m", "half"], ["a"]),
        ],
        True,
    ),
    "Gelu": ("Gelu", [node("Gelu", ["n"], ["a"])], True),
    "square": ("Mul(x, x)", [node("Mul", ["n", "n"], ["a"])], False),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_x_times_f_of_x_is_one_activation_of_the_layer(spelling):
    rng = np.random.default_rng(8)
    consts = {
        "w1": rng.normal(size=(3, 2, 3, 3)), "w2": rng.normal(size=(2, 3, 1, 1)), "g": rng.normal(size=3),
        "var": rng.uniform(0.5, 2, 3), "three": 3.0, "zero": 0.0, "six": 6.0, "sqrt2": math.sqrt(2),
        "one": 1.0, "half": 0.5,
    }  # fmt: skip
    biases = {"b1": rng.normal(size=3), "beta": rng.normal(size=3), "mu": rng.normal(size=3)}
    name, nodes, float32 = SPELLINGS[spelling]
    tol = {"rtol": 1e-6, "atol": 1e-7} if float32 else TOL
    graph = check_network(_activated(nodes), consts, biases, [1, 2, 4, 4], tol=tol, opset=20)
    assert graph.num_layers == 3  # input, conv1 (BN folded, the activation recorded), conv2
    assert graph.activations[1] == (name, False)
    (conv1,) = blocks_into(graph, graph.names[1]).values()
    scale = consts["g"] / np.sqrt(consts["var"] + 1e-5)
    np.testing.assert_allclose(conv1.kernel, consts["w1"] * scale[:, None, None, None], rtol=1e-15)


def _se(gate: str, act: str, hw: int):
    """Conv, `act` (read by the gate branch and the gated product), a squeeze-excitation gate
    through 1x1 Convs or Gemms, the gated product, a 1x1 Conv."""
    x_act = (
        [node("Relu", ["c"], ["h"])]
        if act == "Relu"
        else [node("Sigmoid", ["c"], ["sg"]), node("Mul", ["c", "sg"], ["h"])]
    )
    branch = {
        "conv": [
            node("ReduceMean", ["h", "axes"], ["q"], "squeeze", keepdims=1),
            node("Conv", ["q", "s1", "sb1"], ["e1"], "fc1"),
            node("Relu", ["e1"], ["r1"]),
            node("Conv", ["r1", "s2", "sb2"], ["e2"], "fc2"),
            node("Sigmoid", ["e2"], ["g"], "scale"),
            node("Mul", ["h", "g"], ["gated"], "excite"),
        ],
        "gemm": [
            node("GlobalAveragePool", ["h"], ["q"], "squeeze"),
            node("Flatten", ["q"], ["qf"]),
            node("Gemm", ["qf", "f1", "sb1"], ["e1"], "fc1", transB=1),
            node("Relu", ["e1"], ["r1"]),
            node("Gemm", ["r1", "f2", "sb2"], ["e2"], "fc2", transB=1),
            node("HardSigmoid", ["e2"], ["gs"], "scale", alpha=0.25, beta=0.5),
            node("Unsqueeze", ["gs", "hw_axes"], ["g"]),
            node("Mul", ["g", "h"], ["gated"], "excite"),
        ],
        "expand": [  # the gate broadcast explicitly: a view that repeats the gate's nodes
            node("GlobalAveragePool", ["h"], ["q"], "squeeze"),
            node("Conv", ["q", "s1", "sb1"], ["e1"], "fc1"),
            node("Relu", ["e1"], ["r1"]),
            node("Conv", ["r1", "s2", "sb2"], ["e2"], "fc2"),
            node("Sigmoid", ["e2"], ["gs"], "scale"),
            node("Shape", ["h"], ["hs"]),
            node("Expand", ["gs", "hs"], ["g"]),
            node("Mul", ["h", "g"], ["gated"], "excite"),
        ],
    }[gate]
    k = 3 if hw > 1 else 1
    nodes = [
        node("Conv", ["x", "w1", "b1"], ["c"], "conv", pads=[k // 2] * 4),
        *x_act,
        *branch,
        node("Conv", ["gated", "w3"], ["y"], "out"),
    ]
    return nodes, k


@pytest.mark.parametrize("hw", [4, 1], ids=["4x4", "1x1"])
@pytest.mark.parametrize("act", ["Relu", "silu"])
@pytest.mark.parametrize("gate", ["conv", "gemm", "expand"])
def test_squeeze_excitation_gate(gate, act, hw):
    rng = np.random.default_rng(9)
    nodes, k = _se(gate, act, hw)
    consts = {
        "w1": rng.normal(size=(4, 2, k, k)), "s1": rng.normal(size=(2, 4, 1, 1)),
        "s2": rng.normal(size=(4, 2, 1, 1)), "f1": rng.normal(size=(2, 4)), "f2": rng.normal(size=(4, 2)),
        "w3": rng.normal(size=(3, 4, 1, 1)), "axes": [2, 3], "hw_axes": [2, 3],
    }  # fmt: skip
    biases = {"b1": rng.normal(size=4), "sb1": rng.normal(size=2), "sb2": rng.normal(size=4)}
    graph = check_network(nodes, consts, biases, [1, 2, hw, hw])
    # the gated layer: identity edges (weight 1) from h, broadcast edges (weight 1) from the gate;
    # the gate branch keeps its own learned edges; the gate records whether h is non-negative
    assert graph.activations[graph.names.index("gated")] == ("gate", act == "Relu")
    assert graph.activations[graph.names.index("c")].name == act
    assert graph.activations[graph.names.index("e2")].name in ("Sigmoid", "HardSigmoid")
    into = blocks_into(graph, "gated")
    assert set(into) == {"c", "e2"} and isinstance(into["c"], Skip)
    assert isinstance(into["e2"], Broadcast) or hw == 1  # at 1x1 the gate has the gated shape
    assert all(float(b.weight) == 1 and not b.learned for b in into.values())
    assert all(b.learned for b in (*blocks_into(graph, "e1").values(), *blocks_into(graph, "e2").values()))
    first = act if act != "Relu" else "HardSigmoid" if gate == "gemm" else "gate"  # not evaluable
    with pytest.raises(ValueError, match=f"activation '{first}', which cannot be evaluated"):
        GraphFunction(graph)  # the near-monotonicity study reports frustration only


# ---------------------------------------------------------------------- refusals


def _two_heads(op_nodes):
    nodes = [
        node("Gemm", ["x", "wa"], ["a"], "fa", transB=1),
        node("Gemm", ["x", "wb"], ["b"], "fb", transB=1),
        *op_nodes,
    ]
    return {
        "wa": np.ones((4, 4)),
        "wb": np.ones((4, 4)),
        "vec": np.ones((1, 4)),
        "token": np.ones((1, 1, 4)),
    }, nodes


@pytest.mark.parametrize(
    ("op_nodes", "message"),
    [
        (
            [node("Reshape", ["b", "shape"], ["kt"]), node("MatMul", ["a", "kt"], ["y"], "scores")],
            r"node 'scores' \(MatMul\): MatMul of two tensors computed from the input \('a' and 'kt'\): "
            r"a bilinear product has no fixed edge weights",
        ),
        (
            [node("Mul", ["a", "b"], ["y"], "product")],
            r"node 'product' \(Mul\): Mul of two tensors computed from the input \('a' and 'b'.*neither a "
            r"function of one tensor nor a gate.*bilinear product",
        ),
        (
            [node("Div", ["a", "b"], ["y"], "ratio")],
            r"node 'ratio' \(Div\): Div of two tensors computed from the input.*quotient",
        ),
        (
            [node("Div", ["vec", "a"], ["y"], "inverse")],
            r"node 'inverse' \(Div\): a constant divided by a computed tensor",
        ),
        (
            [node("Unsqueeze", ["a", "zero"], ["t"]), node("Concat", ["token", "t"], ["y"], "cls", axis=1)],
            r"node 'cls' \(Concat\): input 0 \('token'\) is a non-zero constant joined to computed tensors.*"
            r"class token",
        ),
        (
            [node("Round", ["a"], ["y"], "round")],
            r"node 'round' \(Round\): unsupported op 'Round'; supported ops: .*ConvTranspose.*Resize",
        ),
    ],
    ids=["attention", "product", "quotient", "reciprocal", "class token", "unsupported"],
)
def test_products_and_constants_without_a_signed_graph_are_refused(op_nodes, message):
    consts, nodes = _two_heads(op_nodes)
    consts["shape"] = [4, 1]
    with pytest.raises(ValueError, match=message):
        from_onnx(_model(nodes, {**consts, "zero": [0]}, [1, 4]))


def test_refusals_of_gates_padding_resizing_and_token_sequences():
    rng = np.random.default_rng(10)
    w = {"w": rng.normal(size=(2, 2, 1, 1)), "axes": [2, 3]}
    signed_gate = [
        node("Conv", ["x", "w"], ["c"]),
        node("ReduceMean", ["c", "axes"], ["g"], keepdims=1),
        node("Mul", ["c", "g"], ["y"], "excite"),
    ]
    with pytest.raises(ValueError, match=r"node 'excite' \(Mul\): .*a gate must be non-negative"):
        from_onnx(_model(signed_gate, w, [1, 2, 3, 3]))
    reflect = [node("Pad", ["x", "pads"], ["y"], "pad", mode="reflect")]
    with pytest.raises(ValueError, match=r"node 'pad' \(Pad\): only zero padding.*'reflect'"):
        from_onnx(_model(reflect, {"pads": [0, 0, 1, 1, 0, 0, 1, 1]}, [1, 1, 3, 3]))
    one = [node("Pad", ["x", "pads", "one"], ["y"], "pad")]
    with pytest.raises(ValueError, match=r"only zero padding.*value 1"):
        from_onnx(_model(one, {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "one": 1.0}, [1, 1, 3, 3]))
    cubic = [node("Resize", ["x", "", "scales"], ["y"], "up", mode="cubic")]
    with pytest.raises(ValueError, match=r"node 'up' \(Resize\): only nearest and linear"):
        from_onnx(_model(cubic, {"scales": [1.0, 1.0, 2.0, 2.0]}, [1, 1, 3, 3]))
    tokens = [node("MatMul", ["x", "w"], ["y"], "qkv")]
    with pytest.raises(ValueError, match=r"node 'qkv' \(MatMul\): .*\(e.g. a sequence of tokens\)"):
        from_onnx(_model(tokens, {"w": rng.normal(size=(4, 6))}, [1, 5, 4]))
    lstm = [node("LSTM", ["x", "W", "R"], ["y"], "lstm", hidden_size=2)]
    with pytest.raises(ValueError, match=r"node 'lstm' \(LSTM\): .*recurrent layer multiplies its gates"):
        from_onnx(_model(lstm, {"W": rng.normal(size=(1, 8, 4)), "R": rng.normal(size=(1, 8, 2))}, [1, 1, 4]))
    quantized = [node("DynamicQuantizeLinear", ["x"], ["y", "scale", "zero"], "quant")]
    with pytest.raises(ValueError, match=r"node 'quant' \(DynamicQuantizeLinear\): .*import the float model"):
        from_onnx(_model(quantized, {}, [1, 4]))


# ---------------------------------------------------------------------- output heads


def _classifier(head_nodes, rng, *, bias: bool = True):
    """Conv, Relu, global pooling and a Gemm to the logits (biased unless not `bias`), then
    `head_nodes`."""
    consts = {
        "w": rng.normal(size=(3, 2, 3, 3)), "fc": rng.normal(size=(4, 3)), "shape": [1, -1], "k": [2],
        "b": rng.normal(size=3) if bias else np.zeros(3), "fb": rng.normal(size=4) if bias else np.zeros(4),
    }  # fmt: skip
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], "conv", pads=[1, 1, 1, 1]),
        node("Relu", ["c"], ["h"], "relu"),
        node("GlobalAveragePool", ["h"], ["g"], "gap"),
        node("Reshape", ["g", "shape"], ["flat"], "flatten"),
        node("Gemm", ["flat", "fc", "fb"], ["logits"], "fc", transB=1),
        *head_nodes,
    ]
    return nodes, consts


def check_head(head_nodes, outputs, head: str, **kw):
    """The graph of a classifier ending in `head_nodes` (outputs `outputs`) is the graph of its
    logits, with `head` as its output head; evaluated as a network (biases zeroed) it computes the
    reference evaluator's logits."""
    rng = np.random.default_rng(11)
    nodes, consts = _classifier(head_nodes, rng)
    graph = from_onnx(_model(nodes, consts, [1, 2, 5, 5], outputs=outputs, **kw))
    assert graph.metadata == (("output_head", head),)
    cut_by_hand = from_onnx(_model(nodes[:5], consts, [1, 2, 5, 5], outputs=("logits",), **kw))
    assert eqx.tree_equal(dataclasses.replace(graph, metadata=()), cut_by_hand)
    zero = _model(*_classifier(head_nodes, np.random.default_rng(11), bias=False), [1, 2, 5, 5],
                  outputs=outputs, **kw)  # fmt: skip
    x = rng.normal(size=(1, 2, 5, 5))
    (logits,) = ReferenceEvaluator(zero).run(["logits"], {"x": x})
    np.testing.assert_allclose(evaluate(graph, x[0]), logits.ravel(), **TOL)
    return graph


@pytest.mark.parametrize(
    ("op", "attrs", "opset"),
    [("Softmax", {}, 18), ("Softmax", {"axis": 1}, 11), ("LogSoftmax", {"axis": -1}, 18)],
)
def test_softmax_and_log_softmax_heads_are_set_aside(op, attrs, opset):
    check_head([node(op, ["logits"], ["y"], "head", **attrs)], ("y",), f"{op} 'head'", opset=opset)
    # a model that also outputs its logits has the same graph
    both = [node(op, ["logits"], ["y"], "head", **attrs)]
    check_head(both, ("logits", "y"), f"{op} 'head'", opset=opset)


def test_post_processing_is_cut_with_the_head():
    nodes = [
        node("Softmax", ["logits"], ["p"], "probs"),
        node("Identity", ["p"], ["probs_out"]),
        node("ArgMax", ["p"], ["label"], "label", keepdims=0),
        node("TopK", ["logits", "k"], ["values", "indices"], "top"),
        node("Reshape", ["values", "shape"], ["top_flat"], "top_flat"),
    ]
    check_head(
        nodes, ("probs_out", "label", "top_flat", "indices"), "Softmax 'probs', ArgMax 'label', TopK 'top'"
    )


def test_heads_inside_the_network_are_refused():
    rng = np.random.default_rng(12)
    nodes, consts = _classifier(
        [node("Softmax", ["logits"], ["p"], "attn"), node("Gemm", ["p", "fc2"], ["y"], "fc2", transB=1)], rng
    )
    with pytest.raises(
        ValueError,
        match=r"node 'attn' \(Softmax\): Softmax inside the network \(its output reaches node 'fc2' "
        r"\(Gemm\)\): it divides each entry by a sum of exponentials over a whole axis",
    ):
        from_onnx(_model(nodes, {**consts, "fc2": np.ones((2, 4))}, [1, 2, 5, 5]))
    selected = [
        node("ArgMax", ["logits"], ["i"], "pick"),
        node("Cast", ["i"], ["f"], to=DOUBLE),
        node("Add", ["logits", "f"], ["y"], "mix"),
    ]
    nodes, consts = _classifier(selected, rng)
    with pytest.raises(
        ValueError,
        match=r"node 'pick' \(ArgMax\): ArgMax inside the network \(its output reaches node 'mix' "
        r"\(Add\)\): it selects entries by their computed values",
    ):
        from_onnx(_model(nodes, consts, [1, 2, 5, 5]))


def _dfl_detector(weights):
    """A detector head as YOLOv8 exports it: box logits over `n = 4` bins per side, a Softmax over
    the bins, a Conv with `weights` (the bin values 0..n-1: the expected distance), anchors from
    the feature map's Shape, a stride, and class Sigmoids concatenated with the boxes."""
    rng = np.random.default_rng(13)
    consts = {
        "wb": rng.normal(size=(16, 2, 3, 3)), "wc": rng.normal(size=(3, 2, 3, 3)), "bins": weights,
        "s4": [1, 4, 4, 16], "s3": [1, 4, 16], "c3": [1, 3, 16], "two": 2, "zero": 0.0, "one": 1.0,
        "lo": [0], "mid": [2], "hi": [4], "ax": [1], "stride": 8.0, "half": 0.5,
    }  # fmt: skip
    nodes = [
        node("Conv", ["x", "wb"], ["box"], "box", pads=[1, 1, 1, 1]),
        node("Conv", ["x", "wc"], ["cls"], "cls", pads=[1, 1, 1, 1]),
        node("Reshape", ["box", "s4"], ["r"]),
        node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
        node("Softmax", ["t"], ["p"], "dfl", axis=1),
        node("Conv", ["p", "bins"], ["e"], "expectation"),
        node("Reshape", ["e", "s3"], ["d"]),
        node("Slice", ["d", "lo", "mid", "ax"], ["lt"]),
        node("Slice", ["d", "mid", "hi", "ax"], ["rb"]),
        node("Reshape", ["cls", "c3"], ["c"]),
        node("Shape", ["c"], ["shp"]),
        node("Gather", ["shp", "two"], ["w"], axis=0),
        node("Cast", ["w"], ["wf"], to=DOUBLE),
        node("Range", ["zero", "wf", "one"], ["cols"]),
        node("Add", ["cols", "half"], ["anchor"]),
        node("Sub", ["anchor", "lt"], ["x1"]),
        node("Add", ["anchor", "rb"], ["x2"]),
        node("Concat", ["x1", "x2"], ["xyxy"], axis=1),
        node("Mul", ["xyxy", "stride"], ["boxes"]),
        node("Sigmoid", ["c"], ["scores"], "scores"),
        node("Concat", ["boxes", "scores"], ["y"], "out", axis=1),
    ]
    return _model(nodes, consts, [1, 2, 4, 4])


def test_distribution_focal_loss_decoding_is_post_processing():
    """The Softmax over the bins, their expectation (a Conv with weights 0..n-1), anchor and
    stride arithmetic and the final Concat are set aside: the graph ends at the box logits (the
    Softmax's input) and the class scores, and evaluated as a network it computes them."""
    model = _dfl_detector(np.arange(4.0).reshape(1, 4, 1, 1))
    graph = from_onnx(model)
    assert dict(graph.metadata) == {
        "output_head": "Softmax 'dfl'",
        "outputs": "'output': t (4, 4, 16): nodes 0..255; scores (3, 16): nodes 256..303",
    }
    x = np.random.default_rng(14).normal(size=(1, 2, 4, 4))
    expected = np.concatenate([v.ravel() for v in ReferenceEvaluator(model).run(["t", "scores"], {"x": x})])
    np.testing.assert_allclose(evaluate(graph, x[0]), expected, **TOL)
    # weights that are not the bins 0..n-1 are a learned layer after the Softmax: refused
    with pytest.raises(
        ValueError,
        match=r"node 'dfl' \(Softmax\): Softmax inside the network \(its output reaches node "
        r"'expectation' \(Conv\)\)",
    ):
        from_onnx(_dfl_detector(np.array([0.0, 1.0, 2.0, 4.0]).reshape(1, 4, 1, 1)))


def test_bad_inputs_give_clear_errors(tmp_path):
    def gemm_then(op, w=None):
        nodes = [node("Gemm", ["x", "w"], ["h"], "fc", transB=1), node(op, ["h"], ["y"], "last")]
        return _model(nodes, {"w": np.ones((3, 2)) if w is None else w}, [1, 2], shapes=[[1, 3]])

    with pytest.raises(  # found by shape inference, before any node is made
        ValueError, match=r"^ONNX node 'fc' \(Gemm\): ONNX shape inference: Dimension mismatch .* 4 and 2$"
    ):
        from_onnx(gemm_then("Relu", w=np.ones((3, 4))))
    add = [node("Gemm", ["x", "w"], ["h"], "fc", transB=1), node("Add", ["h", "x"], ["y"], "skip")]
    with pytest.raises(
        ValueError, match=r"^ONNX node 'skip' \(Add\): ONNX shape inference: Incompatible dimensions$"
    ):
        from_onnx(_model(add, {"w": np.ones((3, 2))}, [1, 2], shapes=[[1, 3]]))
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
    with pytest.raises(ValueError, match="input_shape applies to ONNX models only"):
        load_graph(tmp_path / "net.npz", input_shape=(1, 2))


def _padded_cnn(pads, pooled: bool):
    """A 24x24 CNN whose second convolution has `pads`, then (`pooled`: global average pooling)
    flattened into a Gemm with a weight of shape (10, 4 · 24 · 24) (or (10, 4))."""
    rng = np.random.default_rng(17)
    pool = [node("GlobalAveragePool", ["r2"], ["g"])] if pooled else [node("Identity", ["r2"], ["g"])]
    nodes = [
        node("Conv", ["x", "k1"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        node("Relu", ["c1"], ["r1"]),
        node("Conv", ["r1", "k2"], ["c2"], "conv2", pads=pads),
        node("Relu", ["c2"], ["r2"]),
        *pool,
        node("Flatten", ["g"], ["flat"]),
        node("Gemm", ["flat", "w"], ["y"], "fc", transB=1),
    ]
    consts = {"k1": rng.normal(size=(4, 1, 3, 3)), "k2": rng.normal(size=(4, 4, 1, 1)),
              "w": rng.normal(size=(10, 4 if pooled else 4 * 24 * 24))}  # fmt: skip
    return _model(nodes, consts, [1, 1, 24, 24], shapes=[[1, 10]])


def test_shapes_are_checked_before_anything_is_allocated():
    """A pad of 10^6 makes the flattened tensor 96,002,304 values long: the Gemm's weight does not
    fit it, which shape inference finds before any node is made; with a global pooling before the
    Gemm, the import's estimate exceeds a small budget, naming the largest tensor."""
    with pytest.raises(
        ValueError, match=r"^ONNX node 'fc' \(Gemm\): ONNX shape inference: .*2304 and 96002304$"
    ):
        from_onnx(_padded_cnn([0, 0, 0, 10**6], pooled=False))
    with pytest.raises(
        ValueError,
        match=r"\(its largest tensor: the output of ONNX node 'conv2' \(Conv\), shape \(1, 4, 24, 1000024\), "
        r"96,002,304 values\) needs about [0-9.]+ GB of memory \(estimate\), 1.07 GB allowed by "
        r"max_memory=1073741824",
    ):
        from_onnx(_padded_cnn([0, 0, 0, 10**6], pooled=True), max_memory=2**30)


def test_onnx_is_optional(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxflow\[onnx\]'"):
        from_onnx("model.onnx")


# ---------------------------------------------------------------------- channels


SPLITS = {  # the reference's BatchNormalization is off below opset 14
    "Split-14": (14, [node("Split", ["a", "halves"], ["a1", "a2"], axis=1)]),
    "Split-18": (18, [node("Split", ["a"], ["a1", "a2"], axis=1, num_outputs=2)]),
    "Slice": (  # as the legacy exporter writes it: bounds from shape arithmetic
        18,
        [
            node("Shape", ["a"], ["shape"]),
            node("Gather", ["shape", "one"], ["c"]),
            node("Div", ["c", "two"], ["half"]),
            node("Slice", ["a", "zero", "half", "one"], ["a1"]),
            node("Slice", ["a", "half", "c", "one"], ["a2"]),
        ],
    ),
}


@pytest.mark.parametrize("split", SPLITS)
def test_channel_split_concat_and_shuffle_add_no_edges(split):
    """A ShuffleNet unit: Split (or Slices), a branch on one half, Concat, channel shuffle
    (Reshape, Transpose, Reshape), BatchNormalization on the shuffled concatenation, 1x1 Conv."""
    rng = np.random.default_rng(11)
    opset, halves = SPLITS[split]
    nodes = [
        node("Conv", ["x", "w0"], ["a"], "a"),
        *halves,
        node("Conv", ["a2", "wb"], ["cb"], "branch", pads=[1, 1, 1, 1]),
        node("Relu", ["cb"], ["r"]),
        node("Concat", ["a1", "r"], ["cat"], axis=1),
        node("Reshape", ["cat", "s5"], ["s"]),
        node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
        node("Reshape", ["t", "s4"], ["sh"]),
        node("BatchNormalization", ["sh", "g", "beta", "mu", "var"], ["bn"], "bn"),
        node("Conv", ["bn", "w1"], ["y"], "out"),
    ]
    consts = {
        "w0": rng.normal(size=(4, 2, 1, 1)), "wb": rng.normal(size=(2, 2, 3, 3)),
        "w1": rng.normal(size=(3, 4, 1, 1)), "halves": [2, 2], "zero": [0], "one": [1], "two": [2],
        "s5": [1, 2, 2, 3, 3], "s4": [1, 4, 3, 3],
        "g": rng.normal(size=4), "var": rng.uniform(0.5, 2, 4),
    }  # fmt: skip
    graph = check_network(nodes, consts, {"beta": rng.normal(size=4), "mu": rng.normal(size=4)}, [1, 2, 3, 3],
                          opset=opset)  # fmt: skip
    assert graph.names == ("x", "a", "cb", "bn", "y")  # Split, Concat, shuffle: no layers
    into = blocks_into(graph, "bn")  # the BN on the concatenation: per-channel edges, O(C) each
    assert all(isinstance(b, ChannelScale) for b in into.values()) and set(into) == {"a", "cb"}
    # shuffled order 0, 2, 1, 3 of [a1 (a: 0, 1), r (cb: 0, 1)]: a's channels 0, 1 -> 0, 2
    np.testing.assert_array_equal([into["a"].src, into["a"].dst, into["cb"].dst], [[0, 1], [0, 2], [1, 3]])
    scale = consts["g"] / np.sqrt(consts["var"] + 1e-5)
    np.testing.assert_allclose(into["a"].scale, scale[[0, 2]], rtol=1e-15)


def test_focus_space_to_depth_is_read_through_a_route_layer():
    """YOLOv5's Focus: four stride-2 Slices concatenated on channels move nodes across positions,
    so the Conv (and a pool) reading them read a layer of copies, fed by positive unit edges."""
    rng = np.random.default_rng(15)
    starts = {"00": [0, 0], "10": [1, 0], "01": [0, 1], "11": [1, 1]}
    slices = [node("Slice", ["x", f"s{k}", "end", "axes", "steps"], [f"q{k}"]) for k in starts]
    nodes = [
        *slices,
        node("Concat", [f"q{k}" for k in starts], ["focus"], axis=1),
        node("Conv", ["focus", "w"], ["c"], "conv", pads=[1, 1, 1, 1]),
        node("Relu", ["c"], ["r"]),
        node("MaxPool", ["focus"], ["m"], "pool", kernel_shape=[2, 2]),
        node("Conv", ["m", "w2"], ["c2"], "conv2"),
        node("Add", ["r", "c2"], ["y"], "sum"),
    ]
    consts = {
        **{f"s{k}": v for k, v in starts.items()}, "end": [10**9, 10**9], "axes": [2, 3], "steps": [2, 2],
        "w": rng.normal(size=(3, 8, 3, 3)), "w2": rng.normal(size=(3, 8, 2, 2)),
    }  # fmt: skip
    graph = check_network(nodes, consts, {}, [1, 2, 6, 6], opset=18)
    (route,) = blocks_into(graph, "c:routed").values()
    assert isinstance(route, Route) and not route.learned and float(route.weight) == 1
    assert graph.shapes[graph.names.index("c:routed")] == (8, 3, 3)
    assert set(blocks_into(graph, "c")) == {"c:routed"}
    assert set(blocks_into(graph, "m")) == {"m:routed"}


def test_outputs_that_are_parts_of_layers_end_in_a_layer_of_copies():
    """A head Conv split into class scores (through a Sigmoid) and box regressions, both outputs
    as PicoDet exports them: the output layer copies the outputs' nodes, in output order."""
    rng = np.random.default_rng(16)
    nodes = [
        node("Conv", ["x", "w"], ["c"], "head"),
        node("Split", ["c", "sizes"], ["cls", "reg"], axis=1),
        node("Sigmoid", ["cls"], ["s"], "scores"),
        node("Reshape", ["s", "flat2"], ["s2"]),
        node("Transpose", ["s2"], ["y1"], perm=[0, 2, 1]),
        node("Reshape", ["reg", "flat3"], ["r2"]),
        node("Transpose", ["r2"], ["y2"], perm=[0, 2, 1]),
    ]
    consts = {"w": rng.normal(size=(5, 2, 1, 1)), "sizes": [2, 3], "flat2": [1, 2, 9], "flat3": [1, 3, 9]}
    graph = check_network(nodes, consts, {}, [1, 2, 3, 3], outputs=("y1", "y2"))
    assert dict(graph.metadata) == {"outputs": "'output': y1 (9, 2): nodes 0..17; y2 (9, 3): nodes 18..44"}
    into = blocks_into(graph, "output")
    assert all(isinstance(b, ChannelRoute | Route | Sparse) and not b.learned for b in into.values())


def test_pad_folds_into_the_next_window():
    rng = np.random.default_rng(12)
    consts = {"w": rng.normal(size=(3, 2, 3, 3)), "pads": [0, 0, 1, 2, 0, 0, 1, 0], "zero": 0.0}
    padded = [node("Pad", ["x", "pads"], ["p"]), node("Conv", ["p", "w"], ["y"], "y")]
    direct = [node("Conv", ["x", "w"], ["y"], "y", pads=[1, 2, 1, 0])]
    graph = check_linear(padded, consts, [1, 2, 4, 4])
    assert eqx.tree_equal(graph, from_onnx(_model(direct, consts, [1, 2, 4, 4])))
    with_value = [node("Pad", ["x", "pads", "zero"], ["p"]), node("Conv", ["p", "w"], ["y"], "y")]
    assert eqx.tree_equal(graph, from_onnx(_model(with_value, consts, [1, 2, 4, 4], opset=11)))
    # zero padding counts in an average pool's divisor: as count_include_pad=1
    pool = [node("Pad", ["x", "pads"], ["p"]), node("AveragePool", ["p"], ["y"], "y", kernel_shape=[2, 2])]
    counted = [
        node("AveragePool", ["x"], ["y"], "y", kernel_shape=[2, 2], pads=[1, 2, 1, 0], count_include_pad=1)
    ]
    assert eqx.tree_equal(
        check_linear(pool, consts, [1, 2, 4, 4]), from_onnx(_model(counted, {}, [1, 2, 4, 4]))
    )
    # padding read by a sum: a layer with the padded shape (its border has no in-edges)
    summed = [node("Pad", ["x", "pads"], ["p"]), node("Add", ["p", "p"], ["y"], "y")]
    assert check_linear(summed, consts, [1, 2, 4, 4]).shapes == ((2, 4, 4), (2, 6, 6))


@pytest.mark.parametrize(
    "attrs",
    [
        {"mode": "nearest"},
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        {"mode": "linear"},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    ],
    ids=["nearest", "nearest-asymmetric-floor", "linear", "linear-align_corners", "linear-pytorch"],
)
@pytest.mark.parametrize("by", ["scales", "sizes"])
def test_resize_is_positive_interpolation_edges(attrs, by):
    rng = np.random.default_rng(13)
    inputs = ["c", "", "scales"] if by == "scales" else ["c", "", "", "sizes"]
    nodes = [
        node("Conv", ["x", "w"], ["c"]),
        node("Resize", inputs, ["r"], "up", **attrs),
        node("Conv", ["r", "w2"], ["y"]),
    ]
    consts = {"w": rng.normal(size=(2, 2, 1, 1)), "w2": rng.normal(size=(1, 2, 2, 2)),
              "scales": [1.0, 1.0, 2.0, 1.5], "sizes": [1, 2, 5, 4]}  # fmt: skip
    graph = check_linear(nodes, consts, [1, 2, 3, 3])
    (edges,) = blocks_into(graph, "r").values()
    assert isinstance(edges, Sparse) and np.all(np.asarray(edges.weight) > 0)
    np.testing.assert_allclose(np.asarray(edges.to_dense()).sum(axis=1), 1.0, rtol=1e-14)  # weights sum to 1


def test_upsample_and_conv_transpose():
    rng = np.random.default_rng(14)
    up = [node("Upsample", ["x", "scales"], ["y"], "up", mode="nearest")]
    graph = check_linear(up, {"scales": [1.0, 1.0, 2.0, 2.0]}, [1, 1, 2, 2], opset=9)
    rows = np.eye(2)[[0, 0, 1, 1]]  # output row (column) i reads input row (column) i // 2
    np.testing.assert_array_equal(graph.blocks[0].to_dense(), np.kron(rows, rows))
    # transposed convolutions reading one layer and a concatenation; the two from layer a merge
    # (groups: the reference evaluator fails on grouped ConvTranspose, test_graph checks them)
    geometry = {"strides": [2, 2], "pads": [1, 0, 1, 1], "output_padding": [1, 0]}
    nodes = [
        node("Conv", ["x", "wa"], ["a"]),
        node("ConvTranspose", ["a", "wt", "bt"], ["t"], "up", **geometry),
        node("Conv", ["x", "wb"], ["b"]),
        node("Identity", ["t"], ["t2"]),
        node("Concat", ["a", "b"], ["ab"], axis=1),
        node("ConvTranspose", ["ab", "wu"], ["u"], "up2", **geometry),
        node("Add", ["t2", "u"], ["y"]),
    ]
    consts = {
        "wa": rng.normal(size=(4, 2, 1, 1)), "wb": rng.normal(size=(2, 2, 1, 1)),
        "wt": rng.normal(size=(4, 2, 3, 3)), "wu": rng.normal(size=(6, 2, 3, 3)), "bt": np.zeros(2),
    }  # fmt: skip
    graph = check_linear(nodes, consts, [1, 2, 3, 3])
    into = blocks_into(graph, "y")
    assert isinstance(into["a"], ConvTranspose2d) and isinstance(into["b"], ConvTranspose2d)
    assert into["a"].conv.kernel.shape == (4, 2, 3, 3)  # t and the concatenation's part from a, merged


# ---------------------------------------------------------------------- normalizations


def test_layer_norm_channels_last_as_in_convnext():
    """A ConvNeXt block: depthwise Conv, permute to channels-last, LayerNormalization over the
    channels, Linear (MatMul), GELU, Linear, layer scale, permute back, residual sum."""
    rng = np.random.default_rng(15)
    c, hw = 4, 3
    nodes = [
        node("Conv", ["x", "dw", "db"], ["d"], "dw", pads=[1, 1, 1, 1], group=c),
        node("Transpose", ["d"], ["t"], perm=[0, 2, 3, 1]),
        node("LayerNormalization", ["t", "gamma", "beta"], ["n"], "ln", axis=-1, epsilon=1e-6),
        node("MatMul", ["n", "w1"], ["m1"], "fc1"),
        node("Add", ["m1", "b1"], ["h1"]),
        node("Gelu", ["h1"], ["g"], "gelu"),
        node("MatMul", ["g", "w2"], ["m2"], "fc2"),
        node("Add", ["m2", "b2"], ["h2"]),
        node("Transpose", ["h2"], ["back"], perm=[0, 3, 1, 2]),
        node("Mul", ["scale", "back"], ["s"], "layer_scale"),
        node("Add", ["s", "x"], ["y"], "residual"),
    ]
    consts = {
        "dw": rng.normal(size=(c, 1, 3, 3)), "gamma": rng.normal(size=c), "w1": rng.normal(size=(c, 4 * c)),
        "w2": rng.normal(size=(4 * c, c)), "scale": rng.normal(size=(c, 1, 1)),
    }  # fmt: skip
    biases = {"db": rng.normal(size=c), "beta": rng.normal(size=c), "b1": rng.normal(size=4 * c),
              "b2": rng.normal(size=c)}  # fmt: skip
    acts = {**ACTS, "LayerNormalization": lambda z: _normalize(z, 0, EPS)}  # over the channels of (C, H, W)
    # the reference evaluator computes LayerNormalization statistics in float32 (only stash_type=1)
    graph = check_network(nodes, consts, biases, [1, c, hw, hw], acts, {"rtol": 1e-6, "atol": 1e-7}, opset=20)
    # x, dw (normalized), gamma edges, fc1 (GELU), fc2 + layer scale + residual in one layer
    assert graph.names == ("x", "d", "n", "m1", "y")
    assert [a.name for a in graph.activations] == [
        "identity",
        "LayerNormalization",
        "identity",
        "Gelu",
        "identity",
    ]
    assert graph.activations[1].monotone is False
    gamma = blocks_into(graph, "n")["d"]
    assert isinstance(gamma, ChannelScale)
    np.testing.assert_allclose(gamma.scale, consts["gamma"], rtol=1e-15)
    fc2 = blocks_into(graph, "y")["m1"]  # the layer scale folded into the 1x1 convolution
    np.testing.assert_allclose(fc2.kernel[:, :, 0, 0], consts["scale"][:, :, 0] * consts["w2"].T, rtol=1e-14)


@pytest.mark.parametrize("op", ["GroupNormalization", "InstanceNormalization"])
def test_group_and_instance_norm_record_the_normalization(op):
    rng = np.random.default_rng(16)
    attrs = {"num_groups": 2, "stash_type": DOUBLE} if op == "GroupNormalization" else {}
    nodes = [
        node("Conv", ["x", "w"], ["c"], "conv"),
        node(op, ["c", "gamma", "beta"], ["n"], "norm", **attrs),
        node("Relu", ["n"], ["r"], "relu"),
        node("Conv", ["r", "w2"], ["y"], "out"),
    ]
    consts = {
        "w": rng.normal(size=(4, 2, 1, 1)),
        "gamma": rng.normal(size=4),
        "w2": rng.normal(size=(1, 4, 1, 1)),
    }
    groups = 2 if op == "GroupNormalization" else 4

    def norm(z):
        return _normalize(z.reshape(groups, -1), 1, float(np.float32(1e-5))).reshape(z.shape)

    graph = check_network(
        nodes, consts, {"beta": rng.normal(size=4)}, [1, 2, 3, 3], {**ACTS, op: norm}, opset=21
    )
    assert graph.names == ("x", "c", "n", "y") and graph.activations[1] == (op, False)
    assert graph.activations[2] == ("Relu", True)
    np.testing.assert_allclose(blocks_into(graph, "n")["c"].scale, consts["gamma"], rtol=1e-15)


# ---------------------------------------------------------------------- constants and axes


def test_constant_factors_scale_the_incoming_edges():
    rng = np.random.default_rng(17)
    nodes = [
        node("Conv", ["x", "w"], ["c"], "conv"),
        node("Mul", ["c", "per_channel"], ["m"]),
        node("Div", ["m", "minus4"], ["d"]),
        node("Sub", ["one", "d"], ["s"]),  # 1 - x: flips the signs, the 1 is a bias
        node("Neg", ["s"], ["ns"]),
        node("Neg", ["ns"], ["r0"]),
        node("Relu", ["r0"], ["r"]),
        node("Conv", ["r", "w2"], ["y"], "out"),
    ]
    consts = {"w": rng.normal(size=(2, 2, 3, 3)), "w2": rng.normal(size=(1, 2, 1, 1)),
              "per_channel": np.array([-2.0, 0.5]).reshape(1, 2, 1, 1), "minus4": -4.0}  # fmt: skip
    graph = check_network(nodes, consts, {"one": np.ones(())}, [1, 2, 4, 4])
    assert graph.names == ("x", "r0", "y")
    factor = np.array([-2.0, 0.5]) / -4.0 * -1.0
    np.testing.assert_array_equal(graph.blocks[0].kernel, consts["w"] * factor[:, None, None, None])


def test_batch_axis_moves_are_rearrangements():
    rng = np.random.default_rng(18)
    nodes = [
        node("Transpose", ["x"], ["t"], perm=[1, 0, 2, 3]),  # (2, 1, 4, 4): the batch axis moved
        node("Transpose", ["t"], ["u"], perm=[1, 0, 2, 3]),
        node("Squeeze", ["u", "zero"], ["s"]),
        node("Unsqueeze", ["s", "zero"], ["v"]),
        node("Conv", ["v", "w"], ["c"], "conv"),
        node("Transpose", ["c"], ["hw"], perm=[2, 3, 0, 1]),  # (H, W, N, C): batch at axis 2
        node("Relu", ["hw"], ["r"]),
        node("Reshape", ["r", "flat"], ["f"]),
        node("Gemm", ["f", "fc"], ["y"], "fc", transB=1),
    ]
    consts = {
        "w": rng.normal(size=(3, 2, 3, 3)),
        "fc": rng.normal(size=(5, 12)),
        "zero": [0],
        "flat": [1, -1],
    }
    graph = check_network(nodes, consts, {}, [1, 2, 4, 4])
    assert graph.shapes == ((2, 4, 4), (3, 2, 2), (5,)) and graph.activations[1].name == "Relu"


# ---------------------------------------------------------------------- input shape, files, dtype


def test_dynamic_input_dimensions_need_input_shape(tmp_path):
    rng = np.random.default_rng(19)
    nodes = [node("Conv", ["x", "w"], ["c"]), node("GlobalAveragePool", ["c"], ["y"])]
    model = _model(nodes, {"w": rng.normal(size=(3, 2, 3, 3))}, ["N", 2, "H", "W"], probe=[1, 2, 5, 6])
    with pytest.raises(ValueError, match=r"ONNX input 'x' has shape \['N', 2, 'H', 'W'\] with dynamic.*"
                       r"input_shape=\(1, C, H, W\).*--input-shape 1,C,H,W"):  # fmt: skip
        from_onnx(model)
    graph = from_onnx(model, input_shape=(1, 2, 5, 6))
    assert graph.shapes == ((2, 5, 6), (3, 3, 4), (3, 1, 1))
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, path)
    assert eqx.tree_equal(load_graph(path, input_shape=[1, 2, 5, 6]), graph)
    with pytest.raises(ValueError, match=r"input_shape \(1, 3, 5, 6\) disagrees with ONNX input 'x'"):
        from_onnx(model, input_shape=(1, 3, 5, 6))
    with pytest.raises(ValueError, match="input_shape must have batch size 1"):
        from_onnx(model, input_shape=(2, 2, 5, 6))
    with pytest.raises(ValueError, match="input_shape must be positive integers"):
        from_onnx(model, input_shape=(1, 2, 0, 6))
    fixed = _model(nodes, {"w": rng.normal(size=(3, 2, 3, 3))}, [1, 2, 5, 6])
    assert from_onnx(fixed).shapes == graph.shapes  # a fixed shape needs no input_shape
    batched = _model(nodes, {"w": rng.normal(size=(3, 2, 3, 3))}, [4, 2, 5, 6])
    with pytest.raises(ValueError, match="has batch size 4; only batch size 1"):
        from_onnx(batched)


def test_external_data_is_read_per_tensor_and_checked(tmp_path):
    rng = np.random.default_rng(20)
    nodes = [node("Conv", ["x", "w"], ["c"]), node("Flatten", ["c"], ["f"]), node("Gemm", ["f", "fc"], ["y"])]
    model = _model(nodes, {"w": rng.normal(size=(3, 2, 3, 3)), "fc": rng.normal(size=(12, 4))}, [1, 2, 4, 4])
    inline = from_onnx(model)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="m.bin", size_threshold=0)
    assert eqx.tree_equal(load_graph(path), inline)
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(data[:-8])
    with pytest.raises(
        ValueError, match=r"initializer 'fc': external data \(384 bytes at offset \d+ of m.bin"
    ):
        load_graph(path)
    outside = onnx.load(path, load_external_data=False)
    for t in outside.graph.initializer:
        for e in t.external_data:
            e.value = "../m.bin" if e.key == "location" else e.value
    sub = tmp_path / "sub"
    sub.mkdir()
    onnx.save(outside, sub / "m.onnx")
    with pytest.raises(ValueError, match=r"'../m.bin' points outside|'../m.bin' is not a file in"):
        load_graph(sub / "m.onnx")
    (sub / "link.bin").symlink_to(tmp_path / "m.bin")  # a link inside the folder to a file outside
    for t in outside.graph.initializer:
        for e in t.external_data:
            e.value = "link.bin" if e.key == "location" else e.value
    onnx.save(outside, sub / "m.onnx")
    with pytest.raises(ValueError, match=r"link.bin.*(symbolic link|is not a file in)"):
        load_graph(sub / "m.onnx")


def test_dtype_rule(monkeypatch):
    rng = np.random.default_rng(21)
    nodes = [node("Conv", ["x", "w"], ["y"])]
    stored32 = _model(nodes, {"w": rng.normal(size=(2, 1, 3, 3))}, [1, 1, 4, 4], dtype=np.float32)
    graph = from_onnx(stored32)  # 72 edges: the analysis default, float64
    assert graph.dtype == np.float64 and graph.blocks[0].kernel.dtype == np.float64
    assert from_onnx(stored32, dtype=np.float32).dtype == np.float32
    monkeypatch.setattr(_builder, "FLOAT64_MAX_EDGES", 71)  # above the limit: float32 (stored precision)
    assert from_onnx(stored32).dtype == np.float32
    assert from_onnx(stored32, dtype=np.float64).dtype == np.float64
