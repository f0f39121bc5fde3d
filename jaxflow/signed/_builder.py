"""Assemble a `SignedGraph` from a network's tensor operations (the importers' common core).

A tensor is either a `View` — existing nodes arranged in the tensor's shape, so Flatten, Reshape,
Transpose and Concat only rearrange node numbers and add no edges — or a `Pending` sum of blocks
from earlier layers that has no nodes yet. Linear maps (dense, conv, pooling) start a `Pending`;
a skip sum adds blocks to it and a per-channel scale (a folded BatchNormalization) multiplies
them, so `BN(conv(x)) + y` becomes one layer with edges `s ⊙ K` from `x` and identity edges from
`y`. A pending sum becomes a layer (new nodes) when an activation, a rearrangement or another
linear map needs its values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .graph import Activation, Block, Conv2d, Dense, Layer, Pool, Route, SignedGraph, Skip

Shape = tuple[int, ...]
IDENTITY = Activation()
_DENSE_LIMIT = 2**22  # entries of a dense fallback block (32 MiB in float64)


@dataclasses.dataclass(frozen=True)
class View:
    """Existing nodes (global numbers) arranged in a tensor's shape."""

    nodes: np.ndarray

    @property
    def shape(self) -> Shape:
        return self.nodes.shape


@dataclasses.dataclass(frozen=True)
class Pending:
    """`Σ_j A_j x_j` over earlier layers `j` (`terms[j] = A_j`), not yet a layer."""

    shape: Shape
    terms: dict[int, Block]
    name: str


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
    that has several consumers before using it, so its edges are not duplicated.
    """

    def __init__(self, dtype=None):
        self.dtype = np.dtype(dtype or jnp.result_type(float))
        self.layers: list[_Draft] = []
        self.starts = [0]

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
        return x if isinstance(x, View) else self._new_layer(x.name, x.shape, x.terms)

    def _layer_of(self, nodes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, nodes, side="right") - 1

    def _split(self, v: View):
        """Per source layer `j`: positions in `v` (flat) and their local node numbers in `j`."""
        flat = v.nodes.ravel()
        layer = self._layer_of(flat)
        for j in np.unique(layer):
            pos = np.flatnonzero(layer == j)
            yield int(j), pos, flat[pos] - self.starts[j]

    def _whole(self, v: View) -> int | None:
        """The layer `v` is, in its own arrangement, or None."""
        j = int(self._layer_of(v.nodes.ravel()[:1])[0])
        size = self.starts[j + 1] - self.starts[j]
        same = v.shape == self.layers[j].shape and np.array_equal(
            v.nodes.ravel(), self.starts[j] + np.arange(size)
        )
        return j if same else None

    def _channels(self, v: View) -> tuple[np.ndarray, np.ndarray] | None:
        """For a `(C, H, W)` view made of whole channels of `(C_j, H, W)` layers: each channel's
        layer and channel number in it; else None."""
        if len(v.shape) != 3:
            return None
        c, h, w = v.shape
        first = v.nodes[:, 0, 0]
        layer = self._layer_of(first)
        local = first - np.asarray(self.starts)[layer]
        shapes_ok = all(self.layers[j].shape[1:] == (h, w) for j in np.unique(layer))
        if not shapes_ok or np.any(local % (h * w)):
            return None
        if not np.array_equal(v.nodes, first[:, None, None] + np.arange(h * w).reshape(1, h, w)):
            return None
        return layer, local // (h * w)

    def _embed(self, v: View) -> dict[int, Block]:
        """Identity edges from the nodes of `v` into a new layer of `v`'s shape."""
        j = self._whole(v)
        if j is not None:
            return {j: Skip(v.shape, dtype=self.dtype)}
        chans = self._channels(v)
        if chans is not None:  # a channel permutation or concatenation: sparse 1x1 convolutions
            eye = np.eye(v.shape[0], dtype=self.dtype)[:, :, None, None]
            return self._scatter_channels(chans, eye, lambda k, shape: Conv2d(k, shape))
        terms = {}
        for j, pos, local in self._split(v):
            n_j = self.starts[j + 1] - self.starts[j]
            if len(local) != n_j or np.unique(local).size != n_j:
                raise ValueError(
                    f"a tensor of shape {v.shape} uses part of layer {self.layers[j].name!r} (or repeats "
                    "nodes of it) and cannot be added to another one"
                )
            index = np.empty(n_j, np.int64)
            index[local] = pos
            terms[j] = Route(index, self.layers[j].shape, v.shape, dtype=self.dtype)
        return terms

    def _scatter_channels(self, chans, kernel: np.ndarray, make) -> dict[int, Block]:
        """Split `kernel` `(C_out, C, kh, kw)` over the layers that the input channels come from."""
        layer, local = chans
        terms = {}
        for j in np.unique(layer):
            sel = np.flatnonzero(layer == j)
            k = np.zeros((kernel.shape[0], self.layers[j].shape[0], *kernel.shape[2:]), self.dtype)
            np.add.at(k.transpose(1, 0, 2, 3), local[sel], kernel.transpose(1, 0, 2, 3)[sel])
            terms[int(j)] = make(k, self.layers[j].shape)
        return terms

    # ------------------------------------------------------------------ operations

    def dense(self, x: Tensor, weight, name: str) -> Pending:
        """`W x` on the flattened input, `W` of shape `(d_out, size of x)`."""
        x = self.view(x)
        weight = np.asarray(weight, self.dtype)
        if weight.ndim != 2 or weight.shape[1] != x.nodes.size:
            raise ValueError(
                f"weight of shape {weight.shape} must be (outputs, {x.nodes.size}) for an input of "
                f"shape {x.shape}"
            )
        out = (weight.shape[0],)
        j = self._whole(x)
        if j is not None:
            return Pending(out, {j: Dense(weight, x.shape, out)}, name)
        terms = {}
        for j, pos, local in self._split(x):
            w = np.zeros((self.starts[j + 1] - self.starts[j], weight.shape[0]), self.dtype)
            np.add.at(w, local, weight.T[pos])
            terms[j] = Dense(w.T, self.layers[j].shape, out)
        return Pending(out, terms, name)

    def conv(self, x: Tensor, kernel, name: str, stride=1, padding=0, dilation=1, groups: int = 1) -> Pending:
        """A 2-D convolution of a `(C, H, W)` input, `kernel` of shape `(C_out, C/groups, kh, kw)`."""
        x = self.view(x)
        kernel = np.asarray(kernel, self.dtype)
        if len(x.shape) != 3:
            raise ValueError(f"a 2-D convolution needs a (C, H, W) input, got shape {x.shape}")
        if kernel.ndim != 4 or kernel.shape[1] * groups != x.shape[0] or kernel.shape[0] % groups:
            raise ValueError(
                f"kernel of shape {kernel.shape} with groups={groups} does not fit an input of shape "
                f"{x.shape} (needs (C_out, {x.shape[0]}/groups, kh, kw), C_out divisible by groups)"
            )
        j = self._whole(x)
        if j is not None:
            block = Conv2d(kernel, x.shape, stride, padding, dilation, groups)
            return Pending(block.out_shape, {j: block}, name)
        chans = self._channels(x)
        if chans is None:
            raise ValueError(
                f"the input of shape {x.shape} is not made of whole channels of earlier layers (a "
                "Reshape or Transpose moved nodes across positions); a convolution can only read "
                "channel permutations and concatenations"
            )
        full = _ungroup(kernel, groups)
        terms = self._scatter_channels(
            chans, full, lambda k, shape: Conv2d(k, shape, stride, padding, dilation)
        )
        return Pending(next(iter(terms.values())).out_shape, terms, name)

    def pool(self, x: Tensor, name: str, window, stride=None, padding=0, dilation=1, **kw) -> Tensor:
        """Average or max pooling (`Pool`, keywords `mode`, `count_include_pad`) per channel."""
        x = self.view(x)
        if len(x.shape) != 3:
            raise ValueError(f"2-D pooling needs a (C, H, W) input, got shape {x.shape}")
        make = lambda shape: Pool(window, shape, stride, padding, dilation, dtype=self.dtype, **kw)
        j = self._whole(x)
        if j is not None:
            block = make(x.shape)
            return Pending(block.out_shape, {j: block}, name)
        chans = self._channels(x)
        if chans is None:
            raise ValueError(f"the input of shape {x.shape} is not made of whole channels of earlier layers")
        layer, local = chans  # pool each source layer into a layer of its own, then pick the channels
        pooled = {}
        for j in np.unique(layer):
            block = make(self.layers[j].shape)
            pooled[j] = self._new_layer(f"{name}:{self.layers[j].name}", block.out_shape, {int(j): block})
        return View(np.stack([pooled[j].nodes[c] for j, c in zip(layer, local)]))

    def add(self, a: Tensor, b: Tensor, name: str, sign: float = 1.0) -> Pending:
        """`a + sign · b` for tensors of the same shape (a residual sum)."""
        if a.shape != b.shape:
            raise ValueError(f"cannot add tensors of shapes {a.shape} and {b.shape} (no broadcasting)")
        terms = dict(self._terms(a))
        for j, block in self._terms(b).items():
            block = block if sign == 1 else _scale_block(block, np.full(b.shape[:1], sign, self.dtype))
            terms[j] = _merge(terms[j], block, self.layers[j].name) if j in terms else block
        return Pending(a.shape, terms, name)

    def scale(self, x: Tensor, factor, name: str) -> Pending:
        """`factor[c] · x[c]` per channel (axis 0): a folded BatchNormalization."""
        factor = np.asarray(factor, self.dtype)
        if factor.shape != x.shape[:1]:
            raise ValueError(
                f"per-channel scale of shape {factor.shape} does not fit a tensor of shape {x.shape}"
            )
        return Pending(x.shape, {j: _scale_block(b, factor) for j, b in self._terms(x).items()}, name)

    def _terms(self, x: Tensor) -> dict[int, Block]:
        return x.terms if isinstance(x, Pending) else self._embed(x)

    def activate(self, x: Tensor, activation: Activation, name: str = "", shared: bool = False) -> View:
        """Apply an elementwise activation: recorded on the layers that hold `x`'s nodes, or, when
        `shared` (the values before the activation are read elsewhere too), on a new layer `name`
        fed by identity edges."""
        x = self.view(x)
        if shared:
            x = self._new_layer(name, x.shape, self._embed(x))
        for j in np.unique(self._layer_of(x.nodes.ravel())):
            old = self.layers[j].activation
            self.layers[j].activation = (
                activation
                if old == IDENTITY
                else Activation(f"{activation.name}∘{old.name}", activation.monotone and old.monotone)
            )
        return x

    def reshape(self, x: Tensor, shape: Shape) -> View:
        """The same nodes in another shape (C order)."""
        x = self.view(x)
        if math.prod(shape) != x.nodes.size:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} ({x.nodes.size} nodes) to {shape}")
        return View(x.nodes.reshape(shape))

    def transpose(self, x: Tensor, axes: Sequence[int]) -> View:
        """The same nodes with axes permuted (as `numpy.transpose`)."""
        x = self.view(x)
        if sorted(axes) != list(range(len(x.shape))):
            raise ValueError(
                f"axes {list(axes)} are not a permutation of the {len(x.shape)} axes of {x.shape}"
            )
        return View(np.transpose(x.nodes, axes))

    def concat(self, xs: Sequence[Tensor], axis: int) -> View:
        """The nodes of `xs` concatenated along `axis`."""
        views = [self.view(x) for x in xs]
        try:
            return View(np.concatenate([v.nodes for v in views], axis=axis))
        except (ValueError, np.exceptions.AxisError):
            raise ValueError(
                f"cannot concatenate shapes {[v.shape for v in views]} along axis {axis}"
            ) from None

    # ------------------------------------------------------------------ the graph

    def build(self, outputs: Sequence[Tensor]) -> SignedGraph:
        """The graph, with the layer(s) of `outputs` last: several output heads are stacked into
        one output layer (their nodes together), so they must not feed other layers."""
        heads = []
        for k, t in enumerate(outputs):
            v = self.view(t)
            j = int(self._layer_of(v.nodes.ravel()[:1])[0])
            size = self.starts[j + 1] - self.starts[j]
            if np.unique(v.nodes).size != size or not np.all(self._layer_of(v.nodes.ravel()) == j):
                raise ValueError(f"output {k} (shape {v.shape}) is not the nodes of one layer")
            heads.append(j)
        if len(set(heads)) != len(heads):
            raise ValueError("two outputs are the same nodes")
        for j in heads:
            users = [d.name for d in self.layers if j in d.inputs]
            if users:
                raise ValueError(
                    f"output layer {self.layers[j].name!r} also feeds {users}; the output layer must be last"
                )
        order = [j for j in range(len(self.layers)) if j not in heads]
        drafts = {j: self.layers[j] for j in order}
        if len(heads) == 1:
            drafts[-1] = self.layers[heads[0]]
        else:
            name = _unique("output", {d.name for d in drafts.values()})
            drafts[-1] = _stack([self.layers[j] for j in heads], name, self.dtype)
        name = {j: drafts[j].name for j in drafts}
        return SignedGraph.from_layers(
            [
                Layer(d.name, {name[src]: b for src, b in d.inputs.items()}, d.shape, d.activation)
                for d in (drafts[j] for j in (*order, -1))
            ]
        )


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_k` with the smallest `k` not in `taken`."""
    return next(n for n in (name, *(f"{name}_{k}" for k in range(1, len(taken) + 2))) if n not in taken)


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


def _small_dense(block: Block, why: str) -> Dense:
    n_in, n_out = math.prod(block.in_shape), math.prod(block.out_shape)
    if n_in * n_out > _DENSE_LIMIT:
        raise ValueError(f"{why} ({type(block).__name__} block {block.in_shape} -> {block.out_shape})")
    return Dense(np.asarray(block.to_dense()), block.in_shape, block.out_shape)


def _as_conv(block: Block, like: Conv2d) -> Conv2d | None:
    """`block` as a convolution with `like`'s geometry (identity edges at the centre tap)."""
    if isinstance(block, Conv2d):
        return block
    kh, kw = like.kernel.shape[2:]
    centred = like.stride == (1, 1) and all(
        k % 2 and p == (d * (k - 1) // 2,) * 2 for k, p, d in zip((kh, kw), like.padding, like.dilation)
    )
    if not (isinstance(block, Skip) and len(block.in_shape) == 3 and centred):
        return None
    c = block.in_shape[0]
    kernel = np.zeros((c, c, kh, kw), like.kernel.dtype)
    kernel[:, :, kh // 2, kw // 2] = np.eye(c) * np.asarray(block.weight)
    return Conv2d(kernel, block.in_shape, like.stride, like.padding, like.dilation)


def _merge(a: Block, b: Block, source: str) -> Block:
    """One block with the edges of both (two paths from the same layer into one sum)."""
    if isinstance(a, Dense) and isinstance(b, Dense):
        return Dense(a.weight + b.weight, a.in_shape, a.out_shape)
    if isinstance(a, Skip) and isinstance(b, Skip):
        return Skip(a.in_shape, a.weight + b.weight)
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


def _scale_block(block: Block, factor: np.ndarray) -> Block:
    """`diag(factor per output channel) · A_b`."""
    per_node = np.broadcast_to(factor.reshape(-1, *(1,) * (len(block.out_shape) - 1)), block.out_shape)
    if isinstance(block, Dense):
        return Dense(np.asarray(block.weight) * per_node.reshape(-1, 1), block.in_shape, block.out_shape)
    if isinstance(block, Conv2d):
        return eqx.tree_at(lambda b: b.kernel, block, block.kernel * factor[:, None, None, None])
    if isinstance(block, Pool):
        return eqx.tree_at(lambda b: b.scale, block, block.scale * factor[:, None, None])
    if isinstance(block, Skip) and len(block.in_shape) == 3:  # a depthwise 1x1 convolution
        kernel = (np.asarray(block.weight) * factor)[:, None, None, None]
        return Conv2d(kernel, block.in_shape, groups=block.in_shape[0])
    dense = _small_dense(block, "a per-channel scale of this block is not supported at this size")
    return Dense(np.asarray(dense.weight) * per_node.reshape(-1, 1), block.in_shape, block.out_shape)


def _stack(drafts: Sequence[_Draft], name: str, dtype) -> _Draft:
    """Output layers stacked into one: along axis 0 when their other axes agree, else flattened."""
    rest = {d.shape[1:] for d in drafts}
    flat = len(rest) != 1
    shape = (
        (sum(math.prod(d.shape) for d in drafts),) if flat else (sum(d.shape[0] for d in drafts), *rest.pop())
    )
    inputs = {}
    for src in sorted({s for d in drafts for s in d.inputs}):
        blocks = [d.inputs.get(src) for d in drafts]
        in_shape = next(b.in_shape for b in blocks if b is not None)
        convs = [b for b in blocks if isinstance(b, Conv2d)]
        geometry = {(c.kernel.shape[2:], c.stride, c.padding, c.dilation) for c in convs}
        if not flat and len(convs) == sum(b is not None for b in blocks) and len(geometry) == 1:
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
    acts = {d.activation for d in drafts}
    activation = (
        acts.pop()
        if len(acts) == 1
        else Activation("+".join(a.name for a in acts), all(a.monotone for a in acts))
    )
    return _Draft(name, shape, inputs, activation)
