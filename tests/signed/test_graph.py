"""SignedGraph blocks: matrix-free A x, Aᵀ y, Σ|a| and edge counts against dense matrices built here."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow.linear import DeepLinearNetwork
from jaxflow.signed import (
    Activation,
    Broadcast,
    ChannelRoute,
    ChannelScale,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Layer,
    Pool,
    Route,
    SignedGraph,
    Skip,
    Sparse,
)
from jaxflow.signed.blocks import DENSE_LAYOUT_ENTRIES, Masked


def window_pairs(in_hw, out_hw, k, stride, pad, dil):
    """All ((oy, ox), (u, v), (y, x)): output position, tap, input position inside the image."""
    for oy, ox, u, v in itertools.product(range(out_hw[0]), range(out_hw[1]), range(k[0]), range(k[1])):
        y, x = oy * stride[0] - pad[0][0] + u * dil[0], ox * stride[1] - pad[1][0] + v * dil[1]
        if 0 <= y < in_hw[0] and 0 <= x < in_hw[1]:
            yield (oy, ox), (u, v), (y, x)


def conv_toeplitz(K, in_shape, out_shape, stride, pad, dil, groups):
    """The Toeplitz matrix of a grouped, strided, padded, dilated cross-correlation, by loops."""
    c_out, c_in_g = K.shape[:2]
    (C, H, W), (_, Ho, Wo) = in_shape, out_shape
    T = np.zeros((c_out * Ho * Wo, C * H * W))
    for o, ci in itertools.product(range(c_out), range(c_in_g)):
        c = (o // (c_out // groups)) * c_in_g + ci
        for (oy, ox), (u, v), (y, x) in window_pairs((H, W), (Ho, Wo), K.shape[2:], stride, pad, dil):
            T[(o * Ho + oy) * Wo + ox, (c * H + y) * W + x] = K[o, ci, u, v]
    return T


def pool_matrix(in_shape, out_shape, window, stride, pad, dil, weight):
    """Pooling edges: weight(count of the window's inputs inside the image) from each such input."""
    (C, H, W), (_, Ho, Wo) = in_shape, out_shape
    T = np.zeros((C * Ho * Wo, C * H * W))
    for oy, ox in itertools.product(range(Ho), range(Wo)):
        inside = [
            yx for o, _, yx in window_pairs((H, W), (Ho, Wo), window, stride, pad, dil) if o == (oy, ox)
        ]
        for c, (y, x) in itertools.product(range(C), inside):
            T[(c * Ho + oy) * Wo + ox, (c * H + y) * W + x] = weight(len(inside))
    return T


def check_block(block, T, rng):
    """Every matrix-free operation of `block`, and of `block.prepared()` (its operands laid out for a
    loop of products: small blocks as their matrix, and with none so), agrees with the dense `T`."""
    check_operations(block, T, rng)
    check_operations(block.prepared(), T, rng)
    check_operations(block.prepared(dense_entries=0), T, rng)


def check_operations(block, T, rng):
    x = rng.normal(size=block.in_shape)
    y = rng.normal(size=block.out_shape)
    np.testing.assert_allclose(block.to_dense(), T, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.ravel(block.apply(jnp.asarray(x))), T @ x.ravel(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.ravel(block.apply_transpose(jnp.asarray(y))), T.T @ y.ravel(), rtol=1e-12, atol=1e-12
    )
    np.testing.assert_allclose(block.abs_sum(), np.abs(T).sum(), rtol=1e-13)
    # each edge's weight is one stored weight, so squaring the weights squares the edges (`Σa²`,
    # the annealing's temperature unit)
    np.testing.assert_allclose(block.map_weights(jnp.square).abs_sum(), np.square(T).sum(), rtol=1e-13)
    assert block.num_edges() == np.count_nonzero(T)


# (C_in, H, W), C_out, kernel (kh, kw), stride, padding, dilation, groups: every option, mixed.
CONV_CASES = [
    ((2, 6, 5), 3, (3, 3), 1, 0, 1, 1),
    ((2, 6, 5), 4, (3, 2), 2, 1, 1, 2),
    ((4, 7, 6), 4, (3, 3), (2, 1), ((1, 2), (0, 1)), (1, 2), 4),  # depthwise, asymmetric padding
    ((3, 6, 5), 6, (3, 2), 2, 1, (2, 1), 3),  # depthwise, two output channels per input channel
    ((2, 5, 6), 2, (5, 3), 1, ((4, 3), (1, 1)), 1, 2),  # depthwise, padding wider than the kernel
    ((3, 7, 7), 2, (2, 3), (1, 3), (2, 1), 2, 1),
    ((2, 5, 5), 2, (1, 1), 2, 0, 1, 1),
    ((2, 5, 6), 2, (1, 2), 2, 1, 1, 1),  # padding wider than the kernel: edges skip the padded rim
    # kernels wider than their input: taps that only ever land in the padding
    ((4, 1, 1), 3, (3, 3), 1, 1, 1, 1),
    ((2, 2, 2), 3, (3, 3), 2, 1, 1, 1),
    ((2, 2, 3), 2, (5, 3), 1, ((2, 1), (1, 1)), 1, 2),
    ((2, 1, 3), 2, (3, 3), 1, (2, 1), (2, 1), 1),
    ((2, 2, 3), 2, (3, 1), (2, 1), ((1, 3), (0, 0)), (2, 1), 1),  # would need a negative padding
]


@pytest.mark.parametrize("in_shape, c_out, k, stride, padding, dilation, groups", CONV_CASES)
def test_conv_matches_toeplitz(in_shape, c_out, k, stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    K = rng.normal(size=(c_out, in_shape[0] // groups, *k))
    K[0, 0, 0, 0] = 0.0  # a zero weight is not an edge
    block = Conv2d(K, in_shape, stride, padding, dilation, groups)
    T = conv_toeplitz(K, in_shape, block.out_shape, block.stride, block.padding, block.dilation, groups)
    check_block(block, T, rng)
    # prepared, the kernel keeps exactly the rows and columns of the taps that reach the input,
    # unless dropping the first ones would take the padding below 0 (tap 1 of 3, dilation 2, padding 1)
    taps = {uv for _, uv, _ in window_pairs(in_shape[1:], block.out_shape[1:], k, block.stride,
                                            block.padding, block.dilation)}  # fmt: skip
    first = (min(u for u, _ in taps), min(v for _, v in taps))
    last = (max(u for u, _ in taps), max(v for _, v in taps))
    pads = [block.padding[a][0] - first[a] * block.dilation[a] for a in range(2)]
    kept = tuple(hi - lo + 1 for lo, hi in zip(first, last)) if min(pads) >= 0 else k
    assert block._cropped().kernel.shape[2:] == kept


@pytest.mark.parametrize("side, stride, wide", [(2, 1, True), (4, 2, True), (3, 1, False), (5, 2, False)])
def test_a_kernel_wider_than_its_output_map_is_prepared_as_its_matrix(side, stride, wide):
    # 3×3 kernels: on a 2×2 output (from 2×2, or 4×4 at stride 2) the products run as the matrix;
    # on a 3×3 output (from 3×3, or 5×5 at stride 2) as a convolution
    rng = np.random.default_rng(5)
    block = Conv2d(rng.normal(size=(96, 96, 3, 3)), (96, side, side), stride, 1)
    assert math.prod(block.in_shape) * math.prod(block.out_shape) > DENSE_LAYOUT_ENTRIES
    prepared = block.prepared()
    assert isinstance(prepared, Dense) == wide
    K = np.asarray(block.kernel)
    check_operations(prepared, conv_toeplitz(K, block.in_shape, block.out_shape, block.stride, block.padding,
                                              block.dilation, 1), rng)  # fmt: skip


@pytest.mark.parametrize(
    "mode, include_pad, window, stride, padding, dilation",
    [
        ("avg", True, 2, None, 0, 1),  # windows that tile the input (a reshape and a sum) …
        ("avg", False, 2, None, 0, 1),
        ("max", True, (2, 3), None, 0, 1),  # … the last column, and two, outside every window
        ("avg", True, 3, 2, 1, 1),
        ("avg", False, (3, 2), (2, 1), ((1, 0), (1, 1)), 1),
        ("max", True, 3, 2, 1, 1),
        ("max", True, 2, 1, 0, 2),
    ],
)
def test_pooling_matches_dense(mode, include_pad, window, stride, padding, dilation):
    rng = np.random.default_rng(1)
    block = Pool(window, (2, 6, 5), stride, padding, dilation, mode=mode, count_include_pad=include_pad)
    kh, kw = block.window
    weight = {
        "max": lambda count: 1.0,
        "avg": (lambda count: 1.0 / (kh * kw)) if include_pad else (lambda count: 1.0 / count),
    }[mode]
    T = pool_matrix(
        block.in_shape, block.out_shape, block.window, block.stride, block.padding, block.dilation, weight
    )
    check_block(block, T, rng)


def test_skip_and_routes_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4))
    check_block(Skip((2, 3, 4), weight=0.5), 0.5 * np.eye(24), rng)
    perm = Route.permute((2, 3, 4), (1, 2, 0))
    np.testing.assert_array_equal(perm.apply(jnp.asarray(x)), x.transpose(1, 2, 0))
    check_block(perm, np.eye(24)[np.arange(24).reshape(2, 3, 4).transpose(1, 2, 0).ravel()], rng)
    reshape = Route.reshape((2, 3, 4), (6, 4))
    np.testing.assert_array_equal(reshape.apply(jnp.asarray(x)), x.reshape(6, 4))
    z = rng.normal(size=(1, 3, 4))
    a, b = Route.concat([(2, 3, 4), (1, 3, 4)], axis=0)
    np.testing.assert_array_equal(a.apply(jnp.asarray(x)) + b.apply(jnp.asarray(z)), np.concatenate([x, z]))
    a, b = Route.concat([(2, 3, 4), (2, 3, 1)], axis=2)
    w = rng.normal(size=(2, 3, 1))
    np.testing.assert_array_equal(
        a.apply(jnp.asarray(x)) + b.apply(jnp.asarray(w)), np.concatenate([x, w], 2)
    )
    np.testing.assert_array_equal(b.apply_transpose(a.apply(jnp.asarray(x))), np.zeros((2, 3, 1)))


def test_masked_block_is_the_restricted_matrix():
    rng = np.random.default_rng(3)
    K = rng.normal(size=(5, 3, 3, 3))
    conv = Conv2d(K, (3, 1, 1), 1, 1)  # a kernel wider than the input: prepared, it is cropped
    m_in, m_out = rng.random(conv.in_shape) < 0.6, rng.random(conv.out_shape) < 0.6
    T = conv_toeplitz(K, conv.in_shape, conv.out_shape, conv.stride, conv.padding, conv.dilation, 1)
    check_block(Masked(conv, jnp.asarray(m_in), jnp.asarray(m_out)), T * np.outer(m_out, m_in), rng)


@pytest.mark.parametrize(
    "in_shape, c_out, k, stride, padding, dilation, groups, output_padding",
    [
        ((3, 4, 5), 2, (3, 3), 2, 1, 1, 1, 1),
        ((4, 3, 3), 4, (2, 3), (2, 1), ((0, 1), (1, 0)), (1, 2), 2, 0),
    ],
)
def test_conv_transpose_is_the_transposed_toeplitz(in_shape, c_out, k, stride, padding, dilation, groups,
                                                   output_padding):  # fmt: skip
    rng = np.random.default_rng(7)
    K = rng.normal(size=(in_shape[0], c_out // groups, *k))
    block = ConvTranspose2d(K, in_shape, stride, padding, dilation, groups, output_padding)
    conv = block.conv
    T = conv_toeplitz(K, block.out_shape, in_shape, conv.stride, conv.padding, conv.dilation, groups)
    check_block(block, T.T, rng)
    assert ConvTranspose2d.learned


def test_channel_routes_broadcast_and_sparse_match_dense():
    rng = np.random.default_rng(6)
    # x (2, 3, 4) into channels 1, 2 of a (4, 3, 4) layer (a concatenation slice), scaled per channel
    T = np.zeros((4, 12, 2, 12))
    T[1, :, 0, :], T[2, :, 1, :] = 0.5 * np.eye(12), -2.0 * np.eye(12)
    check_block(ChannelRoute([0, 1], [1, 2], (2, 3, 4), (4, 3, 4), scale=[0.5, -2.0]), T.reshape(48, 24), rng)
    # any selection: source channel 2 read twice, output channel 2 empty
    T = np.zeros((4, 2, 3, 2))
    T[3, :, 2, :], T[0, :, 0, :], T[1, :, 2, :] = np.eye(2), 2 * np.eye(2), -np.eye(2)
    check_block(
        ChannelScale([2, 0, 2], [3, 0, 1], (3, 2), (4, 2), scale=[1.0, 2.0, -1.0]), T.reshape(8, 6), rng
    )
    assert ChannelScale.learned and not ChannelRoute.learned
    # a gate (3,) reaching every node of its channel in (3, 2, 2)
    check_block(Broadcast((3,), (3, 2, 2), via=(3, 1, 1)), np.kron(np.eye(3), np.ones((4, 1))), rng)
    check_block(Broadcast((2, 1), (3, 2, 4)), np.tile(np.kron(np.eye(2), np.ones((4, 1))), (3, 1)), rng)
    # duplicate pairs are summed; a zero weight is not an edge
    T = np.zeros((3, 4))
    T[0, 1], T[2, 0] = 0.5, 3.0
    check_block(Sparse([0, 2, 2, 1], [1, 0, 0, 3], [0.5, 1.0, 2.0, 0.0], (4,), (3,)), T, rng)
    assert not any(b.learned for b in (Broadcast((1,), (2,)), Sparse([0], [0], 1.0, (1,), (1,))))
    with pytest.raises(ValueError, match="does not broadcast"):
        Broadcast((3,), (2, 2))
    with pytest.raises(ValueError, match="distinct dst"):
        ChannelRoute([0, 1], [0, 0], (2,), (2,))
    with pytest.raises(ValueError, match="must agree after the channel axis"):
        ChannelRoute([0], [0], (1, 2), (1, 3))
    with pytest.raises(ValueError, match="rows must be"):
        Sparse([3], [0], 1.0, (1,), (3,))
    with pytest.raises(ValueError, match="smaller than the stride"):
        ConvTranspose2d(np.ones((1, 1, 3, 3)), (1, 3, 3), stride=2, output_padding=2)


@pytest.fixture(scope="module")
def resnet_like():
    """Conv → residual sum (conv + skip) → concat → max pool → dense, with a 1×1 projection."""
    rng = np.random.default_rng(3)
    c1 = Conv2d(rng.normal(size=(2, 1, 3, 3)), (1, 6, 6), padding=1)
    c2 = Conv2d(rng.normal(size=(2, 2, 3, 3)), (2, 6, 6), padding=1)
    proj = Conv2d(rng.normal(size=(2, 1, 1, 1)), (1, 6, 6))
    cat = Route.concat([(2, 6, 6), (2, 6, 6)])
    relu = Activation("relu", True)
    return SignedGraph.from_layers(
        [
            Layer("x", shape=(1, 6, 6)),
            Layer("h", {"x": c1}, activation=relu),
            Layer("r", {"h": c2, "x": proj}, activation=relu),
            Layer("s", {"r": Skip((2, 6, 6)), "h": Skip((2, 6, 6))}),
            Layer("cat", {"h": cat[0], "s": cat[1]}),
            Layer("p", {"cat": Pool(2, (4, 6, 6), mode="max")}),
            Layer("y", {"p": Dense(rng.normal(size=(3, 36)), in_shape=(4, 3, 3))}),
        ]
    )


def test_graph_operations_match_dense(resnet_like):
    g = resnet_like
    A = np.asarray(g.to_dense())
    assert A.shape == (g.num_nodes, g.num_nodes) and g.offsets[-1] == g.num_nodes
    assert not np.any(np.triu(A)), "edges go from earlier to later layers: A is strictly lower triangular"
    for (src, dst), block in zip(g.links, g.blocks):
        block_of_A = A[g.offsets[dst] : g.offsets[dst + 1], g.offsets[src] : g.offsets[src + 1]]
        np.testing.assert_array_equal(block_of_A, block.to_dense())
    v = np.random.default_rng(4).normal(size=g.num_nodes)
    np.testing.assert_allclose(g.flatten(g.matvec(g.unflatten(jnp.asarray(v)))), A @ v, atol=1e-12)
    np.testing.assert_allclose(g.flatten(g.rmatvec(g.unflatten(jnp.asarray(v)))), A.T @ v, atol=1e-12)
    np.testing.assert_allclose(g.abs_sum(), np.abs(A).sum(), rtol=1e-13)
    assert g.num_edges() == np.count_nonzero(A)
    rows, cols, values = g.to_coo()
    assert values.dtype == np.float64 and rows.size == np.count_nonzero(A)
    np.testing.assert_array_equal(values, A[rows, cols])
    np.testing.assert_array_equal(g.map_weights(jnp.sign).to_dense(), np.sign(A))
    assert g.activations[1] == Activation("relu", True) and g.activations[0] == Activation()
    assert g.astype(jnp.float32).dtype == np.float32


def test_from_network_is_the_adjacency(key):
    net = DeepLinearNetwork.init((3, 4, 2, 3), key, scale=1.0)
    g = SignedGraph.from_network(net)
    np.testing.assert_array_equal(g.to_dense(), net.adjacency())
    assert g.shapes == ((3,), (4,), (2,), (3,)) and g.links == ((0, 1), (1, 2), (2, 3))
    assert g.num_edges() == net.num_parameters


def test_bad_input_gives_clear_errors():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(2, 5\) but must take 4 inputs"):
        SignedGraph.from_weights([rng.normal(size=(4, 3)), rng.normal(size=(2, 5))])
    with pytest.raises(ValueError, match="groups=2"):
        Conv2d(rng.normal(size=(3, 1, 3, 3)), (2, 5, 5), groups=2)
    with pytest.raises(ValueError, match="does not fit"):
        Conv2d(rng.normal(size=(1, 1, 5, 5)), (1, 3, 3))
    with pytest.raises(ValueError, match="in_shape must be"):
        Pool(2, (4, 4))
    with pytest.raises(ValueError, match="distinct nodes"):
        Route(np.array([0, 0]), (2,), (3,))
    dense = Dense(rng.normal(size=(3, 2)))
    with pytest.raises(ValueError, match="not an earlier layer"):
        SignedGraph.from_layers([Layer("x", shape=(2,)), Layer("y", {"z": dense})])
    with pytest.raises(ValueError, match=r"maps \(2,\) -> \(3,\) but joins layer 'x' \(2,\) to 'y' \(4,\)"):
        SignedGraph.from_layers([Layer("x", shape=(2,)), Layer("y", {"x": dense}, shape=(4,))])
    with pytest.raises(ValueError, match="needs a shape"):
        SignedGraph.from_layers([Layer("x")])
    lonely = SignedGraph.from_layers([Layer("x", shape=(3,))])  # no blocks: no edges, default dtype
    assert lonely.abs_sum() == 0 and lonely.num_edges() == 0 and lonely.dtype == jnp.result_type(float)
