"""Assemble a `SignedGraph` from a network's tensor operations (the importers' common core).

A tensor is either a `View` — existing nodes arranged in the tensor's shape (`-1`: a structural
zero, no node), so reshapes, transposes, slices, gathers, broadcasts and concatenations only
rearrange node numbers and add no edges — or a `Pending` sum of blocks from earlier layers that has
no nodes yet (a future layer of shape `base`, whose nodes the tensor arranges as `index`). Linear
maps (dense, conv, pooling) start a `Pending`; a skip sum adds blocks to it and a scale (a folded
BatchNormalization) multiplies them, so `BN(conv(x)) + y` becomes one layer with edges `s ⊙ K` from
`x` and identity edges from `y`. A pending sum becomes a layer (new nodes) when an activation, a
non-bijective rearrangement or another linear map needs its values.

Dtype rule: weights keep their stored precision while the graph is built (at least float32;
structural weights in the analysis default), and `build` casts a graph of at most
`FLOAT64_MAX_EDGES` edges to the analysis default (`jnp.result_type(float)`, float64 with x64 on)
and a larger one to float32; an explicit `dtype` is used throughout instead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError
from .activations import IDENTITY, Activation, compose
from .blocks import (
    Block,
    Broadcast,
    ChannelRoute,
    ChannelScale,
    Conv2d,
    ConvTranspose2d,
    Dense,
    Pool,
    Route,
    Shape,
    Skip,
    Sparse,
)
from .graph import Layer, SignedGraph

FLOAT64_MAX_EDGES = 10**7  # graphs up to this many edges are built in float64 by default
_DENSE_LIMIT = 2**22  # entries of a dense fallback block (32 MiB in float64)


@dataclasses.dataclass(frozen=True)
class View:
    """Existing nodes (global numbers, `-1` for a structural zero) arranged in a tensor's shape."""

    nodes: np.ndarray

    @property
    def shape(self) -> Shape:
        return self.nodes.shape


@dataclasses.dataclass(frozen=True)
class Pending:
    """`Σ_j A_j x_j` over earlier layers `j` (`terms[j] = A_j`, into a layer of shape `base`), not
    yet a layer; the tensor is that layer's nodes arranged as `index` (a permutation of
    `0..size−1` in the tensor's shape)."""

    base: Shape
    terms: dict[int, Block]
    name: str
    index: np.ndarray

    @property
    def shape(self) -> Shape:
        return self.index.shape

    @classmethod
    def of(cls, terms: dict[int, Block], name: str) -> Pending:
        """The sum of `terms` in its natural arrangement."""
        base = next(iter(terms.values())).out_shape
        return cls(base, terms, name, np.arange(math.prod(base)).reshape(base))


Tensor = View | Pending


@dataclasses.dataclass
class _Draft:
    name: str
    shape: Shape
    inputs: dict[int, Block]
    activation: Activation = IDENTITY


class GraphBuilder:
    """Layers created so far and the operations that create them (see the module docstring).

    A `Pending` passed to an operation is consumed: callers materialize (`view`) a pending tensor
    that has several consumers before using it, so its edges are not duplicated. Shapes are taken
    as given (no batch axis is assumed); a new layer made from a view keeps the view's shape, or
    the shape of the one layer the view rearranges.
    """

    def __init__(self, dtype=None):
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.float = self.dtype or np.dtype(jnp.result_type(float))  # structural weights
        self.layers: list[_Draft] = []
        self.starts = [0]

    def weights(self, w) -> np.ndarray:
        """`w` in the build precision: the explicit dtype, else its own (at least float32)."""
        w = np.asarray(w)
        return w.astype(self.dtype or np.result_type(w.dtype, np.float32), copy=False)

    # ------------------------------------------------------------------ layers and views

    def _new_layer(self, name: str, shape: Shape, inputs: dict[int, Block]) -> View:
        unique = _unique(name, {d.name for d in self.layers})
        self.layers.append(_Draft(unique, tuple(int(s) for s in shape), dict(inputs)))
        size = math.prod(shape)
        self.starts.append(self.starts[-1] + size)
        return View(self.starts[-2] + np.arange(size).reshape(shape))

    def input(self, name: str, shape: Shape) -> View:
        """A layer of input nodes."""
        return self._new_layer(name, shape, {})

    def view(self, x: Tensor) -> View:
        """`x` as nodes: a pending sum becomes a new layer."""
        if isinstance(x, View):
            return x
        sources = _per_source(x)
        if sources is None:
            layer = self._new_layer(x.name, x.base, x.terms).nodes
        else:  # one layer per source, arranged as their concatenation
            name = lambda j: f"{x.name}:{self.layers[j].name}"
            layer = np.concatenate([self._new_layer(name(j), b.in_shape, {j: b}).nodes for j, b in sources])
        return View(layer.ravel()[x.index])

    def _layer_of(self, nodes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, nodes, side="right") - 1

    def _split(self, v: View):
        """Per source layer `j`: positions in `v` (flat) and their local node numbers in `j`."""
        flat = v.nodes.ravel()
        layer = np.where(flat >= 0, self._layer_of(flat), -1)
        for j in _present(layer[layer >= 0]):
            pos = np.flatnonzero(layer == j)
            yield int(j), pos, flat[pos] - self.starts[j]

    def layers_of(self, v: View) -> np.ndarray:
        """The layers that `v`'s nodes belong to."""
        flat = v.nodes.ravel()
        return _present(self._layer_of(flat[flat >= 0]))

    def _whole(self, v: View) -> int | None:
        """The layer `v` is, in its own arrangement and shape, or None."""
        flat = v.nodes.ravel()
        j = int(self._layer_of(flat[:1])[0]) if flat.size and flat[0] >= 0 else None
        if j is None or v.shape != self.layers[j].shape:
            return None
        return j if np.array_equal(flat, self.starts[j] + np.arange(flat.size)) else None

    def _permuted(self, v: View) -> int | None:
        """The layer whose nodes `v` holds, each exactly once, or None."""
        flat = v.nodes.ravel()
        if flat.size == 0 or flat.min() < 0:
            return None
        j = int(self._layer_of(flat[:1])[0])
        lo, hi = self.starts[j], self.starts[j + 1]
        ok = flat.size == hi - lo and flat.min() >= lo and flat.max() < hi
        return j if ok and _distinct(flat) == flat.size else None

    def _channels(self, v: View, exact: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """For a view made of whole channels (axis-0 slices, in their order) of layers with `v`'s
        shape after the channel axis (`exact`) or only its size: each channel's layer and channel
        number in it; else None."""
        if len(v.shape) < 1 or v.nodes.size == 0 or v.nodes.min() < 0:
            return None
        rest = v.shape[1:]
        flat = v.nodes.reshape(v.shape[0], -1)
        first = flat[:, 0]
        layer = self._layer_of(first)
        local = first - np.asarray(self.starts)[layer]
        k = math.prod(rest)
        fits = (lambda s: s == rest) if exact else (lambda s: math.prod(s) == k)
        if not all(fits(self.layers[j].shape[1:]) for j in np.unique(layer)) or np.any(local % k):
            return None
        if not np.array_equal(flat, first[:, None] + np.arange(k)):
            return None
        return layer, local // k

    def _broadcast(self, v: View) -> tuple[int, Shape] | None:
        """`(j, via)` when `v` is layer `j` (reshaped to `via`) broadcast to `v`'s shape; else None."""
        if v.nodes.size == 0 or v.nodes.min() < 0:
            return None
        via = tuple(
            1 if np.all(np.take(v.nodes, [0], axis=a) == v.nodes) else s for a, s in enumerate(v.shape)
        )
        base = View(v.nodes[tuple(slice(0, s) for s in via)])
        j = self._permuted(base)
        if j is None or via == v.shape:
            return None
        in_order = np.array_equal(base.nodes.ravel() - self.starts[j], np.arange(base.nodes.size))
        return (j, via) if in_order else None

    def _embed(self, v: View) -> dict[int, Block]:
        """Edges of weight 1 from the nodes of `v` into a new layer of `v`'s shape (none from `-1`)."""
        j = self._whole(v)
        if j is not None:
            return {j: Skip(v.shape, dtype=self.float)}
        spread = self._broadcast(v)
        if spread is not None:
            j, via = spread
            return {j: Broadcast(self.layers[j].shape, v.shape, via, dtype=self.float)}
        chans = self._channels(v)
        if chans is not None:  # a channel concatenation, permutation or selection
            layer, local = chans
            return {
                int(j): ChannelRoute(
                    local[layer == j], np.flatnonzero(layer == j), self.layers[j].shape, v.shape,
                    dtype=self.float,
                )
                for j in np.unique(layer)
            }  # fmt: skip
        terms = {}
        for j, pos, local in self._split(v):
            shape = self.layers[j].shape
            if local.size == math.prod(shape) and _distinct(local) == local.size:
                index = np.empty(local.size, np.int64)
                index[local] = pos
                terms[j] = Route(index, shape, v.shape, dtype=self.float)
            else:
                terms[j] = Sparse(pos, local, 1.0, shape, v.shape, dtype=self.float)
        if not terms:
            raise InputError(f"a tensor of shape {v.shape} holds no nodes (all structural zeros)")
        return terms

    def _pending(self, x: Tensor, name: str) -> Pending:
        """`x` as a pending sum: a view becomes identity edges into a layer that keeps the shape of
        the one layer it rearranges (so those edges are a `Skip`), or else the view's shape."""
        if isinstance(x, Pending):
            return x
        j = self._permuted(x)
        if j is None:
            return Pending.of(self._embed(x), name)
        base = self.layers[j].shape
        return Pending(base, {j: Skip(base, dtype=self.float)}, name, x.nodes - self.starts[j])

    def _scatter_channels(self, chans, kernel: np.ndarray, make) -> dict[int, Block]:
        """Split `kernel` `(C_out, C, kh, kw)` over the layers that the input channels come from."""
        layer, local = chans
        terms = {}
        for j in np.unique(layer):
            sel = np.flatnonzero(layer == j)
            k = np.zeros((kernel.shape[0], self.layers[j].shape[0], *kernel.shape[2:]), kernel.dtype)
            np.add.at(k.transpose(1, 0, 2, 3), local[sel], kernel.transpose(1, 0, 2, 3)[sel])
            terms[int(j)] = make(k, self.layers[j].shape)
        return terms

    def _image(self, x: Tensor, what: str) -> tuple[View, tuple]:
        """`x` as a `(C, H, W)` view without its border of structural zeros (zero padding), and
        that border as `((top, bottom), (left, right))`."""
        v = self.view(x)
        if len(v.shape) != 3:
            raise InputError(f"{what} needs a (C, H, W) input, got shape {v.shape}")
        live = v.nodes >= 0
        pads, cut = [], [slice(None)]
        for a in (1, 2):
            rows = np.flatnonzero(live.any(axis=tuple(b for b in range(3) if b != a)))
            if rows.size == 0:
                raise InputError(f"{what}: the input holds no nodes (all zero padding)")
            pads.append((int(rows[0]), int(v.shape[a] - 1 - rows[-1])))
            cut.append(slice(rows[0], rows[-1] + 1))
        inner = View(v.nodes[tuple(cut)])
        if inner.nodes.min() < 0:
            raise InputError(
                f"{what}: the input has structural zeros inside (only zero padding is supported)"
            )
        return inner, tuple(pads)

    def _relay(self, v: View, name: str) -> View:
        """A new layer `name` of `v`'s shape whose nodes copy `v`'s (unit edges: `Route`,
        `ChannelRoute` or `Sparse`, structure, not learned)."""
        return self._new_layer(name, v.shape, self._embed(v))

    def _reading(self, v: View, name: str):
        """The layer `v` is, or its channels (a concatenation or permutation of whole channels);
        else (a rearrangement that moved nodes across positions, such as YOLOv5's Focus) the new
        layer `name:routed` that copies `v` (`_relay`)."""
        j = self._whole(v)
        if j is not None:
            return j, None
        chans = self._channels(v)
        if chans is None:
            self._relay(v, f"{name}:routed")
            return len(self.layers) - 1, None
        return None, chans

    # ------------------------------------------------------------------ operations

    def dense(self, x: Tensor, weight, name: str) -> Pending:
        """`W x` on the flattened input, `W` of shape `(d_out, size of x)`."""
        x = self.view(x)
        weight = self.weights(weight)
        if weight.ndim != 2 or weight.shape[1] != x.nodes.size:
            raise InputError(
                f"weight of shape {weight.shape} must be (outputs, {x.nodes.size}) for an input of "
                f"shape {x.shape}"
            )
        out = (weight.shape[0],)
        j = self._permuted(x)
        if j is not None and np.array_equal(x.nodes.ravel(), self.starts[j] + np.arange(x.nodes.size)):
            return Pending.of({j: Dense(weight, self.layers[j].shape, out)}, name)
        terms = {}
        for j, pos, local in self._split(x):
            w = np.zeros((self.starts[j + 1] - self.starts[j], weight.shape[0]), weight.dtype)
            np.add.at(w, local, weight.T[pos])
            terms[j] = Dense(w.T, self.layers[j].shape, out)
        return Pending.of(terms, name)

    def conv(self, x: Tensor, kernel, name: str, stride=1, padding=0, dilation=1, groups: int = 1) -> Pending:
        """A 2-D convolution of a `(C, H, W)` input, `kernel` of shape `(C_out, C/groups, kh, kw)`;
        a border of structural zeros around the input adds to `padding`."""
        x, border = self._image(x, "a 2-D convolution")
        kernel = self.weights(kernel)
        if kernel.ndim != 4 or kernel.shape[1] * groups != x.shape[0] or kernel.shape[0] % groups:
            raise InputError(
                f"kernel of shape {kernel.shape} with groups={groups} does not fit an input of shape "
                f"{x.shape} (needs (C_out, {x.shape[0]}/groups, kh, kw), C_out divisible by groups)"
            )
        padding = _add_pads(padding, border)
        j, chans = self._reading(x, name)
        if j is not None:
            return Pending.of({j: Conv2d(kernel, x.shape, stride, padding, dilation, groups)}, name)
        make = lambda k, shape: Conv2d(k, shape, stride, padding, dilation)
        return Pending.of(self._scatter_channels(chans, _ungroup(kernel, groups), make), name)

    def conv_transpose(self, x: Tensor, kernel, name: str, stride=1, padding=0, dilation=1, groups: int = 1,
                       output_padding=0) -> Pending:  # fmt: skip
        """A 2-D transposed convolution of a `(C, H, W)` input, `kernel` `(C, C_out/groups, kh, kw)`."""
        x = self.view(x)
        if len(x.shape) != 3:
            raise InputError(f"a 2-D transposed convolution needs a (C, H, W) input, got shape {x.shape}")
        kernel = self.weights(kernel)
        if kernel.ndim != 4 or kernel.shape[0] != x.shape[0] or kernel.shape[0] % groups:
            raise InputError(
                f"kernel of shape {kernel.shape} with groups={groups} does not fit an input of shape "
                f"{x.shape} (needs ({x.shape[0]}, C_out/groups, kh, kw), {x.shape[0]} divisible by groups)"
            )
        geometry = (stride, padding, dilation)
        j, chans = self._reading(x, name)
        if j is not None:
            return Pending.of({j: ConvTranspose2d(kernel, x.shape, *geometry, groups, output_padding)}, name)
        c, c_out_g, kh, kw = kernel.shape  # as a grouped (C_out, C/groups, kh, kw) kernel, ungrouped
        grouped = kernel.reshape(groups, c // groups, c_out_g, kh, kw).transpose(0, 2, 1, 3, 4)
        full = _ungroup(grouped.reshape(groups * c_out_g, c // groups, kh, kw), groups)
        make = lambda k, shape: ConvTranspose2d(k.transpose(1, 0, 2, 3), shape, *geometry, 1, output_padding)
        return Pending.of(self._scatter_channels(chans, full, make), name)

    def linear(self, x: Tensor, weight, axis: int, name: str) -> Pending:
        """`Σ_k x[…, k, …] W[k, m]` over axis `axis` of `x` (a MatMul by a constant): a 1×1
        convolution when that axis runs over the channels of `(C, H, W)` layers and the other axes
        over their positions (a Linear layer on channels-last images), else a dense map when the
        other axes have size 1; the output is arranged back in `x`'s order."""
        weight = self.weights(weight)
        moved = np.moveaxis(self.view(x).nodes, axis, 0)
        if weight.ndim != 2 or weight.shape[0] != moved.shape[0]:
            raise InputError(f"weight of shape {weight.shape} must be ({moved.shape[0]}, outputs)")
        rest = moved.shape[1:]
        chans = self._channels(View(moved.reshape(moved.shape[0], -1)), exact=False)
        spatial = {self.layers[j].shape[1:] for j in np.unique(chans[0])} if chans is not None else set()
        if len(spatial) == 1 and len(next(iter(spatial))) == 2:
            make = lambda k, shape: Conv2d(k, shape)
            p = Pending.of(self._scatter_channels(chans, weight.T[:, :, None, None], make), name)
        elif math.prod(rest) == 1:
            p = self.dense(View(moved.ravel()), weight.T, name)
        else:
            raise InputError(
                f"a product by a constant over axis {axis} of a tensor of shape {x.shape} is supported "
                "over the channels of (C, H, W) layers at each of their positions (a Linear layer on "
                "channels-last images: a 1x1 convolution) or over a flat vector; here the other axes "
                "are not positions of such layers (e.g. a sequence of tokens)"
            )
        index = np.moveaxis(p.index.reshape(weight.shape[1], *rest), 0, axis)
        return dataclasses.replace(p, index=index)

    def depends(self, x: View, on: View) -> bool:
        """Whether some node of `x` is computed from (has a path from) a node of `on`."""
        targets, seen = set(self.layers_of(on)), set()
        stack = [int(j) for j in self.layers_of(x)]
        while stack:
            for src in self.layers[stack.pop()].inputs:
                if src in targets:
                    return True
                if src not in seen:
                    seen.add(src)
                    stack.append(src)
        return False

    def pool(self, x: Tensor, name: str, window, stride=None, padding=0, dilation=1, *, mode: str = "avg",
             count_include_pad: bool = True) -> Tensor:  # fmt: skip
        """Average or max pooling (`Pool`) per channel of a `(C, H, W)` input; a border of
        structural zeros (zero padding) adds to `padding` and counts in an average's divisor."""
        x, border = self._image(x, "2-D pooling")
        if any(map(any, border)):
            if mode == "avg" and not count_include_pad and any(map(any, _padding_pairs(padding))):
                raise InputError("zero padding before an average pool with pads and count_include_pad=0")
            padding, count_include_pad = _add_pads(padding, border), True
        make = lambda shape: Pool(window, shape, stride, padding, dilation, mode=mode,
                                  count_include_pad=count_include_pad, dtype=self.float)  # fmt: skip
        j, chans = self._reading(x, name)
        if j is not None:
            return Pending.of({j: make(x.shape)}, name)
        layer, local = chans  # pool each source layer into a layer of its own, then pick the channels
        pooled = {}
        for j in np.unique(layer):
            block = make(self.layers[j].shape)
            pooled[j] = self._new_layer(f"{name}:{self.layers[j].name}", block.out_shape, {int(j): block})
        return View(np.stack([pooled[j].nodes[c] for j, c in zip(layer, local)]))

    def reduce(self, x: Tensor, axes: Sequence[int], name: str, mode: str = "avg") -> Tensor:
        """The mean (`"avg"`), sum or maximum (`"max"`: edges of weight 1, as a max pool) over
        `axes`, which are kept with size 1: a global `Pool` of whole channels over `(H, W)`, else
        `Sparse` edges (no edges when the reduced axes have size 1)."""
        v = self.view(x)
        out = tuple(1 if a in axes else s for a, s in enumerate(v.shape))
        if out == v.shape:
            return v
        k = math.prod(v.shape) // math.prod(out)
        if (
            len(v.shape) == 3
            and set(axes) == {1, 2}
            and v.nodes.min() >= 0
            and (self._whole(v) is not None or self._channels(v) is not None)
        ):
            pooled = self.pool(v, name, v.shape[1:], mode="max" if mode == "max" else "avg")
            return self.scale(pooled, np.full(pooled.shape, float(k)), name) if mode == "sum" else pooled
        rows = np.broadcast_to(np.arange(math.prod(out)).reshape(out), v.shape)
        weight = 1.0 / k if mode == "avg" else 1.0
        return self.linear_map(v, out, rows.ravel(), np.arange(v.nodes.size), weight, name)

    def linear_map(self, x: Tensor, out_shape: Shape, rows, cols, weight, name: str) -> Pending:
        """`out[rows[k]] += weight[k] · x[cols[k]]` (flat positions): fixed `Sparse` edges."""
        nodes = self.view(x).nodes.ravel()[np.asarray(cols)]
        rows = np.asarray(rows)
        weight = np.broadcast_to(np.asarray(weight, self.float), rows.shape)
        terms = {
            j: Sparse(rows[pos], local, weight[pos], self.layers[j].shape, out_shape, dtype=self.float)
            for j, pos, local in self._split(View(nodes))
        }
        if not terms:
            raise InputError("the map reads no nodes")
        return Pending.of(terms, name)

    def add(self, a: Tensor, b: Tensor, name: str, sign: float = 1.0) -> Pending:
        """`a + sign · b` (a residual sum); the smaller tensor may broadcast to the other's shape."""
        if not (_broadcasts(b.shape, a.shape) or _broadcasts(a.shape, b.shape)):
            raise InputError(f"cannot add tensors of shapes {a.shape} and {b.shape} (not broadcastable)")
        lead_b = b.shape != a.shape and _broadcasts(a.shape, b.shape)
        if lead_b or (isinstance(a, View) and isinstance(b, Pending) and b.shape == a.shape):
            total = self.add(b, a, name, sign)  # a + s·b = s·(b + s·a): keep b's layout
            return total if sign == 1 else self.scale(total, np.full(total.shape, sign), name)
        if b.shape != a.shape:
            b = View(np.broadcast_to(self.view(b).nodes, a.shape))
        p = self._pending(a, name)
        terms = dict(p.terms)
        for j, block in self._terms_in(b, p).items():
            block = block if sign == 1 else _scale_block(block, np.full(block.out_shape, sign))
            terms[j] = _merge(terms[j], block, self.layers[j].name) if j in terms else block
        return dataclasses.replace(p, terms=terms, name=name)

    def _terms_in(self, x: Tensor, p: Pending) -> dict[int, Block]:
        """Blocks giving `x` in the layout of the pending sum `p` (base and arrangement)."""
        if isinstance(x, Pending) and x.base == p.base and np.array_equal(x.index, p.index):
            return x.terms
        nodes = np.empty(math.prod(p.base), np.int64)
        nodes[p.index.ravel()] = self.view(x).nodes.ravel()
        return self._embed(View(nodes.reshape(p.base)))

    def scale(self, x: Tensor, factor, name: str, learned: bool = False) -> Tensor:
        """`factor ⊙ x` for a factor broadcastable to `x`'s shape: multiplies the incoming edges (a
        folded BatchNormalization; per channel on convolutions, per node on other blocks). With
        `learned` (a trained per-channel factor), identity and channel-routing edges become
        `ChannelScale` edges, which null models shuffle; otherwise they keep their kind."""
        try:
            factor = np.broadcast_to(np.asarray(factor), x.shape)
        except ValueError:
            raise InputError(
                f"a scale of shape {np.shape(factor)} does not broadcast to the tensor's shape {x.shape}"
            ) from None
        if np.all(factor == 1):
            return x
        p = self._pending(x, name)
        per_node = np.empty(math.prod(p.base), factor.dtype)
        per_node[p.index.ravel()] = factor.ravel()
        per_node = per_node.reshape(p.base)
        terms = {j: _scale_block(b, per_node, learned) for j, b in p.terms.items()}
        return dataclasses.replace(p, terms=terms, name=name)

    def activate(self, x: Tensor, activation: Activation, name: str = "", shared: bool = False) -> View:
        """Apply an elementwise activation: recorded on the layers that hold `x`'s nodes, or, when
        `shared` (the values before the activation are read elsewhere too) or `x` holds only part
        of a layer, on a new layer `name` fed by identity edges."""
        x = self.view(x)
        layers = self.layers_of(x)
        size = sum(self.starts[j + 1] - self.starts[j] for j in layers)
        covered = x.nodes.min() >= 0 and _distinct(x.nodes) == size  # repeats (broadcasts) are fine
        if shared or not covered:
            x = self.view(self._pending(x, name))
            layers = self.layers_of(x)
        for j in layers:
            self.layers[j].activation = compose(activation, self.layers[j].activation)
        return x

    def gate(self, x: Tensor, g: Tensor, name: str, activation: Activation) -> View:
        """`x ⊙ g` with `g` broadcast to `x`'s shape (a channel gate): a new layer with identity
        edges from `x` and `Broadcast` edges of weight 1 from `g`, recording `activation`."""
        if not _broadcasts(g.shape, x.shape):
            raise InputError(f"a gate of shape {g.shape} does not broadcast to {x.shape}")
        gated = self.view(self.add(self.view(x), self.view(g), name))
        self.layers[int(self.layers_of(gated)[0])].activation = activation
        return gated

    def reshape(self, x: Tensor, shape: Shape) -> Tensor:
        """The same nodes in another shape (C order)."""
        if math.prod(shape) != math.prod(x.shape):
            raise InputError(f"cannot reshape a tensor of shape {x.shape} to {shape}")
        return self.rearrange(x, lambda nodes: nodes.reshape(shape))

    def rearrange(self, x: Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> Tensor:
        """`fn` (a rearrangement of an array's entries: transpose, slice, gather, …) applied to the
        nodes of `x`; a pending sum stays pending when `fn` permutes all of its entries."""
        if isinstance(x, Pending):
            index = fn(x.index)
            if index.size == x.index.size and index.min() >= 0 and _distinct(index) == index.size:
                return dataclasses.replace(x, index=index)
        return View(fn(self.view(x).nodes))

    # ------------------------------------------------------------------ the graph

    def build(self, outputs: Sequence[Tensor], names: Sequence[str] = ()) -> SignedGraph:
        """The graph, with its output layer last: the layer of the one output, or the layers of
        several outputs stacked along axis 0, when they are distinct whole layers that feed no
        other layer and agree on their other axes and their activation; otherwise a new layer
        `output` that copies the outputs' nodes, flattened and concatenated in order (`_relay`),
        and the graph's metadata `"outputs"` says which of its nodes each output is (named by
        `names`). Weights are cast by the dtype rule of the module docstring."""
        views = [self.view(t) for t in outputs]
        heads = [self._permuted(v) for v in views]
        whole = (
            None not in heads
            and len(set(heads)) == len(heads)
            and len({(self.layers[j].shape[1:], self.layers[j].activation) for j in heads}) == 1
            and not any(j in d.inputs for d in self.layers for j in heads)
        )
        metadata = ()
        if not whole:
            self._relay(View(np.concatenate([v.nodes.ravel() for v in views])), "output")
            heads = [len(self.layers) - 1]
            ends = np.cumsum([v.nodes.size for v in views])
            parts = [
                f"{name} {v.shape}: nodes {end - v.nodes.size}..{end - 1}"
                for name, v, end in zip(names or map(str, range(len(views))), views, ends)
            ]
            metadata = (("outputs", f"{self.layers[-1].name!r}: " + "; ".join(parts)),)
        order = [j for j in range(len(self.layers)) if j not in heads]
        drafts = {j: self.layers[j] for j in order}
        if len(heads) == 1:
            drafts[-1] = self.layers[heads[0]]
        else:
            name = _unique("output", {d.name for d in drafts.values()})
            drafts[-1] = _stack([self.layers[j] for j in heads], name, self.float)
        name = {j: drafts[j].name for j in drafts}
        graph = SignedGraph.from_layers(
            [
                Layer(d.name, {name[src]: b for src, b in d.inputs.items()}, d.shape, d.activation)
                for d in (drafts[j] for j in (*order, -1))
            ]
        )
        dtype = self.dtype or (self.float if graph.num_edges() <= FLOAT64_MAX_EDGES else np.dtype(np.float32))
        return dataclasses.replace(graph.astype(dtype), metadata=metadata)


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_k` with the smallest `k` not in `taken`."""
    return next(n for n in (name, *(f"{name}_{k}" for k in range(1, len(taken) + 2))) if n not in taken)


def _present(values: np.ndarray) -> np.ndarray:
    """The distinct values of small non-negative integers (layer numbers), sorted."""
    return np.flatnonzero(np.bincount(values.ravel())) if values.size else values.ravel()


def _distinct(values: np.ndarray) -> int:
    """The number of distinct values of an integer array (O(size + range), no sort or hash)."""
    flat = values.ravel()
    return int(np.count_nonzero(np.bincount(flat - flat.min()))) if flat.size else 0


def _broadcasts(shape: Shape, to: Shape) -> bool:
    try:
        return np.broadcast_shapes(shape, to) == tuple(to)
    except ValueError:
        return False


def _padding_pairs(p) -> tuple:
    if isinstance(p, (int, np.integer)):
        return ((p, p), (p, p))
    return tuple((q, q) if isinstance(q, (int, np.integer)) else tuple(q) for q in p)


def _add_pads(padding, border) -> tuple:
    return tuple((a + c, b + d) for (a, b), (c, d) in zip(_padding_pairs(padding), border))


# ---------------------------------------------------------------------- block algebra


def _ungroup(kernel: np.ndarray, groups: int) -> np.ndarray:
    """A grouped kernel `(C_out, C/g, kh, kw)` as the equivalent dense one `(C_out, C, kh, kw)`."""
    if groups == 1:
        return kernel
    c_out, c_in_g = kernel.shape[:2]
    out_g = c_out // groups
    full = np.zeros((c_out, c_in_g * groups, *kernel.shape[2:]), kernel.dtype)
    for g in range(groups):
        full[g * out_g : (g + 1) * out_g, g * c_in_g : (g + 1) * c_in_g] = kernel[g * out_g : (g + 1) * out_g]
    return full


def _per_source(p: Pending) -> list[tuple[int, Block]] | None:
    """For a per-channel map of a channel concatenation (each term a `ChannelRoute` from a whole
    source layer onto the next channels of `p.base`, covering them): per source, in channel order,
    the same map as a block into a layer of the source's shape; else None. Such a sum (a
    BatchNormalization after DenseNet's concatenations) becomes one layer per source: layers keep
    their sources' few shapes, where one layer per concatenation would have a new width at every
    depth, and the search compiles its functions once per distinct shape."""
    terms = sorted(p.terms.items(), key=lambda t: int(t[1].dst[0]) if isinstance(t[1], ChannelRoute) else -1)
    if len(terms) < 2 or not all(isinstance(b, ChannelRoute) and b.is_slice for _, b in terms):
        return None
    starts = np.cumsum([0] + [b.in_shape[0] for _, b in terms])
    if starts[-1] != p.base[0] or any(int(b.dst[0]) != s for (_, b), s in zip(terms, starts)):
        return None
    own = lambda b: type(b)(np.arange(b.in_shape[0]), np.arange(b.in_shape[0]), b.in_shape,
                            b.in_shape, b.scale, dtype=b.scale.dtype)  # fmt: skip
    return [(j, own(b)) for j, b in terms]


def _small_dense(block: Block, why: str) -> Dense:
    n_in, n_out = math.prod(block.in_shape), math.prod(block.out_shape)
    if n_in * n_out > _DENSE_LIMIT:
        raise InputError(f"{why} ({type(block).__name__} block {block.in_shape} -> {block.out_shape})")
    return Dense(np.asarray(block.to_dense()), block.in_shape, block.out_shape)


def _channel_entries(block: Block) -> tuple | None:
    """`(src, dst, weight)` per channel edge of a block that only links equal positions of
    channels (`Skip`, `ChannelRoute`), else None."""
    if isinstance(block, Skip):
        c = block.in_shape[0]
        return np.arange(c), np.arange(c), np.full(c, np.asarray(block.weight))
    if isinstance(block, ChannelRoute):
        return np.asarray(block.src), np.asarray(block.dst), np.asarray(block.scale)
    return None


def _from_channel_entries(src, dst, weight, like: Block, learned: bool) -> Block:
    """Channel edges `src → dst` (duplicates summed) between `like`'s layers: a `ChannelRoute`
    (`ChannelScale` if `learned`) when each output channel reads one channel, else a 1×1 `Conv2d`."""
    c_in = like.in_shape[0]
    pairs, inverse = np.unique(dst * c_in + src, return_inverse=True)
    summed = np.zeros(pairs.shape, weight.dtype)
    np.add.at(summed, inverse, weight)
    src, dst = pairs % c_in, pairs // c_in
    if _distinct(dst) == dst.size:
        return (ChannelScale if learned else ChannelRoute)(src, dst, like.in_shape, like.out_shape, summed)
    m = np.zeros((like.out_shape[0], c_in), weight.dtype)
    m[dst, src] = summed
    return Conv2d(m[:, :, None, None], like.in_shape)


def _as_conv(block: Block, like: Conv2d) -> Conv2d | None:
    """`block` as a convolution with `like`'s geometry (per-channel edges at the centre tap)."""
    if isinstance(block, Conv2d):
        return block
    kh, kw = like.kernel.shape[2:]
    centred = like.stride == (1, 1) and all(
        k % 2 and p == (d * (k - 1) // 2,) * 2 for k, p, d in zip((kh, kw), like.padding, like.dilation)
    )
    entries = _channel_entries(block) if len(block.in_shape) == 3 else None
    if entries is None or not centred:
        return None
    src, dst, weight = entries
    kernel = np.zeros((block.out_shape[0], block.in_shape[0], kh, kw), like.kernel.dtype)
    np.add.at(kernel[:, :, kh // 2, kw // 2], (dst, src), weight)
    return Conv2d(kernel, block.in_shape, like.stride, like.padding, like.dilation)


def _merge(a: Block, b: Block, source: str) -> Block:
    """One block with the edges of both (two paths from the same layer into one sum)."""
    if isinstance(a, Dense) and isinstance(b, Dense):
        return Dense(a.weight + b.weight, a.in_shape, a.out_shape)
    if isinstance(a, Skip) and isinstance(b, Skip):
        return Skip(a.in_shape, a.weight + b.weight)
    if isinstance(a, Sparse) and isinstance(b, Sparse):
        cat = lambda f: np.concatenate([np.asarray(f(a)), np.asarray(f(b))])
        return Sparse(cat(lambda s: s.rows), cat(lambda s: s.cols), cat(lambda s: s.weight), a.in_shape,
                      a.out_shape, dtype=a.weight.dtype)  # fmt: skip
    if isinstance(a, ConvTranspose2d) and isinstance(b, ConvTranspose2d):
        conv = _merge(a.conv, b.conv, source)
        if isinstance(conv, Conv2d):
            return eqx.tree_at(lambda t: t.conv, a, conv)
    ea, eb = _channel_entries(a), _channel_entries(b)
    if ea is not None and eb is not None:
        src, dst, weight = (np.concatenate([u, v]) for u, v in zip(ea, eb))
        return _from_channel_entries(src, dst, weight, a, a.learned or b.learned)
    like = a if isinstance(a, Conv2d) else b
    if isinstance(like, Conv2d):
        ca, cb = _as_conv(a, like), _as_conv(b, like)
        same = (
            ca is not None
            and cb is not None
            and (ca.kernel.shape[2:], ca.stride, ca.padding, ca.dilation)
            == (cb.kernel.shape[2:], cb.stride, cb.padding, cb.dilation)
        )
        if same:
            kernel = _ungroup(np.asarray(ca.kernel), ca.groups) + _ungroup(np.asarray(cb.kernel), cb.groups)
            return Conv2d(kernel, ca.in_shape, ca.stride, ca.padding, ca.dilation)
    why = f"two paths from layer {source!r} meet in one sum and cannot be merged into one block"
    return Dense(_small_dense(a, why).weight + _small_dense(b, why).weight, a.in_shape, a.out_shape)


def _scale_block(block: Block, factor: np.ndarray, learned: bool = False) -> Block:
    """`diag(factor) · A_b` for a per-node `factor` of `block.out_shape` (`learned`: see `scale`)."""
    (weight, *_) = jax.tree.leaves(eqx.filter(block, eqx.is_inexact_array))
    factor = np.asarray(factor, weight.dtype)
    flat = factor.reshape(factor.shape[0], -1) if factor.ndim else factor.reshape(1, 1)
    per_channel = flat[:, 0] if np.all(flat == flat[:, :1]) else None
    scalar = per_channel[0] if per_channel is not None and np.all(per_channel == per_channel[0]) else None
    structure = (Skip, Route, Broadcast, ChannelRoute, Pool, Sparse)
    entries = _channel_entries(block)
    if scalar is not None and isinstance(block, structure) and not (learned and entries is not None):
        return block.map_weights(lambda w: w * scalar)
    if isinstance(block, Dense):
        return Dense(np.asarray(block.weight) * factor.reshape(-1, 1), block.in_shape, block.out_shape)
    if isinstance(block, Pool):
        return eqx.tree_at(lambda b: b.scale, block, block.scale * factor)
    if isinstance(block, Sparse):
        return eqx.tree_at(lambda b: b.weight, block, block.weight * factor.ravel()[np.asarray(block.rows)])
    if per_channel is not None and isinstance(block, Conv2d):
        return eqx.tree_at(lambda b: b.kernel, block, block.kernel * per_channel[:, None, None, None])
    if per_channel is not None and isinstance(block, ConvTranspose2d):
        c_in, c_out_g, kh, kw = block.conv.kernel.shape
        g = block.conv.groups
        k = block.conv.kernel.reshape(g, c_in // g, c_out_g, kh, kw) * per_channel.reshape(
            g, 1, c_out_g, 1, 1
        )
        return eqx.tree_at(lambda b: b.conv.kernel, block, k.reshape(c_in, c_out_g, kh, kw))
    if per_channel is not None and entries is not None:
        src, dst, weight = entries
        return _from_channel_entries(src, dst, weight * per_channel[dst], block, learned or block.learned)
    dense = _small_dense(block, "a per-position scale of this block is not supported at this size")
    return Dense(np.asarray(dense.weight) * factor.reshape(-1, 1), block.in_shape, block.out_shape)


def _stack(drafts: Sequence[_Draft], name: str, dtype) -> _Draft:
    """Output layers of one activation that agree after axis 0, stacked into one along it."""
    shape = (sum(d.shape[0] for d in drafts), *drafts[0].shape[1:])
    inputs = {}
    for src in sorted({s for d in drafts for s in d.inputs}):
        blocks = [d.inputs.get(src) for d in drafts]
        in_shape = next(b.in_shape for b in blocks if b is not None)
        convs = [b for b in blocks if isinstance(b, Conv2d)]
        geometry = {(c.kernel.shape[2:], c.stride, c.padding, c.dilation) for c in convs}
        if len(convs) == sum(b is not None for b in blocks) and len(geometry) == 1:
            c0 = convs[0]
            kernels = [
                _ungroup(np.asarray(b.kernel), b.groups)
                if b is not None
                else np.zeros((d.shape[0], in_shape[0], *c0.kernel.shape[2:]), c0.kernel.dtype)
                for b, d in zip(blocks, drafts)
            ]
            inputs[src] = Conv2d(np.concatenate(kernels), in_shape, c0.stride, c0.padding, c0.dilation)
            continue
        why = "output heads whose blocks cannot be stacked into one output layer"
        rows = [
            np.asarray(_small_dense(b, why).weight)
            if b is not None
            else np.zeros((math.prod(d.shape), math.prod(in_shape)), dtype)
            for b, d in zip(blocks, drafts)
        ]
        inputs[src] = Dense(np.concatenate(rows), in_shape, shape)
    return _Draft(name, shape, inputs, drafts[0].activation)
