"""Sign-shuffle null models: the same weight magnitudes with random signs, and their frustration."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P
from jaxtyping import Bool

from .._checks import check_choice, check_count, check_graph, check_key
from .._lanes import lanes_mesh, put_lane_keys, to_host
from .._store import Store, tree_digest
from .._types import Array, Float, Key, Keys, Scalar
from . import _search as engine
from .blocks import Block, learned_weight
from .energy import block_frustration, energy_graph
from .estimators import (
    ANNEAL_STEPS,
    Estimator,
    Exact,
    ladder_batch,
    ladder_jobs,
    resolve_estimator,
    rung_settings,
)
from .frustration import FrustrationResult, frustration
from .graph import SignedGraph

MODELS = ("block", "kernel", "global", "flip")
CHUNK_WEIGHTS = 2**20  # default chunk: as many samples as hold this many shuffled weights


def _learned(graph: SignedGraph) -> list[int]:
    return [b for b, block in enumerate(graph.blocks) if block.learned]


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
    independently with its block's fraction of negative weights. Signs move among edges only: a
    zero weight (e.g. the unused channels of a kernel an importer widened) stays zero and takes
    no sign. Pooling, skip and routing edges are structure, not learned, and stay positive.
    """
    check_choice(model, "model", MODELS)
    key = check_key(key)
    drv = engine.driver(None, graph)
    return _shuffle_program(graph, key, model) if drv is engine.PROGRAM else _shuffle(graph, key, model, drv)


def _choose(
    key: Key, negative: Bool[Array, " n"], valid: Bool[Array, " n"] | None = None
) -> Bool[Array, " n"]:
    """A uniformly random set of as many positions as `negative` marks: the `k` smallest of `n`
    random 32-bit keys, found by bisection on the key value (32 counting passes, no sort; the
    rare keys equal to the threshold go by position). Only `valid` positions are chosen (padding
    takes the largest key, so it changes nothing)."""
    u = jax.random.bits(key, negative.shape, jnp.uint32)
    if valid is not None:
        u = jnp.where(valid, u, jnp.uint32(2**32 - 1))
        negative = negative & valid
    k = jnp.sum(negative)

    def halve(_, bounds):  # invariant: the k-th smallest key lies in [lo, hi]
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(u <= mid) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    t, _ = lax.fori_loop(0, 32, halve, (jnp.uint32(0), jnp.uint32(2**32 - 1)))
    below, at = u < t, u == t
    if valid is not None:
        at = at & valid
    return below | (at & (jnp.cumsum(at) <= k - jnp.sum(below)))


def _shuffle(graph: SignedGraph, key: Key, model: str, drv=engine.PROGRAM) -> SignedGraph:
    """`shuffle_signs` by the search driver `drv` (per learned block, or all at once for `"global"`)."""
    which = _learned(graph)
    ws = [learned_weight(graph.blocks[b]) for b in which]
    keys = engine.split(key, max(len(ws), 1), drv)
    if model == "global":
        new = drv.call(_global_shuffle, "sl", tuple(ws), drv.take(keys, 0))
    else:
        new = [_shuffled(w, drv.take(keys, i), model, drv) for i, w in enumerate(ws)]
    return _set_weights(graph, which, list(new))


def _shuffled(w: Array, key: Key, model: str, drv) -> Array:
    """One learned weight array with shuffled signs. `"block"` and `"flip"` shuffle it flattened and
    zero-padded to a power of two, so one compiled shuffle serves every weight of that size class
    (JAX's threefry is partitionable: a position draws the same random bits in any padded length,
    so the result is the unpadded shuffle's)."""
    if model == "kernel":
        return drv.call(_shuffle_rows, "sl", w, key)
    size = w.size
    flat = jnp.pad(w.ravel(), (0, (1 << max(size - 1, 0).bit_length()) - size))
    # `"flip"`: each edge negative with the block's fraction of negative edges (zeros are not edges)
    fraction = jnp.sum(w < 0) / jnp.maximum(jnp.sum(w != 0), 1)
    out = drv.call(_shuffle_flat, "slss", flat, key, size, fraction, model=model)
    return out[..., :size].reshape(*out.shape[:-1], *w.shape)


_shuffle_program = eqx.filter_jit(_shuffle)


def _with_signs(w: Array, negative: Bool[Array, "*shape"]) -> Array:
    return jnp.where(negative, -1, 1).astype(w.dtype) * jnp.abs(w)


def _global_shuffle(ws: tuple[Array, ...], key: Key) -> tuple[Array, ...]:
    flat = jnp.concatenate([w.ravel() for w in ws])
    flat = _choose(key, flat < 0, flat != 0)
    cuts = np.cumsum([w.size for w in ws])[:-1]
    return tuple(_with_signs(w, m.reshape(w.shape)) for m, w in zip(jnp.split(flat, cuts), ws))


def _shuffle_flat(flat: Array, key: Key, size, fraction, *, model: str) -> Array:
    """`"block"` or `"flip"` on the edges among the first `size` entries of `flat` (the rest is
    padding; a zero weight is no edge, and a sign put on it would be lost)."""
    valid = (jnp.arange(flat.shape[0]) < size) & (flat != 0)
    if model == "block":
        return _with_signs(flat, _choose(key, flat < 0, valid))
    return _with_signs(flat, jax.random.bernoulli(key, fraction, flat.shape) & valid)


def _shuffle_rows(w: Array, key: Key) -> Array:
    """`"kernel"`: within each output filter (`K[o]`) or row (`W[o]`)."""
    rows, edges = (w < 0).reshape(w.shape[0], -1), (w != 0).reshape(w.shape[0], -1)
    negative = jax.vmap(_choose)(jax.random.split(key, w.shape[0]), rows, edges).reshape(w.shape)
    return _with_signs(w, negative)


def null_statistics(value, null) -> tuple[Scalar, Scalar, Scalar]:
    """Mean, standard deviation (`ddof = 1`) of the null samples `null`, and the z-score
    `(value − mean) / std` of `value` among them (NaN when the samples do not spread). NumPy
    samples are summarized in NumPy (host float64), JAX arrays in JAX."""
    xp = np if isinstance(null, np.ndarray) else jnp
    mean, std = xp.mean(null), xp.std(null, ddof=1)
    return mean, std, xp.where(std > 0, (value - mean) / xp.where(std > 0, std, 1), xp.nan)


class NullModelResult(eqx.Module):
    """Frustration of `samples` sign-shuffled graphs and of the graph itself, by the same estimator.

    `values[k]` is the best `δ` found on null sample `k`, `block_values[k, b]` its part inside
    block `b`; `rung_values[k, r]` the best `δ` after rung `r` of a `"ladder"` (as the search
    found it, `½(Σ|a| − sᵀAs)`; one column for the other methods), the same rungs as
    `observed.rung_values`; `observed` is the graph's own `FrustrationResult`.
    """

    values: Float[Array, " samples"]
    block_values: Float[Array, "samples blocks"]
    rung_values: Float[Array, "samples rungs"]
    observed: FrustrationResult
    model: str = eqx.field(static=True)

    @property
    def mean(self) -> Scalar:
        """Mean null frustration."""
        return null_statistics(0.0, self.values)[0]

    @property
    def std(self) -> Scalar:
        """Standard deviation of the null frustration (`ddof = 1`)."""
        return null_statistics(0.0, self.values)[1]

    def zscore(self, value=None) -> Scalar:
        """`(value − mean) / std` (`null_statistics`); `value` defaults to the graph's own frustration."""
        return null_statistics(self.observed.value if value is None else value, self.values)[2]

    def pvalue(self, value=None) -> Scalar:
        """One-sided empirical p-value `(1 + #{null <= value}) / (samples + 1)` of a value this low."""
        value = self.observed.value if value is None else value
        return (1 + jnp.sum(self.values <= value)) / (self.values.shape[0] + 1)


def _ladder_search(graph: SignedGraph, key: Key, settings, drv):
    """`"ladder"` over the fixed rungs `settings.rungs` (`ladder_jobs`): the best gauge of all its
    jobs, and each job's lowest `δ` in `ladder_jobs` order."""
    batch = ladder_batch(graph, settings)
    jobs, _ = ladder_jobs(settings.rungs, batch)
    annealed = np.array([job for job in jobs if job[0]], dtype=np.int64).reshape(-1, 2)
    total = engine.total_weight(graph, drv)
    parts, order = [], []
    best = value = None
    if annealed.size:
        run = rung_settings(settings, (batch, ANNEAL_STEPS))  # the sweeps: each job's own, traced
        best, found, _, _ = engine.search_jobs(graph, key, run, annealed, drv, total)
        value = engine.lowest(found, drv)
        parts.append(found)
        order += [jobs.index(tuple(job)) for job in annealed.tolist()]
    for sweeps, restarts in jobs:
        if sweeps:
            continue
        k = drv.call(engine.job_key, "lss", key, 0, restarts)
        gauges, values, _, _ = engine.search(graph, k, rung_settings(settings, (restarts, 0)), drv, total)
        gauge, low = engine.best_gauge(values, gauges, drv), engine.lowest(values, drv)
        value, best = (low, gauge) if best is None else engine.keep_lower(low, gauge, value, best, drv)
        parts.append(engine.stack([low], drv))
        order.append(jobs.index((0, restarts)))
    found = drv.call(_in_order, "l", tuple(parts), order=tuple(np.argsort(order).tolist()))
    return best, found


def _in_order(parts, *, order):
    return jnp.concatenate(parts)[jnp.asarray(order)]


def _null_sample(graph: SignedGraph, key: Key, model: str, weighted: bool, settings, drv):
    """`δ_b` of every block under the best gauge the search finds on one shuffled graph, and the
    lowest `δ` of each job of a `"ladder"` (`ladder_jobs`; of the one search otherwise)."""
    k_shuffle, k_search = engine.split2(key, drv)
    target = energy_graph(_shuffle(graph, k_shuffle, model, drv), weighted)
    if settings.method == "ladder":
        gauge, found = _ladder_search(target, k_search, settings, drv)
    else:
        gauges, values, _, _ = engine.search(target, k_search, settings, drv)
        gauge, found = engine.best_gauge(values, gauges, drv), engine.stack([engine.lowest(values, drv)], drv)
    return engine.stack(engine.block_energies(target, gauge, drv), drv), found


@eqx.filter_jit
def _null_program(graph: SignedGraph, keys: Keys, model: str, weighted: bool, settings, mesh: Mesh):
    """One program: each device vmaps its share of `keys` (no collectives: the lanes are independent)."""

    def local(graph, keys):
        one = lambda key: _null_sample(graph, key, model, weighted, settings, engine.PROGRAM)  # noqa: E731
        return jax.vmap(one)(keys)

    run = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("lanes")), out_specs=P("lanes"), check_vma=False)
    return run(graph, keys)


def _null_pieces(graph: SignedGraph, keys: Keys, model: str, weighted: bool, settings, chunk_size: int,
                 driver=None):  # fmt: skip
    """`(start, δ_b)` for each piece of `keys` in turn: `δ_b` of `chunk_size` samples per device, the
    piece split over all devices (the last padded with repeats of its last key), in one program
    (`PROGRAM`) or through the per-signature functions with a lane axis sharded over the devices
    (`engine.choose_driver`)."""
    mesh = lanes_mesh()
    lanes = chunk_size * mesh.size
    drv = engine.driver(driver, graph, lanes=lanes > 1)
    if drv is not engine.PROGRAM and not drv.lanes:  # one sample at a time: the graph's own functions
        for start, k in enumerate(keys):
            out = _null_sample(graph, k, model, weighted, settings, drv)
            yield start, tuple(np.asarray(x)[None] for x in out)
        return
    samples = keys.shape[0]
    width = min(lanes, -(-samples // mesh.size) * mesh.size)  # a multiple of the device count
    for start in range(0, samples, width):
        sharded = put_lane_keys(keys, np.minimum(np.arange(start, start + width), samples - 1), mesh)
        if drv is engine.PROGRAM:
            out = _null_program(graph, sharded, model, weighted, settings, mesh)
        else:  # each piece function runs partitioned along the sharded lanes, on all devices at once
            out = _null_sample(graph, sharded, model, weighted, settings, drv)
        yield start, tuple(np.asarray(x)[: samples - start] for x in to_host(out))


def _null_blocks(
    graph: SignedGraph, keys: Keys, model: str, weighted: bool, settings, chunk_size: int, driver=None
) -> Float[np.ndarray, "samples blocks"]:
    """`(samples, blocks)`: `δ_b` of each null sample (`_null_pieces`, kept in memory)."""
    pieces = _null_pieces(graph, keys, model, weighted, settings, chunk_size, driver)
    return np.concatenate([values for _, (values, _) in pieces])


def _exact_pieces(graph: SignedGraph, keys: Keys, model: str, weighted: bool, estimator: Exact, dtype):
    """`(start, (δ_b, δ))` of each sample in turn, each solved by `frustration` with `Exact`."""
    for start, k in enumerate(keys):
        null = shuffle_signs(graph, jax.random.split(k)[0], model)
        res = frustration(null, estimator, weighted=weighted, dtype=dtype, bound=False)
        blocks = np.asarray(jnp.stack(block_frustration(null, res.gauge, weighted=weighted)))[None]
        yield start, (blocks, np.asarray(res.rung_values)[None])


def default_chunk_size(graph: SignedGraph, samples: int) -> int:
    """Null samples searched together on each device by default: as many as hold `CHUNK_WEIGHTS`
    (2^20) shuffled weights, at least one (vectorise small graphs; one at a time once samples are
    big)."""
    weights = sum(learned_weight(graph.blocks[b]).size for b in _learned(graph))
    return max(1, min(samples, CHUNK_WEIGHTS // max(weights, 1)))


def frustration_bytes(graph: SignedGraph, restarts: int, samples_in_flight: int = 1) -> int:
    """Peak memory of a frustration search of `graph` with `restarts` restarts in flight,
    `samples_in_flight` graphs searched together (null models: the chunk size times the devices).

    `(2 + 8 · samples) · edges · b + 4 · samples · restarts · nodes · b`: the graph's weights and
    the search's copy of them; per sample in flight its shuffled weights and the shuffle's
    temporaries (random keys, masks, a running count: 8 numbers' worth per edge); per
    restart of each sample the spins, the local field and two work vectors over all nodes; `b`
    bytes per number (the graph's dtype).
    """
    b = np.dtype(graph.dtype).itemsize
    edges, nodes = graph.num_edges(), graph.num_nodes
    return (2 + 8 * samples_in_flight) * edges * b + 4 * samples_in_flight * restarts * nodes * b


def null_model_frustration(
    graph: SignedGraph,
    key: Key,
    estimator: Estimator | None = None,
    *,
    samples: int = 256,
    model: str = "block",
    chunk_size: int | None = None,
    out: str | Path | None = None,
    status: Callable[[str], None] | None = None,
    weighted: bool = True,
    dtype=None,
    bound: bool = True,
    method: str | None = None,
    **effort,
) -> NullModelResult:
    """Frustration of `samples` sign-shuffled copies of `graph` (see `shuffle_signs`) and of `graph`.

    Every sample is searched with exactly the graph's own settings and effort, with its own key
    (`jax.random.split` of the null key), so a sample's value depends neither on the chunk it is
    searched in nor on the number of devices. Samples run in pieces of `chunk_size` per device,
    vmapped, spread over all of `jax.devices()` (after `jax.distributed.initialize()`: of every
    process; each computes its share, process 0 writes); `Exact` solves them in turn. A `Ladder`
    climbs on every sample exactly the rungs it climbed on `graph`.

    Memory is bounded by the piece in flight, not by `samples`: about `(2W + c·(8W + 4n·r))·b`
    bytes per device (`frustration_bytes`), for `W` the graph's weights,
    `c = chunk_size`, `n` nodes, `r` restarts (the `batch_size` in flight) and `b` bytes per number:
    each sample holds its own shuffled weights and the shuffle's temporaries, each restart its
    spins and fields; only the block values of finished samples are kept.

    With `out`, each finished piece is written at once to `out/chunks/` (atomically; see
    `jaxflow._store.Store`), with `out/manifest.json` holding the hashes of the graph (weights and
    structure) and the settings (model, samples, search settings, key). Rerunning the same call into
    the same `out` skips the finished samples and returns bitwise the same values; a different graph
    or setting there is an `InputError`, and so is a second run writing into it at the same time.

    Args:
        graph: the `SignedGraph`.
        key: PRNG key, split between the graph's own search and the null samples.
        samples: number of null graphs.
        model: how signs are shuffled: `"block"`, `"kernel"`, `"global"` or `"flip"` (`MODELS`).
        chunk_size: null samples searched together on each device; default
            `default_chunk_size(graph, samples)` (as many as hold `CHUNK_WEIGHTS` shuffled weights).
        out: a folder for the finished samples and the manifest (resumable); None keeps them in memory.
        status: hears the progress in words: the graph's own search (`frustration`'s `status`),
            then the null samples done.
        estimator: the `Estimator` of `frustration` (default `Ladder()`; or `method` and
            `effort`, its shortcut).
        weighted: as for `frustration`.
        dtype: as for `frustration`.
        bound: as for `frustration`, for the graph's own result only.
        method: the shortcut, as for `frustration`.
        **effort: the shortcut's effort keywords, as for `frustration`.
    """
    check_graph(graph)
    check_choice(model, "model", MODELS)
    key = check_key(key)
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):  # a legacy key: the same bits, typed
        key = jax.random.wrap_key_data(key)
    samples = check_count(samples, "samples")
    chunk_size = (
        default_chunk_size(graph, samples) if chunk_size is None else check_count(chunk_size, "chunk_size")
    )
    k_obs, k_null = jax.random.split(key)
    say = status or (lambda _: None)
    estimator = resolve_estimator(estimator, method, effort)
    options = dict(weighted=weighted, dtype=dtype)
    observed = frustration(graph, estimator, key=k_obs, status=status, bound=bound, **options)
    inputs = {
        "graph": tree_digest(graph),
        "model": model,
        "samples": samples,
        "method": observed.method,
        "weighted": observed.weighted,
        "dtype": str(observed.value.dtype),
        "settings": {k: repr(v) for k, v in observed.settings._asdict().items()},
        "options": {k: repr(v) for k, v in sorted(options.items())},
        "estimator": repr(estimator),
        "key": f"{jax.random.key_impl(key)}:{np.asarray(jax.random.key_data(key)).tobytes().hex()}",
    }
    graph = graph.astype(observed.value.dtype)
    keys = jax.random.split(k_null, samples)
    store = None if out is None else Store(out, inputs, kind="null batch", writer=jax.process_index() == 0)
    dtype = np.dtype(observed.value.dtype)
    block_values = np.full((samples, len(graph.blocks)), np.nan, dtype)
    job_values = np.full((samples, _job_count(graph, observed.settings)), np.nan, dtype)
    with store or contextlib.nullcontext():
        done = np.zeros(samples, bool)
        for piece in [] if store is None else store.pieces():
            saved = store.read(piece)
            block_values[saved["index"]], done[saved["index"]] = saved["block_values"], True
            job_values[saved["index"]] = saved["job_values"]
        todo = np.flatnonzero(~done)  # decided once, before any writing: every process runs the same
        say(f"null models: {samples - todo.size} of {samples} done")
        if todo.size:
            if observed.method == "exact":
                pieces = _exact_pieces(graph, keys[todo], model, observed.weighted, estimator, dtype)
            else:
                pieces = _null_pieces(
                    graph, keys[todo], model, observed.weighted, observed.settings, chunk_size
                )
            for start, (values, jobs) in pieces:
                index = todo[start : start + values.shape[0]]
                block_values[index], job_values[index] = values, jobs
                say(f"null models: {samples - todo.size + start + values.shape[0]} of {samples} done")
                if store is not None:
                    piece = {"index": index, "block_values": values, "job_values": jobs}
                    store.write(f"s{index[0]:07d}-{index[-1]:07d}", piece)
    block_values = jnp.asarray(block_values)
    rungs = jnp.asarray(rung_bests(graph, observed.settings, job_values))
    return NullModelResult(jnp.sum(block_values, axis=1), block_values, rungs, observed, model)


def _job_count(graph: SignedGraph, settings) -> int:
    """How many lowest values a null sample reports: one per `"ladder"` job, else one."""
    return len(ladder_jobs(settings.rungs, ladder_batch(graph, settings))[0]) if settings.rungs else 1


def rung_bests(graph: SignedGraph, settings, job_values) -> np.ndarray:
    """`(samples, rungs)`: each sample's best `δ` after each rung of a `"ladder"` (the least of the
    jobs it has needed so far, `ladder_jobs`), from each job's lowest `δ`; the one column as it is
    for the other methods."""
    job_values = np.asarray(job_values)
    if not settings.rungs:
        return job_values
    _, ends = ladder_jobs(settings.rungs, ladder_batch(graph, settings))
    return np.stack([job_values[:, :end].min(axis=1) for end in ends], axis=1)
