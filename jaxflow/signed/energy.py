"""The energy of a gauge: `δ(s)`, the frustrated weight, over the whole graph and per block.

`δ(s) = Σ_{q→p : s_p a_pq s_q < 0} |a_pq| = ½(Σ|a| − sᵀAs)` for a gauge `s ∈ {±1}^n` (one `±1`
array per layer); the unweighted variant counts frustrated edges (the energy of `sign(A)`).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp

from .._checks import InputError, check_graph
from .._types import Array, Scalar
from ._search import PROGRAM, block_energies, driver as make_driver
from .graph import SignedGraph


def energy_graph(graph: SignedGraph, weighted: bool) -> SignedGraph:
    """The graph whose energy is minimised: `graph` itself, or `sign(A)` for the unweighted count."""
    return graph if weighted else graph.map_weights(jnp.sign)


_block_energies_program = eqx.filter_jit(block_energies)


def _block_energies(graph: SignedGraph, gauge: Sequence[Array], driver: str | None = None):
    """`δ_b(s)` of every block, in one program or block by block (`choose_driver`)."""
    drv = make_driver(driver, graph)
    return _block_energies_program(graph, gauge) if drv is PROGRAM else block_energies(graph, gauge, drv)


def block_frustration(
    graph: SignedGraph, gauge: Sequence[Array], *, weighted: bool = True
) -> tuple[Scalar, ...]:
    """`δ_b(s)`, the frustrated weight (or edge count) inside each block `b` of `graph`."""
    gauge = _check_gauge(graph, gauge)
    return _block_energies(energy_graph(graph, weighted), gauge)


def gauge_frustration(graph: SignedGraph, gauge: Sequence[Array], *, weighted: bool = True) -> Scalar:
    """`δ(s) = Σ_{s_p a_pq s_q < 0} |a_pq|` (or the number of such edges when not `weighted`).

    `gauge` is one `±1` array per layer, or a flat vector over all nodes.
    """
    blocks = block_frustration(graph, gauge, weighted=weighted)
    return sum(blocks[1:], start=blocks[0]) if blocks else jnp.zeros((), graph.dtype)


def _check_gauge(graph: SignedGraph, gauge) -> tuple[Array, ...]:
    """Per-layer `±1` arrays of the layers' shapes (a flat vector over all nodes is split)."""
    check_graph(graph)
    if not isinstance(gauge, (tuple, list)):
        gauge = jnp.asarray(gauge)
        if gauge.shape != (graph.num_nodes,):
            raise InputError(
                f"gauge must be a ±1 vector over all {graph.num_nodes} nodes or one array per layer, "
                f"got shape {gauge.shape}"
            )
        gauge = graph.unflatten(gauge)
    if len(gauge) != graph.num_layers or any(jnp.shape(g) != s for g, s in zip(gauge, graph.shapes)):
        raise InputError(
            f"gauge must hold one array per layer of shapes {graph.shapes}, got "
            f"{[jnp.shape(g) for g in gauge]}"
        )
    return tuple(jnp.asarray(g) for g in gauge)
