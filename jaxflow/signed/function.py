"""A `SignedGraph` evaluated as a network, and a network given a graph's weights.

`GraphFunction(graph)` is the bias-free network of the graph: layer 0 is the input and layer `j`
holds `act_j(Σ_b A_b x_src)`; `with_graph_weights` puts a graph's learned weights (e.g. a null
model's) back into the Equinox model the graph was read from.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import InputError
from .._types import Array, Float
from .activations import JAX_FUNCTIONS, jax_function
from .blocks import Pool, learned_weight
from .graph import SignedGraph


def _max_pool(block: Pool, x: Array) -> Array:
    """The max-pooling `block` evaluated as the maximum of each window (not `A_b x`)."""
    pads = ((0, 0), *block.padding)
    window, stride, dilation = (1, *block.window), (1, *block.stride), (1, *block.dilation)
    return lax.reduce_window(x, -np.inf, lax.max, window, stride, pads, window_dilation=dilation)


class GraphFunction(eqx.Module):
    """The bias-free network of a `SignedGraph`: layer 0 is the input, layer `j` holds
    `act_j(Σ_b A_b x_src)` over its incoming blocks (a max-pooling block takes the maximum of its
    window), and the output is the last layer. Supported activations: `activations.JAX_FUNCTIONS`."""

    graph: SignedGraph

    def __check_init__(self):
        for name, act in zip(self.graph.names, self.graph.activations):
            if jax_function(act) is None:
                raise InputError(
                    f"layer {name!r} has activation {act.name!r}, which cannot be evaluated here; "
                    f"supported: {sorted(JAX_FUNCTIONS)}"
                )

    def layers(self, x: Float[Array, "*input"]) -> tuple[Array, ...]:
        """The values of every layer at input `x` (after their activations)."""
        g = self.graph
        values = [x.reshape(g.shapes[0])]
        for j in range(1, g.num_layers):
            z = jnp.zeros(g.shapes[j], x.dtype)
            for b in g.incoming(j):
                block, src = g.blocks[b], values[g.links[b][0]]
                max_pool = isinstance(block, Pool) and block.mode == "max"
                z = z + (_max_pool(block, src) if max_pool else block.apply(src))
            values.append(jax_function(g.activations[j])(z))
        return tuple(values)

    def __call__(self, x: Float[Array, "*input"]) -> Array:
        return self.layers(x)[-1]


def _is_weight(x) -> bool:
    return isinstance(x, (eqx.nn.Linear, eqx.nn.Conv))


def with_graph_weights(model, graph: SignedGraph):
    """`model` with the weights of its `Linear`/`Conv` layers, in order, replaced by those of
    the learned blocks of `graph` (e.g. a `shuffle_signs` null model of `model`'s graph); for a
    `GraphFunction`, the function of `graph`."""
    if isinstance(model, GraphFunction):
        return GraphFunction(graph)
    layers = [x for x in jax.tree.leaves(model, is_leaf=_is_weight) if _is_weight(x)]
    weights = [learned_weight(b) for b in graph.blocks if b.learned]
    if [x.weight.size for x in layers] != [w.size for w in weights]:
        raise InputError(
            f"graph's learned blocks have {[w.size for w in weights]} weights but the model's "
            f"Linear/Conv layers have {[x.weight.size for x in layers]}: not the graph of this model"
        )
    new = [w.reshape(x.weight.shape).astype(x.weight.dtype) for w, x in zip(weights, layers)]
    return eqx.tree_at(
        lambda m: [x.weight for x in jax.tree.leaves(m, is_leaf=_is_weight) if _is_weight(x)], model, new
    )
