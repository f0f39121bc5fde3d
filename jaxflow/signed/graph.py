"""`SignedGraph`: a layered signed DAG held as matrix-free blocks (see `blocks`).

Nodes live in layers `0..L−1`; each layer has a shape (`(d,)`, or `(C, H, W)` for images) and its
nodes are numbered in C order, layer after layer, as in the block convention
(docs/conventions.md): `A[p, q]` is the weight of the edge `q → p`. A layer's value is the
**sum** of its incoming blocks' outputs (a residual sum is a layer fed by a conv block and a
`Skip`); a **concatenation** is a layer fed by
`Route` blocks that place each input's nodes in their slice of the output (`Route.concat`, or per
channel `ChannelRoute`); each layer records its `Activation`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError, check_array
from .._types import Array, ArrayLike, Float, Scalar
from .activations import IDENTITY, Activation
from .blocks import Block, Dense, Shape, as_shape, weights_dtype


class Layer(NamedTuple):
    """One layer in a spec for `SignedGraph.from_layers`.

    `inputs` maps earlier layers' names to the blocks feeding this layer (their outputs are
    summed); `shape` may be left out when an input block determines it.
    """

    name: str
    inputs: Mapping[str, Block] = {}
    shape: Shape | None = None
    activation: Activation = IDENTITY


@jax.jit
def flat(xs: Sequence[Array]) -> Array:
    """Per-layer arrays concatenated into one vector over all nodes (one dispatch, not one per
    layer: a result's `flat_gauge` is asked for after every estimate)."""
    return jnp.concatenate([jnp.ravel(x) for x in xs])


class SignedGraph(eqx.Module):
    """A layered signed DAG: layer shapes, and blocks `A_b` from layer `links[b][0]` to `links[b][1]`.

    Sources always precede destinations, at most one block joins a pair of layers, and
    `activations[j]` records layer `j`'s nonlinearity. `metadata` holds `(key, value)` string
    pairs about where the graph came from (an importer's `"output_head"`: the ops after the last
    layer that it set aside).
    """

    blocks: tuple[Block, ...]
    links: tuple[tuple[int, int], ...] = eqx.field(static=True)
    shapes: tuple[Shape, ...] = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    activations: tuple[Activation, ...] = eqx.field(static=True)
    metadata: tuple[tuple[str, str], ...] = eqx.field(static=True, default=())

    def __check_init__(self):
        if len(self.links) != len(self.blocks):
            raise InputError(f"links has {len(self.links)} entries for {len(self.blocks)} blocks")
        if not len(self.names) == len(self.shapes) == len(self.activations):
            raise InputError("names, shapes and activations must have one entry per layer")
        if len(set(self.names)) != len(self.names):
            raise InputError(f"layer names must be distinct, got {self.names}")
        if len(set(self.links)) != len(self.links):
            raise InputError("at most one block may join a pair of layers (sum them into one)")
        for b, ((src, dst), block) in enumerate(zip(self.links, self.blocks)):
            if not 0 <= src < dst < len(self.shapes):
                raise InputError(f"block {b} goes from layer {src} to layer {dst}: sources must precede")
            if (block.in_shape, block.out_shape) != (self.shapes[src], self.shapes[dst]):
                raise InputError(
                    f"block {b} ({type(block).__name__}) maps {block.in_shape} -> {block.out_shape} but "
                    f"joins layer {self.names[src]!r} {self.shapes[src]} to {self.names[dst]!r} "
                    f"{self.shapes[dst]}"
                )

    # ----------------------------------------------------------------- builders

    @classmethod
    def from_layers(cls, layers: Sequence[Layer]) -> SignedGraph:
        """Build from `Layer` specs in topological order (each input names an earlier layer).

        ```python
        SignedGraph.from_layers([
            Layer("x", shape=(1, 8, 8)),
            Layer("c", {"x": Conv2d(K, (1, 8, 8), padding=1)}, activation=Activation("relu")),
            Layer("r", {"c": Conv2d(K2, (4, 8, 8), padding=1), "x": Conv2d(K3, (1, 8, 8))}),  # a sum
            Layer("p", {"r": Pool(2, (4, 8, 8), mode="max")}),
            Layer("y", {"p": Dense(W, in_shape=(4, 4, 4))}),
        ])
        ```
        """
        layers = [layer if isinstance(layer, Layer) else Layer(*layer) for layer in layers]
        index, shapes, blocks, links = {}, [], [], []
        for j, layer in enumerate(layers):
            for src in layer.inputs:
                if src not in index:
                    raise InputError(
                        f"layer {layer.name!r} takes input {src!r}, which is not an earlier layer"
                    )
            inferred = [b.out_shape for b in layer.inputs.values()]
            shape = layer.shape if layer.shape is not None else (inferred[0] if inferred else None)
            if shape is None:
                raise InputError(f"layer {layer.name!r} has no inputs, so it needs a shape")
            index[layer.name] = j
            shapes.append(as_shape(shape, None, f"shape of layer {layer.name!r}"))
            for src, block in layer.inputs.items():
                blocks.append(block)
                links.append((index[src], j))
        names = tuple(layer.name for layer in layers)
        acts = tuple(Activation(*layer.activation) for layer in layers)
        return cls(tuple(blocks), tuple(links), tuple(shapes), names, acts)

    @classmethod
    def from_weights(cls, weights: Sequence[Float[ArrayLike, "_d_i _d_im1"]]) -> SignedGraph:
        """The graph of `x ↦ W_h ⋯ W_1 x`: layers `(d_0,) … (d_h,)`, `Dense(W_i)` from `i−1` to `i`."""
        if len(weights) < 1:
            raise InputError("weights must hold at least one matrix W_1")
        dense = [Dense(check_array(w, f"weights[{i}]", ndim=2)) for i, w in enumerate(weights)]
        for i in range(1, len(dense)):
            if dense[i].in_shape != dense[i - 1].out_shape:
                raise InputError(
                    f"weights[{i}] has shape {dense[i].weight.shape} but must take "
                    f"{dense[i - 1].out_shape[0]} inputs (weights[{i - 1}] has shape "
                    f"{dense[i - 1].weight.shape})"
                )
        shapes = (dense[0].in_shape, *(d.out_shape for d in dense))
        names = tuple(f"layer{i}" for i in range(len(shapes)))
        links = tuple((i, i + 1) for i in range(len(dense)))
        return cls(tuple(dense), links, shapes, names, (IDENTITY,) * len(shapes))

    @classmethod
    def from_network(cls, network) -> SignedGraph:
        """The graph of a `DeepLinearNetwork` (its adjacency `A`, identity activations)."""
        return cls.from_weights(network.weights)

    # --------------------------------------------------------------- structure

    @property
    def num_layers(self) -> int:
        """Number of node layers `L`."""
        return len(self.shapes)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of nodes in each layer."""
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each layer's nodes in the flat numbering: `(0, n_0, n_0+n_1, …, n)`."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.sizes)]))

    @property
    def num_nodes(self) -> int:
        """`n`, the number of nodes."""
        return sum(self.sizes)

    @property
    def dtype(self):
        """The common floating dtype of the weights."""
        return weights_dtype(self)

    def incoming(self, layer: int) -> tuple[int, ...]:
        """Indices of the blocks that end in `layer`."""
        return tuple(b for b, (_, dst) in enumerate(self.links) if dst == layer)

    def outgoing(self, layer: int) -> tuple[int, ...]:
        """Indices of the blocks that start in `layer`."""
        return tuple(b for b, (src, _) in enumerate(self.links) if src == layer)

    def num_edges(self) -> int:
        """Number of edges with non-zero weight (exact, host-side)."""
        return sum(b.num_edges() for b in self.blocks)

    def abs_sum(self) -> Scalar:
        """`Σ |a|` over all edges."""
        return sum((b.abs_sum() for b in self.blocks), start=jnp.zeros((), self.dtype))

    def map_weights(self, fn: Callable[[Array], Array]) -> SignedGraph:
        """Apply `fn` to every block's weight arrays (`jnp.abs`, `jnp.sign`, a cast, …)."""
        return eqx.tree_at(lambda g: g.blocks, self, tuple(b.map_weights(fn) for b in self.blocks))

    def astype(self, dtype) -> SignedGraph:
        """The graph with all weights cast to `dtype`."""
        return self.map_weights(lambda w: w.astype(dtype))

    # ------------------------------------------------------- matrix-free algebra

    def flatten(self, xs: Sequence[Array]) -> Float[Array, " n"]:
        """Concatenate per-layer arrays into one vector over all nodes."""
        return flat(xs)

    def unflatten(self, v: Float[Array, " n"]) -> tuple[Array, ...]:
        """Split a vector over all nodes into per-layer arrays of the layers' shapes."""
        off = self.offsets
        return tuple(v[off[j] : off[j + 1]].reshape(s) for j, s in enumerate(self.shapes))

    def matvec(self, xs: Sequence[Array]) -> tuple[Array, ...]:
        """`A x`, per layer: layer `j` gets `Σ_{b: src→j} A_b x_src`."""
        out = [jnp.zeros(s, xs[0].dtype) for s in self.shapes]
        for (src, dst), block in zip(self.links, self.blocks):
            out[dst] = out[dst] + block.apply(xs[src])
        return tuple(out)

    def rmatvec(self, ys: Sequence[Array]) -> tuple[Array, ...]:
        """`Aᵀ y`, per layer: layer `j` gets `Σ_{b: j→dst} A_bᵀ y_dst`."""
        out = [jnp.zeros(s, ys[0].dtype) for s in self.shapes]
        for (src, dst), block in zip(self.links, self.blocks):
            out[src] = out[src] + block.apply_transpose(ys[dst])
        return tuple(out)

    def to_coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-zero entries of `A` as host arrays `(rows, cols, values)`, `values` in float64
        (exact from float32), block by block (each block densified: graphs of small blocks)."""
        off = self.offsets
        rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
        for (src, dst), block in zip(self.links, self.blocks):
            B = np.asarray(block.to_dense(), np.float64)
            r, c = np.nonzero(B)
            rows.append(r + off[dst])
            cols.append(c + off[src])
            vals.append(B[r, c])
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)

    def to_dense(self) -> Float[Array, "n n"]:
        """Dense `A` (n×n) with `A[p, q]` the weight of edge `q → p` (small graphs only)."""
        off, n = self.offsets, self.num_nodes
        A = jnp.zeros((n, n), self.dtype)
        for (src, dst), block in zip(self.links, self.blocks):
            A = A.at[off[dst] : off[dst + 1], off[src] : off[src + 1]].set(block.to_dense())
        return A
