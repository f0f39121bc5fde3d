"""Sign-shuffle null models: the same weight magnitudes with random signs, and their frustration."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Bool

from .._checks import check_key
from .._types import Array, Float, Key, Scalar
from .frustration import (
    FrustrationResult,
    _block_energies,
    _count,
    _search,
    _signed,
    block_frustration,
    frustration,
)
from .graph import Block, SignedGraph

MODELS = ("block", "kernel", "global", "flip")
CHUNK_WEIGHTS = 2**20  # default chunk: as many samples as hold this many shuffled weights


def _learned(graph: SignedGraph) -> list[int]:
    return [b for b, block in enumerate(graph.blocks) if block.learned]


def _weight(block: Block) -> Array:
    """A learned block's one weight array (`Dense.weight`, `Conv2d.kernel`)."""
    (w,) = jax.tree.leaves(eqx.filter(block, eqx.is_inexact_array))
    return w


def _with_weight(block: Block, w: Array) -> Block:
    dynamic, static = eqx.partition(block, eqx.is_inexact_array)
    return eqx.combine(jax.tree.unflatten(jax.tree.structure(dynamic), [w]), static)


def _set_weights(graph: SignedGraph, which: list[int], weights: list[Array]) -> SignedGraph:
    blocks = list(graph.blocks)
    for b, w in zip(which, weights):
        blocks[b] = _with_weight(blocks[b], w)
    return eqx.tree_at(lambda g: g.blocks, graph, tuple(blocks))


def shuffle_signs(graph: SignedGraph, key: Key, model: str = "block") -> SignedGraph:
    """A null-model graph: every learned weight (dense `W`, conv kernel) keeps its magnitude and place.

    Signs are permuted at random `model="block"`: within each block; `"kernel"`: within each
    output filter (a conv kernel's `K[o]`, a dense row `W[o]`); `"global"`: across all learned
    blocks — each keeping the number of negative weights — or `"flip"`: each weight negative
    independently with its block's fraction of negative weights. Pooling, skip and routing edges
    are structure, not learned, and stay positive.
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    return _shuffle(graph, check_key(key), model)


def _choose(key: Key, negative: Bool[Array, " n"]) -> Bool[Array, " n"]:
    """A uniformly random set of as many positions as `negative` marks: the `k` smallest of `n`
    random 32-bit keys, found by bisection on the key value (32 counting passes, no sort; the
    rare keys equal to the threshold go by position)."""
    u = jax.random.bits(key, negative.shape, jnp.uint32)
    k = jnp.sum(negative)

    def halve(_, bounds):  # invariant: the k-th smallest key lies in [lo, hi]
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(u <= mid) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    t, _ = lax.fori_loop(0, 32, halve, (jnp.uint32(0), jnp.uint32(2**32 - 1)))
    below, at = u < t, u == t
    return below | (at & (jnp.cumsum(at) <= k - jnp.sum(below)))


@eqx.filter_jit
def _shuffle(graph: SignedGraph, key: Key, model: str) -> SignedGraph:
    which = _learned(graph)
    ws = [_weight(graph.blocks[b]) for b in which]
    keys = jax.random.split(key, max(len(ws), 1))
    if model == "global":
        flat = _choose(keys[0], jnp.concatenate([(w < 0).ravel() for w in ws]))
        cuts = np.cumsum([w.size for w in ws])[:-1]
        negative = [m.reshape(w.shape) for m, w in zip(jnp.split(flat, cuts), ws)]
    elif model == "block":
        negative = [_choose(k, (w < 0).ravel()).reshape(w.shape) for k, w in zip(keys, ws)]
    elif model == "kernel":
        negative = [
            jax.vmap(_choose)(jax.random.split(k, w.shape[0]), (w < 0).reshape(w.shape[0], -1)).reshape(
                w.shape
            )
            for k, w in zip(keys, ws)
        ]
    else:
        negative = [jax.random.bernoulli(k, jnp.mean(w < 0), w.shape) for k, w in zip(keys, ws)]
    return _set_weights(
        graph, which, [jnp.where(m, -1, 1).astype(w.dtype) * jnp.abs(w) for w, m in zip(ws, negative)]
    )


class NullModelResult(eqx.Module):
    """Frustration of `samples` sign-shuffled graphs and of the graph itself, by the same estimator.

    `values[k]` is the best `δ` found on null sample `k`, `block_values[k, b]` its part inside
    block `b`; `observed` is the graph's own `FrustrationResult`.
    """

    values: Float[Array, " samples"]
    block_values: Float[Array, "samples blocks"]
    observed: FrustrationResult
    model: str = eqx.field(static=True)

    @property
    def mean(self) -> Scalar:
        """Mean null frustration."""
        return jnp.mean(self.values)

    @property
    def std(self) -> Scalar:
        """Standard deviation of the null frustration (`ddof = 1`)."""
        return jnp.std(self.values, ddof=1)

    def zscore(self, value=None) -> Scalar:
        """`(value − mean) / std`; `value` defaults to the graph's own frustration."""
        value = self.observed.value if value is None else value
        return (value - self.mean) / self.std

    def pvalue(self, value=None) -> Scalar:
        """One-sided empirical p-value `(1 + #{null <= value}) / (samples + 1)` of a value this low."""
        value = self.observed.value if value is None else value
        return (1 + jnp.sum(self.values <= value)) / (self.values.shape[0] + 1)


@eqx.filter_jit
def _null_blocks(graph: SignedGraph, keys: Key, model: str, weighted: bool, settings, chunk_size: int):
    def one(key):
        k_shuffle, k_search = jax.random.split(key)
        target = _signed(_shuffle(graph, k_shuffle, model), weighted)
        gauges, values, _, _ = _search(target, k_search, settings)
        best = jnp.argmin(values)
        return jnp.stack(_block_energies(target, tuple(g[best] for g in gauges)))

    return lax.map(one, keys, batch_size=chunk_size)


def null_model_frustration(
    graph: SignedGraph,
    key: Key,
    *,
    samples: int = 256,
    model: str = "block",
    chunk_size: int | None = None,
    **options,
) -> NullModelResult:
    """Frustration of `samples` sign-shuffled copies of `graph` (see `shuffle_signs`) and of `graph`.

    `options` (`method`, `restarts`, `weighted`, `dtype`, …) go to `frustration`, and every sample
    is searched with exactly the graph's own settings and effort. Samples are vmapped in chunks of
    `chunk_size` (default: as many as hold 2^20 shuffled weights together, at least one) to bound
    memory; `method="exact"` solves them in turn.
    """
    if not isinstance(graph, SignedGraph):
        raise ValueError(f"graph must be a SignedGraph, got {type(graph).__name__}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    check_key(key)
    samples = _count(samples, "samples")
    if chunk_size is None:  # vectorise small graphs; one at a time once samples are big (memory-bound)
        weights = sum(_weight(graph.blocks[b]).size for b in _learned(graph))
        chunk_size = max(1, min(samples, CHUNK_WEIGHTS // max(weights, 1)))
    chunk_size = _count(chunk_size, "chunk_size")
    k_obs, k_null = jax.random.split(key)
    observed = frustration(graph, key=k_obs, **options)
    graph = graph.astype(observed.value.dtype)
    keys = jax.random.split(k_null, samples)
    if observed.method == "exact":
        rows = []
        for k in keys:
            null = shuffle_signs(graph, jax.random.split(k)[0], model)
            gauge = frustration(null, **options).gauge
            rows.append(jnp.stack(block_frustration(null, gauge, weighted=observed.weighted)))
        block_values = jnp.stack(rows)
    else:
        block_values = _null_blocks(graph, keys, model, observed.weighted, observed.settings, chunk_size)
    return NullModelResult(jnp.sum(block_values, axis=1), block_values, observed, model)
