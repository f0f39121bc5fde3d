"""Blocks of a signed graph's adjacency matrix: the kinds of edges between two layers, matrix-free.

A *block* is the part of `A` between one source layer and one later destination layer (the block
convention of docs/conventions.md: `A[p, q]` is the weight of the edge `q → p`, nodes numbered in C
order in each layer).
Learned weights: `Dense`, `Conv2d`, `ConvTranspose2d`, `ChannelScale`; fixed structure: `Pool`,
`Skip`, `Route` (permutations, reshapes, one input of a concatenation), `ChannelRoute`, `Broadcast`
(a channel gate reaching every position of its channel), `Sparse` (interpolation, gathered sums) and
`Masked` (a block restricted to some nodes). Every block acts on vectors without building its
matrix: `apply(x) = A_b x`, `apply_transpose(y) = A_bᵀ y`.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import InputError, check_array, check_count, check_shape
from .._types import Array, Bool, Float, Int, Scalar

Shape = tuple[int, ...]
_HIGHEST = lax.Precision.HIGHEST
DENSE_LAYOUT_ENTRIES = 2**16  # `Conv2d.prepared`: convolutions with at most this many matrix entries
WIDE_KERNEL_ENTRIES = 2**24  # ... and those whose kernel is wider than their output map, up to this many


def _device_array(x) -> Array:
    """`x` as a JAX array: a NumPy array (a model's weights) copied once to the device; a JAX array
    as it is. (`jnp.asarray` holds a second copy of a NumPy array while it converts it: 0.4 GB
    more for VGG-16's first dense layer.)"""
    return x if isinstance(x, jax.Array) else jax.device_put(np.asarray(x))


class Block(eqx.Module):
    """A block `A_b` of the adjacency matrix between a source and a destination layer.

    `in_shape`/`out_shape` are the two layers' shapes. Subclasses hold their edge weights in
    floating-point array leaves, so `map_weights` (and `jax.tree` maps filtered by
    `eqx.is_inexact_array`) act on every implied edge weight at once.
    """

    in_shape: eqx.AbstractVar[Shape]
    out_shape: eqx.AbstractVar[Shape]
    learned: ClassVar[bool] = False  # True for trained weights (dense, conv): null models shuffle these

    def apply(self, x: Float[Array, "*in"]) -> Float[Array, "*out"]:
        """`A_b x`."""
        raise NotImplementedError

    def apply_transpose(self, y: Float[Array, "*out"]) -> Float[Array, "*in"]:
        """`A_bᵀ y`."""
        (x,) = jax.linear_transpose(self.apply, jax.ShapeDtypeStruct(self.in_shape, y.dtype))(y)
        return x

    def abs_sum(self) -> Scalar:
        """`Σ |a|` over every implied edge (a shared conv weight counts once per use)."""
        raise NotImplementedError

    def num_edges(self) -> int:
        """Number of implied edges with non-zero weight (host-side, exact integer)."""
        raise NotImplementedError

    def map_weights(self, fn: Callable[[Array], Array]) -> Block:
        """The same block with `fn` applied to its weight arrays (e.g. `jnp.abs`, `jnp.sign`)."""
        dynamic, static = eqx.partition(self, eqx.is_inexact_array)
        return eqx.combine(jax.tree.map(fn, dynamic), static)

    def prepared(self, dense_entries: int = DENSE_LAYOUT_ENTRIES) -> Block:
        """The same block with the operands of its products laid out once, for loops of products
        (XLA does not hoist a kernel's relayout out of a loop), blocks of at most `dense_entries`
        matrix entries as that matrix where it is faster; `self` where nothing is laid out."""
        return self

    def to_dense(self) -> Float[Array, "n_out n_in"]:
        """The block as a dense `(n_out, n_in)` matrix (small blocks only; for tests)."""
        n_in = math.prod(self.in_shape)
        dtype = weights_dtype(self)
        eye = jnp.eye(n_in, dtype=dtype).reshape((n_in, *self.in_shape))
        return jax.vmap(lambda e: self.apply(e).ravel(), out_axes=1)(eye)


class Dense(Block):
    """A fully connected block: `A_b = W`, `W` of shape `(n_out, n_in)` on the flattened layers."""

    weight: Float[Array, "n_out n_in"]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)
    learned: ClassVar[bool] = True

    def __init__(self, weight, in_shape: Shape | None = None, out_shape: Shape | None = None):
        weight = _device_array(check_array(weight, "weight", ndim=2))
        self.weight = weight
        self.in_shape = as_shape(in_shape, (weight.shape[1],), "in_shape")
        self.out_shape = as_shape(out_shape, (weight.shape[0],), "out_shape")
        if math.prod(self.in_shape) != weight.shape[1] or math.prod(self.out_shape) != weight.shape[0]:
            raise InputError(
                f"Dense weight of shape {weight.shape} needs layers of {weight.shape[1]} -> "
                f"{weight.shape[0]} nodes, got in_shape {self.in_shape} and out_shape {self.out_shape}"
            )

    def apply(self, x):
        return jnp.matmul(self.weight, x.ravel(), precision=_HIGHEST).reshape(self.out_shape)

    def apply_transpose(self, y):
        return jnp.matmul(y.ravel(), self.weight, precision=_HIGHEST).reshape(self.in_shape)

    def abs_sum(self):
        return jnp.sum(jnp.abs(self.weight))

    def num_edges(self):
        return int(np.count_nonzero(np.asarray(self.weight)))

    def to_dense(self):
        return self.weight


class Conv2d(Block):
    """A 2-D convolution (cross-correlation, as in PyTorch/ONNX) between `(C, H, W)` layers.

    `kernel` has shape `(C_out, C_in/groups, kh, kw)`; `padding` is `p`, `(p_h, p_w)` or
    `((top, bottom), (left, right))`. The implied Toeplitz matrix is never built: `apply` is
    `lax.conv_general_dilated`, `apply_transpose` the transposed convolution.
    """

    kernel: Float[Array, "c_out c_in_per_group kh kw"]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)
    stride: tuple[int, int] = eqx.field(static=True)
    padding: tuple[tuple[int, int], tuple[int, int]] = eqx.field(static=True)
    dilation: tuple[int, int] = eqx.field(static=True)
    groups: int = eqx.field(static=True)
    layouts: tuple[Array, Array] | None = None  # `prepared`: the kernels of `apply`, `apply_transpose`
    learned: ClassVar[bool] = True

    def __init__(self, kernel, in_shape: Shape, stride=1, padding=0, dilation=1, groups: int = 1):
        kernel = _device_array(check_array(kernel, "kernel", ndim=4))
        in_shape = as_shape(in_shape, None, "in_shape")
        if len(in_shape) != 3:
            raise InputError(f"Conv2d in_shape must be (C, H, W), got {in_shape}")
        groups = check_count(groups, "groups")
        c_out, c_in_g, kh, kw = kernel.shape
        if c_out % groups or in_shape[0] != c_in_g * groups:
            raise InputError(
                f"Conv2d with groups={groups} needs kernel (C_out, C_in/groups, kh, kw) with C_out "
                f"divisible by groups and C_in = {in_shape[0]} = kernel.shape[1] * groups; "
                f"got kernel shape {kernel.shape}"
            )
        self.kernel = kernel
        self.in_shape = in_shape
        self.stride = _pair(stride, "stride")
        self.padding = _padding(padding)
        self.dilation = _pair(dilation, "dilation")
        self.groups = groups
        out_hw = _window_out_size(in_shape[1:], (kh, kw), self.stride, self.padding, self.dilation)
        self.out_shape = (c_out, *out_hw)
        self.layouts = None

    # Both directions run as channels-last convolutions with HWIO kernels: XLA:CPU has a fast path
    # for that layout only, and inside loops it keeps the layout it is given (NCHW there is ~30×
    # slower). The transpose is written out rather than left to autodiff for the same reason.
    # Depthwise ones (one input channel per group) run as a sum over the taps (`_depthwise`).

    def apply(self, x):
        if self._is_depthwise:
            x = jnp.repeat(x, self.kernel.shape[0] // self.in_shape[0], axis=0)  # (the multiplier)
            return _depthwise(x, self.kernel, self.stride, self.padding, (1, 1), self.dilation)
        kernel = self._forward_kernel() if self.layouts is None else self.layouts[0]
        return _conv_hwc(x, kernel, self.stride, self.padding, (1, 1), self.dilation, self.groups)

    def apply_transpose(self, y):
        """`A_bᵀ y`: the convolution of `y` dilated by the stride with the flipped kernel."""
        padding = []
        for a, k in enumerate(self.kernel.shape[2:]):
            span = self.dilation[a] * (k - 1)
            (lo, hi), size = self.padding[a], self.in_shape[1 + a]
            unused = (size + lo + hi - span - 1) % self.stride[a]  # inputs past the last window
            padding.append((span - lo, span - hi + unused))
        if self._is_depthwise:
            x = _depthwise(y, jnp.flip(self.kernel, (2, 3)), (1, 1), padding, self.stride, self.dilation)
            return x.reshape(self.in_shape[0], -1, *x.shape[1:]).sum(axis=1)
        kernel = self._transpose_kernel() if self.layouts is None else self.layouts[1]
        return _conv_hwc(y, kernel, (1, 1), tuple(padding), self.stride, self.dilation, self.groups)

    @property
    def _is_depthwise(self) -> bool:
        return self.groups > 1 and self.kernel.shape[1] == 1

    def prepared(self, dense_entries: int = DENSE_LAYOUT_ENTRIES):
        """The block laid out for a loop of products (`Block.prepared`): as its matrix (`Dense`)
        when that has at most `dense_entries` entries, or at most `WIDE_KERNEL_ENTRIES` where the
        kernel (cropped to the taps that reach the input) spans more than the output map in both
        directions, else `_laid_out` (a depthwise one: cropped). XLA:CPU's convolutions of few
        channels on a small map, or of a kernel wider than its output, are far slower than the
        matrix (the algorithms page has the rule, the benchmarks page the measurements)."""
        entries = math.prod(self.in_shape) * math.prod(self.out_shape)
        wide = entries <= WIDE_KERNEL_ENTRIES and self._cropped()._wider_than_output
        if entries <= dense_entries or wide:
            return Dense(self.to_dense(), self.in_shape, self.out_shape)
        return self._cropped() if self._is_depthwise else self._laid_out()

    @property
    def _wider_than_output(self) -> bool:
        spans = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel.shape[2:])]
        return all(span > size for span, size in zip(spans, self.out_shape[1:]))

    def _laid_out(self) -> Conv2d:
        """The block with `apply`'s and `apply_transpose`'s kernels laid out once and cropped to
        the taps that reach the input (`_cropped`)."""
        conv = self._cropped()
        # the barrier keeps XLA from folding the flip back into the convolution (inside the loop)
        layouts = lax.optimization_barrier((conv._forward_kernel(), conv._transpose_kernel()))
        return eqx.tree_at(lambda c: c.layouts, conv, layouts, is_leaf=lambda x: x is None)

    def _cropped(self) -> Conv2d:
        """The same block without the kernel rows and columns whose taps land in the padding only
        (no edges): a kernel wider than its input (3×3 on a 1×1 map) XLA runs with the operands
        swapped, reversing the kernel at every product. Tap `u` reads `o·stride − pad + u·dil`, so
        dropping the first `r` taps lowers the padding by `r·dil`, keeping the output shape."""
        uses = self._tap_uses
        (top, bottom), (left, right) = self.padding
        (kh, kw), (dh, dw) = self.kernel.shape[2:], self.dilation
        rows, cols = np.flatnonzero(uses.any(axis=1)), np.flatnonzero(uses.any(axis=0))
        if rows.size == 0 or (rows[0], rows[-1], cols[0], cols[-1]) == (0, kh - 1, 0, kw - 1):
            return self
        (r0, r1), (c0, c1) = (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))
        padding = ((top - r0 * dh, bottom - (kh - 1 - r1) * dh), (left - c0 * dw, right - (kw - 1 - c1) * dw))
        if min(min(p) for p in padding) < 0:  # (dilated taps past the padding: kept as it is)
            return self
        kernel = self.kernel[:, :, r0 : r1 + 1, c0 : c1 + 1]
        return Conv2d(kernel, self.in_shape, self.stride, padding, self.dilation, self.groups)

    def _forward_kernel(self):
        return self.kernel.transpose(2, 3, 1, 0)  # (kh, kw, C_in/groups, C_out)

    def _transpose_kernel(self):
        """The flipped kernel, `(kh, kw, C_out/groups, C_in)`."""
        g, (c_out, c_in_g, kh, kw) = self.groups, self.kernel.shape
        kernel = jnp.flip(self.kernel, (2, 3)).reshape(g, c_out // g, c_in_g, kh, kw)
        return kernel.transpose(3, 4, 1, 0, 2).reshape(kh, kw, c_out // g, g * c_in_g)

    @property
    def _tap_uses(self) -> np.ndarray:
        """`(kh, kw)`: how many output positions each kernel tap lands inside the input."""
        return np.outer(*(_axis_inside(self, a).sum(axis=0) for a in (0, 1)))

    def to_dense(self):
        """The `(n_out, n_in)` Toeplitz matrix, the kernel's weights scattered to the taps inside
        the input (one product's cost, not `n_in` of them)."""
        rows, cols, taps = _conv_scatter(self)
        shape = (math.prod(self.out_shape), math.prod(self.in_shape))
        return jnp.zeros(shape, self.kernel.dtype).at[rows, cols].set(self.kernel.ravel()[taps])

    def abs_sum(self):
        uses = jnp.asarray(self._tap_uses, self.kernel.dtype)
        return jnp.sum(jnp.abs(self.kernel) * uses)

    def num_edges(self):
        nonzero = np.count_nonzero(np.asarray(self.kernel), axis=(0, 1)).astype(np.int64)
        return int(np.sum(nonzero * self._tap_uses))


class Pool(Block):
    """Pooling as positive edges from every input of each window to its output, per channel.

    `mode="avg"`: edge weight `1/(kh·kw)` (padding counted in the divisor) or, with
    `count_include_pad=False`, `1/(number of inputs inside the window)`. `mode="max"`: a max
    pool is not linear; its graph is taken to be edges of weight 1 from every input of the window
    (the choice that keeps it monotone and sign-preserving). `scale` holds the per-output weight.
    """

    scale: Float[Array, "*shape"]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)
    window: tuple[int, int] = eqx.field(static=True)
    stride: tuple[int, int] = eqx.field(static=True)
    padding: tuple[tuple[int, int], tuple[int, int]] = eqx.field(static=True)
    dilation: tuple[int, int] = eqx.field(static=True)
    mode: str = eqx.field(static=True)

    def __init__(
        self,
        window,
        in_shape: Shape,
        stride=None,
        padding=0,
        dilation=1,
        *,
        mode: str = "avg",
        count_include_pad: bool = True,
        dtype=None,
    ):
        in_shape = as_shape(in_shape, None, "in_shape")
        if len(in_shape) != 3:
            raise InputError(f"Pool in_shape must be (C, H, W), got {in_shape}")
        if mode not in ("avg", "max"):
            raise InputError(f'Pool mode must be "avg" or "max", got {mode!r}')
        self.in_shape = in_shape
        self.window = _pair(window, "window")
        self.stride = self.window if stride is None else _pair(stride, "stride")
        self.padding = _padding(padding)
        self.dilation = _pair(dilation, "dilation")
        self.mode = mode
        out_hw = _window_out_size(in_shape[1:], self.window, self.stride, self.padding, self.dilation)
        self.out_shape = (in_shape[0], *out_hw)
        dtype = dtype or jnp.result_type(float)
        if mode == "max":
            self.scale = jnp.ones((), dtype)
        elif count_include_pad:
            self.scale = jnp.full((), 1.0 / math.prod(self.window), dtype)
        else:
            self.scale = jnp.asarray(1.0 / self._inputs_per_window, dtype)

    def _sum_pool(self, x):
        """The sum over each window: where the windows tile the input (stride = window, no padding
        or dilation) a reshape and a sum, whose transpose is a broadcast (cheaper than
        `lax.reduce_window` on XLA:CPU); else `lax.reduce_window`."""
        if self.stride == self.window and self.padding == ((0, 0), (0, 0)) and self.dilation == (1, 1):
            (c, ho, wo), (kh, kw) = self.out_shape, self.window
            return x[:, : ho * kh, : wo * kw].reshape(c, ho, kh, wo, kw).sum(axis=(2, 4))
        pads = ((0, 0), *self.padding)
        return lax.reduce_window(
            x, np.zeros((), x.dtype), lax.add, (1, *self.window), (1, *self.stride), pads,
            window_dilation=(1, *self.dilation),
        )  # fmt: skip

    @property
    def _inputs_per_window(self) -> np.ndarray:
        """`(1, H', W')`: number of in-bounds inputs of each output's window."""
        counts = [
            _inside(self.in_shape[1 + a], self.out_shape[1 + a], self.window[a], self.stride[a],
                    self.padding[a][0], self.dilation[a]).sum(axis=1)
            for a in range(2)
        ]  # fmt: skip
        return np.outer(*counts)[None]

    def apply(self, x):
        return self._sum_pool(x) * self.scale

    def apply_transpose(self, y):
        (x,) = jax.linear_transpose(self._sum_pool, jax.ShapeDtypeStruct(self.in_shape, y.dtype))(
            y * self.scale
        )
        return x

    def abs_sum(self):
        counts = jnp.asarray(self._inputs_per_window, self.scale.dtype)
        return jnp.sum(jnp.broadcast_to(jnp.abs(self.scale) * counts, self.out_shape))

    def num_edges(self):
        nonzero = np.broadcast_to(np.asarray(self.scale) != 0, self.out_shape)
        return int(np.sum(nonzero * self._inputs_per_window))


class Skip(Block):
    """Identity edges `q → q` of weight `weight` (default 1) between two layers of the same shape."""

    weight: Float[Array, ""]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)

    def __init__(self, shape: Shape, weight=1.0, dtype=None):
        self.in_shape = self.out_shape = as_shape(shape, None, "shape")
        self.weight = jnp.asarray(weight, dtype or jnp.result_type(float))

    def apply(self, x):
        return x * self.weight

    def apply_transpose(self, y):
        return y * self.weight

    def abs_sum(self):
        return jnp.abs(self.weight) * math.prod(self.in_shape)

    def num_edges(self):
        return math.prod(self.in_shape) if float(self.weight) != 0 else 0


class Route(Block):
    """Edges of weight `weight` (default 1) from each source node `q` to destination node `index[q]`.

    `index` is injective. This is how a Transpose (a permutation), a Reshape (the identity on
    C-order node numbers) or one input of a concatenation (`Route.concat`) is a block.
    """

    index: Int[Array, " n_in"]
    weight: Float[Array, ""]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)

    def __init__(self, index, in_shape: Shape, out_shape: Shape, weight=1.0, dtype=None):
        self.in_shape = as_shape(in_shape, None, "in_shape")
        self.out_shape = as_shape(out_shape, None, "out_shape")
        idx = np.asarray(index)
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        if not np.issubdtype(idx.dtype, np.integer) or idx.shape != (n_in,):
            raise InputError(f"Route index must be {n_in} integers (one per source node), got {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= n_out or np.unique(idx).size != n_in):
            raise InputError(
                f"Route index must map the {n_in} source nodes to distinct nodes in 0..{n_out - 1}"
            )
        self.index = jnp.asarray(idx)
        self.weight = jnp.asarray(weight, dtype or jnp.result_type(float))

    @classmethod
    def permute(cls, in_shape: Shape, axes: Sequence[int]) -> Route:
        """The layer transposed by `axes` (as `numpy.transpose`)."""
        in_shape = as_shape(in_shape, None, "in_shape")
        order = np.arange(math.prod(in_shape)).reshape(in_shape).transpose(axes)
        return cls(np.argsort(order.ravel()), in_shape, order.shape)

    @classmethod
    def reshape(cls, in_shape: Shape, out_shape: Shape) -> Route:
        """The layer reshaped in C order (node numbers unchanged)."""
        in_shape = as_shape(in_shape, None, "in_shape")
        return cls(np.arange(math.prod(in_shape)), in_shape, out_shape)

    @classmethod
    def concat(cls, shapes: Sequence[Shape], axis: int = 0) -> list[Route]:
        """One `Route` per input of `concatenate(inputs, axis)`, into the concatenated layer."""
        shapes = [as_shape(s, None, f"shapes[{i}]") for i, s in enumerate(shapes)]
        try:
            out = np.concatenate([np.zeros(s, np.int8) for s in shapes], axis=axis).shape
        except ValueError as e:
            raise InputError(f"cannot concatenate layers of shapes {shapes} along axis {axis}: {e}") from None
        dest = np.arange(math.prod(out)).reshape(out)
        cuts = np.cumsum([s[axis] for s in shapes])[:-1]
        parts = np.split(dest, cuts, axis=axis)
        return [cls(part.ravel(), s, out) for part, s in zip(parts, shapes)]

    def apply(self, x):
        y = jnp.zeros(math.prod(self.out_shape), x.dtype).at[self.index].set(x.ravel() * self.weight)
        return y.reshape(self.out_shape)

    def apply_transpose(self, y):
        return (y.ravel()[self.index] * self.weight).reshape(self.in_shape)

    def abs_sum(self):
        return jnp.abs(self.weight) * self.index.shape[0]

    def num_edges(self):
        return int(self.index.shape[0]) if float(self.weight) != 0 else 0


class ChannelRoute(Block):
    """Per-channel edges into channels of another layer: `out[dst[k]] = scale[k] · x[src[k]]`.

    Channels are axis 0 of layers of shapes `(C_in, *rest)` and `(C_out, *rest)`; `dst` is
    injective. A channel concatenation is one `ChannelRoute` per input (`dst` a slice of the
    output's channels, `scale` 1): `apply` writes a slice and `apply_transpose` reads it, O(size)
    work where a 1×1 convolution would take O(C_out·C_in) per position. The channel numbers are
    array leaves, so routes of equal shapes share compiled code. Structure, not learned (see
    `ChannelScale`).
    """

    scale: Float[Array, " k"]
    src: Int[Array, " k"]
    dst: Int[Array, " k"]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)
    is_slice: bool = eqx.field(static=True)  # src = 0..C_in−1 into consecutive dst

    def __init__(self, src, dst, in_shape: Shape, out_shape: Shape, scale=1.0, dtype=None):
        self.in_shape = as_shape(in_shape, None, "in_shape")
        self.out_shape = as_shape(out_shape, None, "out_shape")
        src, dst = (np.ravel(v).astype(np.int64) for v in (src, dst))
        if self.in_shape[1:] != self.out_shape[1:]:
            raise InputError(
                f"{type(self).__name__} layers must agree after the channel axis, got {self.in_shape} "
                f"and {self.out_shape}"
            )
        if src.shape != dst.shape or np.unique(dst).size != dst.size:
            raise InputError(f"src and dst must have equal lengths and distinct dst, got {src} and {dst}")
        if src.size and (
            min(src.min(), dst.min()) < 0 or src.max() >= self.in_shape[0] or dst.max() >= self.out_shape[0]
        ):
            raise InputError(
                f"channels out of range: src in 0..{self.in_shape[0] - 1}, dst in 0..{self.out_shape[0] - 1}"
            )
        self.is_slice = bool(
            src.size and np.array_equal(src, np.arange(self.in_shape[0])) and np.all(np.diff(dst) == 1)
        )
        self.src, self.dst = jnp.asarray(src), jnp.asarray(dst)
        self.scale = jnp.broadcast_to(jnp.asarray(scale, dtype or jnp.result_type(float)), src.shape)

    def _per_channel(self, v):
        return v * self.scale.reshape(-1, *(1,) * (len(self.in_shape) - 1))

    def _corner(self):
        return (self.dst[0], *(0,) * (len(self.in_shape) - 1))

    def apply(self, x):
        if self.is_slice:
            return lax.dynamic_update_slice(
                jnp.zeros(self.out_shape, x.dtype), self._per_channel(x), self._corner()
            )
        y = jnp.zeros(self.out_shape, x.dtype)
        return y.at[self.dst].set(self._per_channel(x[self.src]))

    def apply_transpose(self, y):
        if self.is_slice:
            return self._per_channel(lax.dynamic_slice(y, self._corner(), self.in_shape))
        x = jnp.zeros(self.in_shape, y.dtype)
        return x.at[self.src].add(self._per_channel(y[self.dst]))

    def abs_sum(self):
        return jnp.sum(jnp.abs(self.scale)) * math.prod(self.in_shape[1:])

    def num_edges(self):
        return int(np.count_nonzero(np.asarray(self.scale))) * math.prod(self.in_shape[1:])


class ChannelScale(ChannelRoute):
    """A `ChannelRoute` whose per-channel weights are learned: a BatchNormalization (or another
    per-channel scale) folded into channel-routing edges. Null models shuffle `scale`."""

    learned: ClassVar[bool] = True


class Broadcast(Block):
    """Edges of weight `weight` (default 1) from each source node to every node it broadcasts to.

    The source layer, reshaped to `via` (same size, the rank of `out_shape`, each axis 1 or equal to
    `out_shape`'s), is broadcast to `out_shape`: a channel gate `(C,)` or `(C, 1, 1)` reaches all
    `H·W` nodes of its channel (`via = (C, 1, 1)`). Structure, not learned.
    """

    weight: Float[Array, ""]
    via: Shape = eqx.field(static=True)
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)

    def __init__(self, in_shape: Shape, out_shape: Shape, via: Shape | None = None, weight=1.0, dtype=None):
        self.in_shape = as_shape(in_shape, None, "in_shape")
        self.out_shape = as_shape(out_shape, None, "out_shape")
        rank = len(self.out_shape)
        padded = (1,) * (rank - len(self.in_shape)) + self.in_shape
        via = padded if via is None else as_shape(via, None, "via")
        fits = len(via) == rank and all(v in (1, o) for v, o in zip(via, self.out_shape))
        if not fits or math.prod(via) != math.prod(self.in_shape):
            raise InputError(f"Broadcast: {self.in_shape} (as {via}) does not broadcast to {self.out_shape}")
        self.via = via
        self.weight = jnp.asarray(weight, dtype or jnp.result_type(float))

    def apply(self, x):
        return jnp.broadcast_to(x.reshape(self.via) * self.weight, self.out_shape)

    def apply_transpose(self, y):
        axes = tuple(a for a, (v, o) in enumerate(zip(self.via, self.out_shape)) if v == 1 and o > 1)
        return (jnp.sum(y, axis=axes, keepdims=True) * self.weight).reshape(self.in_shape)

    def abs_sum(self):
        return jnp.abs(self.weight) * math.prod(self.out_shape)

    def num_edges(self):
        return math.prod(self.out_shape) if float(self.weight) != 0 else 0


class Sparse(Block):
    """Edges `cols[k] → rows[k]` of weight `weight[k]` (node numbers within the flattened layers).

    A fixed linear map with few edges per node: an interpolation (`Resize`), a sum over gathered
    positions (adaptive pooling written as gathers). Duplicate pairs are summed. Structure, not
    learned.
    """

    weight: Float[Array, " nnz"]
    rows: Int[Array, " nnz"]
    cols: Int[Array, " nnz"]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)

    def __init__(self, rows, cols, weight, in_shape: Shape, out_shape: Shape, dtype=None):
        self.in_shape = as_shape(in_shape, None, "in_shape")
        self.out_shape = as_shape(out_shape, None, "out_shape")
        n_in, n_out = math.prod(self.in_shape), math.prod(self.out_shape)
        rows, cols = np.ravel(rows).astype(np.int64), np.ravel(cols).astype(np.int64)
        weight = np.broadcast_to(np.asarray(weight), rows.shape)
        if rows.shape != cols.shape or (rows.size and (rows.min() < 0 or rows.max() >= n_out)):
            raise InputError(f"Sparse rows must be {rows.size} node numbers in 0..{n_out - 1}")
        if rows.size and (cols.min() < 0 or cols.max() >= n_in):
            raise InputError(f"Sparse cols must be {rows.size} node numbers in 0..{n_in - 1}")
        pairs, inverse = np.unique(rows * n_in + cols, return_inverse=True)
        summed = np.zeros(pairs.shape, np.result_type(weight.dtype, np.float32))
        np.add.at(summed, inverse, weight)
        self.rows, self.cols = jnp.asarray(pairs // n_in), jnp.asarray(pairs % n_in)
        self.weight = jnp.asarray(summed, dtype or jnp.result_type(float))

    def apply(self, x):
        y = (
            jnp.zeros(math.prod(self.out_shape), x.dtype)
            .at[self.rows]
            .add(self.weight * x.ravel()[self.cols])
        )
        return y.reshape(self.out_shape)

    def apply_transpose(self, y):
        x = jnp.zeros(math.prod(self.in_shape), y.dtype).at[self.cols].add(self.weight * y.ravel()[self.rows])
        return x.reshape(self.in_shape)

    def abs_sum(self):
        return jnp.sum(jnp.abs(self.weight))

    def num_edges(self):
        return int(np.count_nonzero(np.asarray(self.weight)))


class ConvTranspose2d(Block):
    """A 2-D transposed convolution (ONNX `ConvTranspose`): the transpose `A_convᵀ` of the `Conv2d`
    `conv` from this block's output layer to its input layer (same kernel, stride, padding,
    dilation and groups; `kernel` of shape `(C_in, C_out/groups, kh, kw)`). `output_padding`
    adds output rows and columns that no window of `conv` reads."""

    conv: Conv2d
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)
    learned: ClassVar[bool] = True

    def __init__(self, kernel, in_shape: Shape, stride=1, padding=0, dilation=1, groups: int = 1,
                 output_padding=0):  # fmt: skip
        kernel = check_array(kernel, "kernel", ndim=4)
        in_shape = as_shape(in_shape, None, "in_shape")
        if len(in_shape) != 3 or kernel.shape[0] != in_shape[0]:
            raise InputError(
                f"ConvTranspose2d needs a (C_in, H, W) input with C_in = kernel.shape[0], got in_shape "
                f"{in_shape} and kernel shape {kernel.shape}"
            )
        stride, dilation, padding = _pair(stride, "stride"), _pair(dilation, "dilation"), _padding(padding)
        extra = (output_padding,) * 2 if isinstance(output_padding, (int, np.integer)) else output_padding
        out_hw = tuple(
            (in_shape[1 + a] - 1) * stride[a] - sum(padding[a]) + dilation[a] * (kernel.shape[2 + a] - 1) + 1
            + int(extra[a])
            for a in range(2)
        )  # fmt: skip
        if min(out_hw) < 1:
            raise InputError(f"ConvTranspose2d output size {out_hw} is not positive")
        conv = Conv2d(kernel, (kernel.shape[1] * groups, *out_hw), stride, padding, dilation, groups)
        if conv.out_shape != in_shape:
            raise InputError(f"output_padding {tuple(extra)} must be smaller than the stride {stride}")
        self.conv, self.in_shape, self.out_shape = conv, in_shape, conv.in_shape

    def apply(self, x):
        return self.conv.apply_transpose(x)

    def apply_transpose(self, y):
        return self.conv.apply(y)

    def prepared(self, dense_entries: int = DENSE_LAYOUT_ENTRIES):
        return eqx.tree_at(lambda b: b.conv, self, self.conv.prepared(dense_entries))

    def abs_sum(self):
        return self.conv.abs_sum()

    def num_edges(self):
        return self.conv.num_edges()


class Masked(Block):
    """`D_out A_b D_in`: a block restricted to the nodes where the boolean masks are true."""

    block: Block
    in_mask: Bool[Array, "*in"]
    out_mask: Bool[Array, "*out"]
    in_shape: Shape = eqx.field(static=True)
    out_shape: Shape = eqx.field(static=True)

    def __init__(self, block: Block, in_mask, out_mask):
        self.block, self.in_mask, self.out_mask = block, in_mask, out_mask
        self.in_shape, self.out_shape = block.in_shape, block.out_shape

    def apply(self, x):
        return jnp.where(self.out_mask, self.block.apply(jnp.where(self.in_mask, x, 0)), 0)

    def apply_transpose(self, y):
        return jnp.where(self.in_mask, self.block.apply_transpose(jnp.where(self.out_mask, y, 0)), 0)

    def prepared(self, dense_entries: int = DENSE_LAYOUT_ENTRIES):
        return eqx.tree_at(lambda b: b.block, self, self.block.prepared(dense_entries))

    def _masked_sum(self, fn) -> Scalar:
        """`Σ_{p, q active} fn(a_pq)` for an elementwise `fn >= 0` with `fn(0) = 0`."""
        dtype = self.block.abs_sum().dtype
        m_in, m_out = self.in_mask.astype(dtype), self.out_mask.astype(dtype)
        return jnp.vdot(m_out, self.block.map_weights(fn).apply(m_in))

    def abs_sum(self):
        return self._masked_sum(jnp.abs)

    def num_edges(self):
        return int(round(float(self._masked_sum(lambda w: (w != 0).astype(w.dtype)))))

    def to_dense(self):
        dense = self.block.to_dense()
        return jnp.where(self.out_mask.reshape(-1, 1) & self.in_mask.reshape(1, -1), dense, 0)


def learned_weight(block: Block) -> Array:
    """A learned block's one weight array (`Dense.weight`, `Conv2d.kernel`)."""
    (w,) = jax.tree.leaves(eqx.filter(block, eqx.is_inexact_array))
    return w


# --------------------------------------------------------------------- helpers


def _depthwise(x, kernel, stride, padding, lhs_dilation, rhs_dilation):
    """Convolve each channel of a `(C, H, W)` array with its own kernel `kernel[c, 0]`, as a sum
    over the taps of a strided slice of `x` (dilated by `lhs_dilation`, padded) times the tap's
    `C` weights (XLA:CPU's depthwise convolutions are far slower than these slices)."""
    (dh, dw), (sh, sw), (_, _, kh, kw) = rhs_dilation, stride, kernel.shape
    (top, bottom), (left, right) = padding
    x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, lhs_dilation[0] - 1),
                                            (left, right, lhs_dilation[1] - 1)))  # fmt: skip
    ho, wo = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1, (x.shape[2] - dw * (kw - 1) - 1) // sw + 1
    y = jnp.zeros((x.shape[0], ho, wo), x.dtype)
    for u, v in itertools.product(range(kh), range(kw)):
        end = (x.shape[0], u * dh + (ho - 1) * sh + 1, v * dw + (wo - 1) * sw + 1)
        y = y + kernel[:, 0, u, v, None, None] * lax.slice(x, (0, u * dh, v * dw), end, (1, sh, sw))
    return y


def _conv_hwc(x, kernel, stride, padding, lhs_dilation, rhs_dilation, groups):
    """Convolve one `(C, H, W)` array with an HWIO kernel, computing in channels-last layout."""
    y = lax.conv_general_dilated(
        x.transpose(1, 2, 0)[None],
        kernel,
        window_strides=stride,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        feature_group_count=groups,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=_HIGHEST,
    )
    return y[0].transpose(2, 0, 1)


def weights_dtype(tree) -> np.dtype:
    """The common dtype of a pytree's floating-point leaves (works on tracers; default float if none)."""
    dtypes = [x.dtype for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]
    return np.result_type(*dtypes) if dtypes else np.dtype(jnp.result_type(float))


def as_shape(shape, default: Shape | None, name: str) -> Shape:
    """`shape` as a tuple of positive integers (`default` when `None`), checked under `name`."""
    if shape is None:
        if default is None:
            raise InputError(f"{name} is required")
        return default
    return check_shape(shape, name, min_dims=0)


def _pair(v, name: str) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, (int, np.integer)) else tuple(v)
    if len(pair) != 2:
        raise InputError(f"{name} must be an int or a pair of ints, got {v!r}")
    return tuple(check_count(p, name) for p in pair)


def _padding(v) -> tuple[tuple[int, int], tuple[int, int]]:
    """`p`, `(p_h, p_w)` or `((top, bottom), (left, right))`, all non-negative."""
    if isinstance(v, (int, np.integer)):
        v = ((v, v), (v, v))
    v = tuple((p, p) if isinstance(p, (int, np.integer)) else tuple(p) for p in v)
    if len(v) != 2 or any(len(p) != 2 for p in v):
        raise InputError(f"padding must be p, (p_h, p_w) or ((top, bottom), (left, right)), got {v!r}")
    return tuple(tuple(check_count(q, "padding", minimum=0) for q in p) for p in v)


def _window_out_size(size, window, stride, padding, dilation) -> tuple[int, int]:
    out = tuple(
        (size[a] + sum(padding[a]) - dilation[a] * (window[a] - 1) - 1) // stride[a] + 1 for a in range(2)
    )
    if min(out) < 1:
        raise InputError(
            f"window {window} (dilation {dilation}) does not fit the input {size} with padding {padding}"
        )
    return out


def _axis_inside(conv: Conv2d, axis: int) -> np.ndarray:
    """`(out, k)`: whether tap `u` of each output position lies inside the input along `axis`."""
    k = conv.kernel.shape[2 + axis]
    return _inside(
        conv.in_shape[1 + axis], conv.out_shape[1 + axis], k, conv.stride[axis], conv.padding[axis][0],
        conv.dilation[axis],
    ).astype(bool)  # fmt: skip


def _conv_scatter(conv: Conv2d):
    """`(rows, cols, taps)`: for every edge of a convolution, its output node, input node and the
    flat index of its kernel weight (numpy: the static index pattern of `to_dense`)."""
    (_, H, W), (_, Ho, Wo), (c_out, c_in_g, kh, kw) = conv.in_shape, conv.out_shape, conv.kernel.shape
    (sy, sx), (dy, dx), ((py, _), (px, _)) = conv.stride, conv.dilation, conv.padding
    # per axis: the (output position, tap) pairs inside the input
    (ys, us), (xs, vs) = (np.nonzero(_axis_inside(conv, a)) for a in (0, 1))
    o, ci, y, x = (a.ravel() for a in np.meshgrid(np.arange(c_out), np.arange(c_in_g), np.arange(ys.size),
                                                  np.arange(xs.size), indexing="ij"))  # fmt: skip
    oy, u, ox, v = ys[y], us[y], xs[x], vs[x]
    iy, ix = oy * sy - py + u * dy, ox * sx - px + v * dx
    c = (o // (c_out // conv.groups)) * c_in_g + ci
    rows, cols = (o * Ho + oy) * Wo + ox, (c * H + iy) * W + ix
    taps = ((o * c_in_g + ci) * kh + u) * kw + v
    return rows, cols, taps


@functools.cache
def _inside(size: int, out: int, k: int, stride: int, pad: int, dil: int) -> np.ndarray:
    """`(out, k)`: whether tap `u` of output `o`'s window, `o·stride − pad + u·dil`, is inside
    `0..size−1` (cached, read-only: edge counts and sums are asked for on every call of a search)."""
    pos = np.arange(out)[:, None] * stride - pad + np.arange(k)[None, :] * dil
    inside = ((pos >= 0) & (pos < size)).astype(np.int64)
    inside.flags.writeable = False
    return inside
