"""The layer-parallel search engine, shared by `frustration` and the null models.

One algorithm, two drivers. The algorithm (`sweep`, `descend`, `screen`, `anneal`, `search`,
`estimate`) is written once, per graph, as calls to a driver `drv`:

- `drv.call(fn, spec, *args, **static)` runs a small per-graph-piece function `fn` (the layer update,
  the screen's pick, the random start, …); `drv.product(block, x, acc, transpose)` is `acc + A_b x`
  (or `acc + A_bᵀ x`) for every restart in `x`;
- `drv.while_loop`, `drv.scan`, `drv.fori` (a count that may be traced), `drv.fold` (over host
  numbers shared by every lane), `drv.map` and `drv.take` are the control flow.

`PROGRAM` traces every call into the caller's program (`lax.while_loop` over sweeps, the layers
unrolled in each): one XLA program per search, fastest for small and shallow graphs, but its compile
time grows with depth (every block of every unrolled sweep is compiled again). `Signatures` runs the
loops in Python and each call as its own jitted function, so a function is compiled once per
*signature* (block type, static fields, weight shapes and dtypes; layer shape; restarts) and reused
by every block or layer that shares it: compile time grows with the number of distinct signatures,
not with depth; the price is one dispatch per block product and per layer update, and one host sync
per sweep. With `lanes=True` every array carries a leading axis of independent searches (null
samples, each with its own shuffled weights): `spec` says, per positional argument, whether it has
that axis (`"l"`), is shared (`"s"`) or is a block whose learned weights have it (`"b"`), and
`while_loop` freezes each lane once its own condition fails, as `vmap` of `lax.while_loop` does.

`choose_driver` picks between them by the number of blocks (`SIGNATURE_MIN_BLOCKS`). Restarts run
in chunks (`batch_size`) spread over every device of every process, with the same values on any
number of them: `SHARDED_PROGRAM` maps each device over its share of the chunks under `shard_map`,
the top-level `Signatures` runs them as lanes, one chunk per device at a time (`restart_lanes`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from .._checks import check_choice
from .._lanes import lanes_mesh, put_lane_keys, put_lanes, to_host
from .._types import Array, Float, FloatLike, Key
from .blocks import Block, Dense
from .graph import SignedGraph

SCREEN_SWEEPS = 2  # `"layerwise"`: sweeps every restart takes before the best `survivors` go on
UNIFORM_BITS = 23  # `"anneal"`: resolution of its uniforms (each exact in float32)
ENERGY_BATCH = 8  # block energies are block products of this many vectors (the default restarts)
SIGNATURE_MIN_BLOCKS = 48  # graphs with at least this many blocks search with per-signature functions
DRIVERS = ("program", "signatures")


# ------------------------------------------------------------------ drivers


class _Program:
    """Everything traced into the caller's program (inside `jit`); `shards_restarts`: restart chunks
    spread over every device by `map` (the top level of a search; not inside a null sample's)."""

    lanes = False

    def __init__(self, shards_restarts: bool = False):
        self.shards_restarts = shards_restarts

    def call(self, fn, spec, *args, **static):
        return fn(*args, **static)

    def spread(self, x):
        return x

    def product(self, block, x, acc, transpose):
        return _product(block, x, acc, transpose=transpose)

    def take(self, x, i):
        return jax.tree.map(lambda a: a[i], x)

    def while_loop(self, cond, body, state):
        return lax.while_loop(cond, body, state)

    def scan(self, step, carry, xs):
        return lax.scan(lambda c, x: (step(c, x), None), carry, xs)[0]

    def fori(self, body, carry, count):
        return lax.fori_loop(0, count, body, carry)

    def fold(self, step, carry, xs):
        return self.scan(step, carry, tuple(jnp.asarray(x) for x in xs))

    def map(self, fn, keys, count):
        if not self.shards_restarts:
            return lax.map(lambda inputs: fn(*inputs), (keys, jnp.arange(count)))
        mesh = lanes_mesh()  # each device maps over its share (the last padded with the last chunk)
        ids = jnp.minimum(jnp.arange(-(-count // mesh.size) * mesh.size), count - 1)
        local = partial(lax.map, lambda inputs: fn(*inputs))
        run = jax.shard_map(lambda *a: local(a), mesh=mesh, in_specs=P("lanes"), out_specs=P("lanes"),
                            check_vma=False)  # fmt: skip
        out = run(keys[ids], ids)
        return lax.with_sharding_constraint(jax.tree.map(lambda x: x[:count], out), NamedSharding(mesh, P()))

    def stack(self, outs):
        return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


PROGRAM = _Program()
SHARDED_PROGRAM = _Program(shards_restarts=True)  # `frustration`'s own search: chunks over devices


class Signatures:
    """Loops in Python, each piece its own jitted function (cached by signature); `lanes`: every
    array has a leading axis of independent searches (see the module docstring)."""

    def __init__(self, lanes: bool = False, shared_graph: bool = False):
        self.lanes, self.shared_graph = lanes, shared_graph
        self.mesh = lanes_mesh() if lanes else None  # lane arrays are split over every device

    def call(self, fn, spec, *args, **static):
        if self.lanes and self.shared_graph:  # the lanes search one graph: its blocks are shared
            spec = spec.replace("b", "s")
        return _dispatch(fn, spec if self.lanes else None, tuple(sorted(static.items())), self.mesh, *args)

    def spread(self, x):
        """A value computed from the shared graph, given the lane axis (one lane per device)."""
        return _spread(self.mesh, x) if self.lanes and self.shared_graph else x

    def product(self, block, x, acc, transpose):
        return self.call(_product, "bll", block, x, acc, transpose=transpose)

    def take(self, x, i):
        return jax.tree.map(lambda a: a[:, i] if self.lanes else a[i], x)

    def while_loop(self, cond, body, state):
        while True:
            go = cond(state)
            if not bool(jnp.any(go)):  # the one host sync per sweep
                return state
            new = body(state)
            if self.lanes:  # lanes whose condition failed keep their state
                new = jax.tree.map(partial(self.call, _where, "lll", go), new, state)
            state = new

    def scan(self, step, carry, xs):
        for i in range(jax.tree.leaves(xs)[0].shape[1 if self.lanes else 0]):
            carry = step(carry, self.take(xs, i))
        return carry

    def fori(self, body, carry, count):
        for i in range(int(count)):
            carry = body(i, carry)
        return carry

    def fold(self, step, carry, xs):
        for x in zip(*xs):  # shared host numbers, the same for every lane
            carry = step(carry, tuple(int(v) for v in x))
        return carry

    def map(self, fn, keys, count):
        return self.stack([fn(self.take(keys, c), c) for c in range(count)])

    def stack(self, outs):
        return jax.tree.map(lambda *xs: jnp.stack(xs, axis=1 if self.lanes else 0), *outs)


SIGNATURES = Signatures()


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _dispatch(fn, spec, static, mesh, *args):
    """`fn(*args, **static)`, vmapped over the lane axis given by `spec` (`None`: no lanes) and run
    under `shard_map` over `mesh`: each device computes its own lanes, and the compiled piece holds
    no collectives. Its jit cache key is `(fn, spec, static)` and the arguments' structure, shapes
    and dtypes: the signature of the piece of graph it runs on."""
    f = partial(fn, **dict(static))
    axes = None if spec is None else tuple(_lane_axes(a, c) for a, c in zip(args, spec))
    if axes is None or all(a is None for a in axes):  # no lanes, or all shared: the result is too
        return f(*args)
    specs = tuple(_lane_specs(a, c) for a, c in zip(args, spec))
    vmapped = jax.vmap(f, in_axes=axes)
    run = jax.shard_map(vmapped, mesh=mesh, in_specs=specs, out_specs=P("lanes"), check_vma=False)
    return run(*args)


@partial(jax.jit, static_argnums=0)
def _spread(mesh, x):
    return jax.shard_map(lambda v: v[None], mesh=mesh, in_specs=P(), out_specs=P("lanes"), check_vma=False)(x)


def _lane_axes(arg, code: str):
    if code == "l":
        return 0
    if code == "b" and isinstance(arg, Block) and arg.learned:  # null models shuffle learned weights
        return jax.tree.map(lambda x: 0 if eqx.is_inexact_array(x) else None, arg)
    return None


def _lane_specs(arg, code: str):
    """`_lane_axes` as `shard_map` partition specs: the lane axis split over the devices."""
    axes = _lane_axes(arg, code)
    if axes is None or axes == 0:
        return jax.tree.map(lambda _: P() if axes is None else P("lanes"), arg)
    return jax.tree.map(lambda x: P("lanes") if eqx.is_inexact_array(x) else P(), arg)


def choose_driver(graph: SignedGraph) -> str:
    """`"signatures"` for graphs of at least `SIGNATURE_MIN_BLOCKS` blocks (compile time bounded by
    the distinct block signatures), else `"program"` (one XLA program: least overhead)."""
    return "signatures" if len(graph.blocks) >= SIGNATURE_MIN_BLOCKS else "program"


def driver(name: str | None, graph: SignedGraph, lanes: bool = False):
    """The driver called `name` (`None`: `choose_driver(graph)`)."""
    name = choose_driver(graph) if name is None else name
    check_choice(name, "driver", DRIVERS)
    if name == "program":
        return PROGRAM
    return Signatures(lanes) if lanes else SIGNATURES


def block_signatures(graph: SignedGraph) -> set:
    """The distinct block signatures of `graph`: type, static fields, weight shapes and dtypes."""
    return {
        (jax.tree.structure(b), tuple((x.shape, x.dtype) for x in jax.tree.leaves(b))) for b in graph.blocks
    }


# ------------------------------------------------------------------ pieces (one restart batch each)
# Per-restart arrays carry a leading restart axis; none of these knows about lanes.


def _sum_rest(x: Array) -> Array:
    return jnp.sum(x.reshape(x.shape[0], -1), axis=1)


def _product(block: Block, x: Array, acc: Array, *, transpose: bool) -> Array:
    """`acc + A_b x` (or `acc + A_bᵀ x`) for each restart of the batch `x`."""
    return acc + jax.vmap(block.apply_transpose if transpose else block.apply)(x)


def _zero_fields(s):
    z = jnp.zeros_like(s)
    return z, z


def _descent_layer(s, incoming, outgoing, gain, sas):
    """Layer `j` takes `s_j = sign(h_j)` (kept where `h_j = 0`); the gain is `Σ_flipped |h_i|`, and
    `s_j·(incoming field)` adds layer `j`'s blocks from final layers to `sᵀAs`."""
    h = incoming + outgoing
    new = jnp.where(h > 0, 1, jnp.where(h < 0, -1, s)).astype(s.dtype)
    gain = gain + _sum_rest(jnp.where(new != s, jnp.abs(h), 0))
    sas = sas + _sum_rest(new * incoming)
    return new, (gain, sas)


def _heat_bath_layer(s, incoming, outgoing, beta, seed, start):
    """Layer `j` (its nodes numbered from `start`) drawn from `P(s_i = +1) = σ(2β h_i)`, one
    `_uniforms` draw per node, made in the step (no sweep-wide draw to slice)."""
    h = incoming + outgoing
    u = _uniforms(seed, s, start)
    return jnp.where(u < jax.nn.sigmoid(2 * beta * h).astype(u.dtype), 1, -1).astype(h.dtype)


def _hash32(x: Array) -> Array:
    """Wellons' `lowbias32`: an invertible mixing of 32-bit words (every input bit flips each
    output bit with probability within ~2e-4 of ½)."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x7FEB352D)
    x = (x ^ (x >> 15)) * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _uniforms(seed, s, start):
    """A uniform per node of the layer `s` (restarts first), its nodes numbered from `start`:
    float32 on the grid `(k + ½)/2^23`, node `i` of restart `r` hashing
    `hash(hash(i) ^ hash(hash(r) ^ seed))`, `seed` one random word per sweep (`_sweep_seeds`). So
    the draws of a node depend on its number only, not on how the nodes split into layers. A
    counter-based draw: on CPU a threefry word costs ~5–9 ns, this ~0.4 ns, and a small graph's
    sweep was mostly its random draw. A heat-bath step `u < p` takes a node up with a probability
    within `2^-23` of `p`."""
    batch, size = s.shape[0], s[0].size
    rows = _hash32(_hash32(lax.iota(jnp.uint32, batch)) ^ seed)
    nodes = lax.iota(jnp.uint32, size) + jnp.asarray(start).astype(jnp.uint32)
    words = _hash32(_hash32(nodes)[None, :] ^ rows[:, None])
    u = ((words >> (32 - UNIFORM_BITS)).astype(jnp.float32) + 0.5) / 2**UNIFORM_BITS
    return u.reshape(s.shape)


def _sweep_schedule(key, squares, k, steps, *, t0, t1, n, dtype):
    """Annealing sweep `k` of `steps`: its inverse temperature, `t0 → t1` geometrically in units of
    the root-mean-square field of a random gauge `sqrt(2Σa²/n)` (node `i`'s field under random
    signs has variance `Σ_j a_ij²`, so a temperature flips the same share of fields whatever the
    degree), and one random 32-bit word, the seed of its `_uniforms`."""
    share = k / jnp.maximum(steps - 1, 1)
    temperature = t0 * (t1 / t0) ** share.astype(squares.dtype)
    beta = 1 / (temperature * jnp.sqrt(2 * squares / max(n, 1)))
    return beta.astype(dtype), jax.random.bits(jax.random.fold_in(key, k), (), jnp.uint32)


def _zeros2(s0):
    z = jnp.zeros(s0.shape[0], s0.dtype)
    return z, z


def _energy(total, sas):
    return (total - sas) / 2


def _descent_start(s0):
    inf = jnp.full(s0.shape[0], jnp.inf, s0.dtype)
    return inf, jnp.array(0)


def _going(gain, threshold, sweeps, *, max_sweeps):
    return jnp.any(gain > threshold) & (sweeps < max_sweeps)


def _all_zero(gain):
    return jnp.all(gain == 0)


def _where(go, new, old):
    return jnp.where(go, new, old)


def _top(energy, *, survivors):
    return lax.top_k(-energy, survivors)[1]


def _argmin(values):
    return jnp.argmin(values)


def _take(g, i, *, dtype):
    return g[i].astype(dtype)


def _split(key, *, num):
    return jax.random.split(key, num)


def _split2(key):
    a, b = jax.random.split(key)
    return a, b


def _cast(g, *, dtype):
    return g.astype(dtype)


def random_signs(key: Key, batch: int, n: int, dtype) -> Float[Array, "batch n"]:
    """Uniform random `±1` gauges, one random bit each (32 per drawn word: cheaper than `bernoulli`)."""
    words = jax.random.bits(key, (batch, -(-n // 32)), jnp.uint32)
    bits = (words[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return (1 - 2 * bits.reshape(batch, -1)[:, :n].astype(jnp.int32)).astype(dtype)


def _flat_start(key, first, *, batch, n, dtype):
    """`batch` random gauges over all `n` nodes; restart 0 of the first chunk is all-plus."""
    flat = random_signs(key, batch, n, dtype)
    return flat.at[0].set(jnp.where(first, 1, flat[0]))


def _layer_slice(flat, offset, *, shape):
    """Layer of shape `shape` starting at node `offset` (dynamic: one function per layer shape)."""
    part = lax.dynamic_slice_in_dim(flat, offset, _size(shape), axis=1)
    return part.reshape(flat.shape[0], *shape)


def _size(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def _abs_sum(block):
    return block.abs_sum()


def _square_sum(block):
    return block.map_weights(jnp.square).abs_sum()  # (each edge's weight is one stored weight)


def _parts(block):
    """`P, N >= 0` with `A_b = P − N`."""
    return block.map_weights(jax.nn.relu), block.map_weights(lambda w: jax.nn.relu(-w))


def _down_up(s, *, dtype):
    """`[v, u, 0, …]` with `u = [s = +1]`, `v = [s = −1]`: a batch of `ENERGY_BATCH` for the block
    products (the size of the default restart batch, so the sweep's compiled products serve)."""
    up = (s > 0).astype(dtype)
    return jnp.zeros((ENERGY_BATCH, *s.shape), dtype).at[0].set(1 - up).at[1].set(up)


def _energy_zeros(s, *, dtype):
    """Zero fields for a batch of `ENERGY_BATCH` on the layer of `s`."""
    return jnp.zeros((ENERGY_BATCH, *s.shape), dtype)


def _energy_terms(s_dst, pos, neg, *, dtype):
    # δ_b = u'P v + v'P u + u'N u + v'N v with A_b = P − N (P, N >= 0), u = [s = +1], v = [s = −1]:
    # a sum of non-negative terms, so an unfrustrated block gives exactly 0 (no cancellation).
    # `pos = P [v_src, u_src]`, `neg = N [v_src, u_src]`.
    up_dst = (s_dst > 0).astype(dtype)
    dn_dst = 1 - up_dst
    return (
        jnp.vdot(up_dst, pos[0])
        + jnp.vdot(dn_dst, pos[1])
        + jnp.vdot(up_dst, neg[1])
        + jnp.vdot(dn_dst, neg[0])
    )


def _dense_energy(block, s_src, s_dst, *, dtype):
    # δ_b = Σ_pq max(0, −s_p W_pq s_q), elementwise (fused: no copy of W), row by row then over
    # the rows (as a product's sums): non-negative terms, so an unfrustrated block gives exactly 0.
    terms = -(s_dst.reshape(-1, 1).astype(dtype) * block.weight * s_src.reshape(1, -1).astype(dtype))
    return jnp.sum(jnp.sum(jax.nn.relu(terms), axis=1))


def _join(g, *, kept):
    """Restart chunks `(chunks, batch, …)` joined, the first `kept` restarts kept."""
    return g.reshape(-1, *g.shape[2:])[:kept]


def _summary(values, its, ok, *, kept):
    return values.reshape(-1)[:kept], jnp.max(its), jnp.all(ok)


def _stack(xs):
    return jnp.stack(xs)


# ------------------------------------------------------------------ the algorithm


def total_weight(graph: SignedGraph, drv=PROGRAM, piece: Callable = _abs_sum):
    """`Σ|a|` (`piece=_square_sum`: `Σa²`), summed block by block in graph order (as
    `SignedGraph.abs_sum`), per lane."""
    total = sum((drv.call(piece, "b", b) for b in graph.blocks), start=jnp.zeros((), graph.dtype))
    return drv.spread(total)


def block_energies(graph: SignedGraph, gauge: Sequence[Array], drv=PROGRAM) -> tuple:
    """`δ_b(s)` of every block (one gauge, no restart axis): two block products each, of `P` and
    `N` on the batch `[v_src, u_src]` (the sweep's product function, for a batch of two)."""
    dtype = graph.dtype
    out = []
    for (src, dst), block in zip(graph.links, graph.blocks):  # one block's batches alive at a time
        if isinstance(block, Dense):  # its matrix's parts would be two more copies of it
            out.append(drv.call(_dense_energy, "bll", block, gauge[src], gauge[dst], dtype=dtype))
            continue
        down_up = drv.call(_down_up, "l", gauge[src], dtype=dtype)
        zero = drv.call(_energy_zeros, "l", gauge[dst], dtype=dtype)
        pos, neg = drv.call(_parts, "b", block)
        pos = drv.product(pos, down_up, zero, False)
        neg = drv.product(neg, down_up, zero, False)
        out.append(drv.call(_energy_terms, "lll", gauge[dst], pos, neg, dtype=dtype))
    return tuple(out)


def _sweep(graph: SignedGraph, s, drv, step: Callable, carry):
    """THE sweep: each layer `j` in turn gets its field `h_j = (A s + Aᵀ s)_j` from the blocks into it
    (from layers already updated in this sweep) and out of it, and `step(j, s_j, incoming, outgoing,
    carry) -> (s_j, carry)` sets it (layers have no internal edges)."""
    s, blocks, links = list(s), graph.blocks, graph.links
    into, out_of = _adjacency(links, len(s))
    for j in range(len(s)):
        incoming, outgoing = drv.call(_zero_fields, "l", s[j])
        for b in into[j]:
            incoming = drv.product(blocks[b], s[links[b][0]], incoming, False)
        for b in out_of[j]:
            outgoing = drv.product(blocks[b], s[links[b][1]], outgoing, True)
        s[j], carry = step(j, s[j], incoming, outgoing, carry)
    return tuple(s), carry


def _adjacency(links, layers: int) -> tuple[list[list[int]], list[list[int]]]:
    """The blocks into and out of each layer, in block order (as `SignedGraph.incoming/outgoing`;
    computed here once: a bound method of a module costs a flatten of the whole graph)."""
    into, out_of = [[] for _ in range(layers)], [[] for _ in range(layers)]
    for b, (src, dst) in enumerate(links):
        into[dst].append(b)
        out_of[src].append(b)
    return into, out_of


def sweep(graph: SignedGraph, s, total=None, drv=PROGRAM):
    """One descent sweep: each layer in turn takes `s_j = sign(h_j)` (kept where `h_j = 0`). Returns
    the gauges, each restart's gain (flipping the nodes of a layer against their fields lowers `δ` by
    `Σ_flipped |h_i|`) and its `δ` after the sweep: layer `j`'s incoming field comes from layers
    already final, so `Σ_j s_j·(incoming_j)` is `sᵀAs`, each block counted once."""
    total = total_weight(graph, drv) if total is None else total

    def step(j, s_j, incoming, outgoing, carry):
        return drv.call(_descent_layer, "lllll", s_j, incoming, outgoing, *carry)

    s, (gain, sas) = _sweep(graph, s, drv, step, drv.call(_zeros2, "l", s[0]))
    return s, gain, drv.call(_energy, "ll", total, sas)


def descend(graph: SignedGraph, s, max_sweeps: int, tol: FloatLike, total, drv=PROGRAM):
    """Block-coordinate descent: `sweep` after `sweep` until no restart gains more than `tol · Σ|a|`
    in a sweep (with `tol = 0`: until nothing changes). A restart at its fixed point is left unchanged
    by further sweeps, so the batch runs together. Returns the gauges, their `δ`, the sweeps and
    whether every restart reached its fixed point."""
    threshold = tol * total

    def cond(state):
        return drv.call(_going, "lll", state[3], threshold, state[2], max_sweeps=max_sweeps)

    def body(state):
        s, _, sweeps, _ = state
        s, gain, energy = sweep(graph, s, total, drv)
        return s, energy, sweeps + 1, gain

    inf, zero = drv.call(_descent_start, "l", s[0])
    s, energy, sweeps, gain = drv.while_loop(cond, body, (tuple(s), inf, zero, inf))
    return s, energy, sweeps, drv.call(_all_zero, "l", gain)


def screen(graph: SignedGraph, s, survivors: int, drv=PROGRAM):
    """`SCREEN_SWEEPS` sweeps of every restart, then the `survivors` lowest in `δ` go on. The screen
    only ranks restarts: it runs in `_single` precision (the survivors' descent in the graph's)."""
    low, x = _single(graph, s, drv)
    total = total_weight(low, drv)
    for _ in range(SCREEN_SWEEPS):
        x, _, energy = sweep(low, x, total, drv)
    best = drv.call(_top, "l", energy, survivors=survivors)
    return tuple(drv.call(_take, "ll", g, best, dtype=graph.dtype) for g in x)


def _single(graph: SignedGraph, s, drv):
    """A float64 graph and its gauges in float32, for the steps that only sample or rank gauges
    (`anneal`, `screen`): a field's rounding there is far below the temperature or the ranking's
    margins, and the descent after them runs in the graph's precision. Other graphs as they are."""
    low = graph.astype(jnp.float32) if graph.dtype == jnp.float64 else graph
    return low, tuple(drv.call(_cast, "l", g, dtype=low.dtype) for g in s)


def anneal(graph: SignedGraph, s, key: Key, squares, steps, temperatures, drv=PROGRAM):
    """Heat-bath annealing with layer-parallel updates: `P(s_i = +1) = σ(2β h_i)` over `steps`
    sweeps (a count that may be traced), β from `temperatures` (`_sweep_schedule`, `squares` =
    `Σa²`), in `_single` precision. Each node draws its uniform from its number and one seed per
    sweep (`_uniforms`)."""
    low, s = _single(graph, s, drv)
    off = graph.offsets
    t0, t1 = temperatures
    schedule = dict(t0=t0, t1=t1, n=graph.num_nodes, dtype=low.dtype)

    def one(k, s):
        beta, seed = drv.call(_sweep_schedule, "llss", key, squares, k, steps, **schedule)

        def step(j, s_j, incoming, outgoing, carry):
            return drv.call(_heat_bath_layer, "llllls", s_j, incoming, outgoing, beta, seed, off[j]), carry

        return _sweep(low, s, drv, step, None)[0]

    s = drv.fori(one, s, steps)
    return tuple(drv.call(_cast, "l", g, dtype=graph.dtype) for g in s)


def _prepared(block: Block) -> Block:
    return block.prepared()


def _laid_out(graph: SignedGraph, drv) -> SignedGraph:
    """`graph` with its blocks' operands laid out for their products once (`Block.prepared`), per
    lane: inside the sweeps' loops XLA would relayout a convolution's kernel at every product (on a
    ResNet-18-shaped graph at 16², about 3/4 of a sweep)."""
    blocks = tuple(drv.call(_prepared, "b", b) for b in graph.blocks)
    return eqx.tree_at(lambda g: g.blocks, graph, blocks)


def _quadratic_energy(graph: SignedGraph, s) -> Float[Array, " restarts"]:
    """`½(Σ|a| − sᵀAs)` per restart: one product per block, to rank restarts (zero may round to ±ε)."""
    sas = sum(
        _sum_rest(s[dst] * jax.vmap(block.apply)(s[src]))
        for (src, dst), block in zip(graph.links, graph.blocks)
    )
    return (graph.abs_sum() - sas) / 2


def _greedy(graph: SignedGraph, s: Float[Array, "restarts n"], max_flips: int):
    """The published greedy: flip the node with the most negative `s_i h_i` while one is negative."""
    A = graph.to_dense()
    J = A + A.T
    lanes = jnp.arange(s.shape[0])

    def flip(state):
        s, h, flips, _ = state
        i = jnp.argmin(s * h, axis=1)
        sign = jnp.where(jnp.min(s * h, axis=1) < 0, -1, 1).astype(s.dtype)  # −1: this restart flips
        h = h + ((sign - 1) * s[lanes, i])[:, None] * J[i]
        s = s.at[lanes, i].multiply(sign)
        return s, h, flips + 1, jnp.any(s * h < 0)

    h = s @ J
    state = (s, h, jnp.array(0), jnp.any(s * h < 0))
    s, _, flips, negative = lax.while_loop(lambda st: st[3] & (st[2] < max_flips), flip, state)
    return s, flips, ~negative


def restart_chunks(settings) -> tuple[int, int, int]:
    """`(chunks, batch, keep)`: the restarts run in `chunks` chunks of `batch` (`settings.batch_size`,
    default all at once), and `keep` of each chunk go on past the screen."""
    restarts = settings.restarts
    batch = min(settings.batch_size or restarts, restarts)
    chunks = -(-restarts // batch)
    return chunks, batch, min(batch, -(-(settings.survivors or restarts) // chunks))


def _chunk(graph: SignedGraph, key: Key, chunk, settings, total, drv):
    """One chunk of restarts from random gauges (chunk 0's first restart from all-plus): gauges,
    energies, iterations and convergence. `chunk` is the chunk's index (a lane array when the chunks
    are lanes); `"greedy"` (dense) runs only inside a program."""
    _, batch, keep = restart_chunks(settings)
    method, anneal_steps, dtype = settings.method, settings.anneal_steps, graph.dtype
    k_start, k_anneal = drv.call(_split2, "l", key)
    first = "ls" if isinstance(chunk, int) else "ll"  # a Python index is shared by the lanes
    flat = drv.call(_flat_start, first, k_start, chunk == 0, batch=batch, n=graph.num_nodes, dtype=dtype)
    off = graph.offsets
    s = tuple(drv.call(_layer_slice, "ls", flat, off[j], shape=sh) for j, sh in enumerate(graph.shapes))
    if method == "greedy":
        flat, its, ok = _greedy(graph, flat, settings.max_iterations)
        s = tuple(jax.vmap(graph.unflatten)(flat))
        return s, _quadratic_energy(graph, s), its, ok
    del flat  # (as large as all the gauges: not kept through the descent)
    squares = total_weight(graph, drv, _square_sum) if method == "anneal" else None
    graph = _laid_out(graph, drv)
    if method == "anneal":
        s = anneal(graph, s, k_anneal, squares, anneal_steps, settings.anneal_temperatures, drv)
    if keep < batch:
        s = screen(graph, s, keep, drv)
    s, energy, its, ok = descend(graph, s, settings.max_iterations, settings.tol, total, drv)
    its = its + (anneal_steps if method == "anneal" else SCREEN_SWEEPS * (keep < batch))
    return s, energy, its, ok


def search(graph: SignedGraph, key: Key, settings, drv=PROGRAM, total=None):
    """Run `settings.restarts` searches, `batch_size` at a time (`restart_chunks`; the chunks spread
    over the devices by `SHARDED_PROGRAM` or the top-level `Signatures`); returns gauges, energies,
    iterations and convergence."""
    chunks, batch, keep = restart_chunks(settings)
    total = total_weight(graph, drv) if total is None else total
    if chunks == 1:  # no loop (a one-step map keeps XLA from fusing across it)
        return _chunk(graph, key, 0, settings, total, drv)
    keys = drv.call(_split, "l", key, num=chunks)
    if isinstance(drv, Signatures) and not drv.lanes and settings.method != "greedy":
        out = restart_lanes(graph, keys, settings)  # (the dense greedy baseline runs chunk by chunk)
    else:  # a program maps the chunks (`SHARDED_PROGRAM`: over the devices)
        out = drv.map(lambda k, c: _chunk(graph, k, c, settings, total, drv), keys, chunks)
    kept = settings.restarts if keep == batch else chunks * keep
    gauges, values, its, ok = out
    values, its, ok = drv.call(_summary, "lll", values, its, ok, kept=kept)
    return tuple(drv.call(_join, "l", g, kept=kept) for g in gauges), values, its, ok


def restart_lanes(graph: SignedGraph, keys: Key, settings):
    """The chunks of `keys` searched as lanes of `Signatures(lanes=True, shared_graph=True)`, one
    chunk per device at a time over every device of every process (`lanes_mesh`; the last group
    padded with its last chunk): each chunk's outputs, stacked on every process. A chunk is searched
    alike on any device, so the values do not depend on how many there are."""
    drv = Signatures(lanes=True, shared_graph=True)
    count, width = keys.shape[0], drv.mesh.size
    total = total_weight(graph, drv)
    outs = []
    for start in range(0, count, width):
        ids = np.minimum(np.arange(start, start + width), count - 1)
        lane_keys = put_lane_keys(keys, ids, drv.mesh)
        out = _chunk(graph, lane_keys, put_lanes(ids, drv.mesh), settings, total, drv)
        outs.append(to_host(out))
    return jax.tree.map(lambda *xs: jnp.asarray(np.concatenate(xs)[:count]), *outs)


def estimate(graph: SignedGraph, key: Key, settings, drv=PROGRAM):
    """`search`, then the best restart's gauge, its `δ` recomputed block by block, and `Σ|a|`."""
    total = total_weight(graph, drv)
    gauges, values, iterations, converged = search(graph, key, settings, drv, total)
    gauge = best_gauge(values, gauges, drv)
    del gauges  # every restart's gauge: freed before the block energies
    value = sum(block_energies(graph, gauge, drv), start=jnp.zeros((), graph.dtype))
    return gauge, value, total, values, iterations, converged


def job_key(key: Key, sweeps, batch):
    """The key of the ladder's job `(sweeps, batch)` in a search with `key`."""
    return jax.random.fold_in(jax.random.fold_in(key, sweeps), batch)


def _no_gauge(key, *, shapes, dtype):
    return tuple(jnp.zeros(shape, dtype) for shape in shapes), jnp.array(jnp.inf, dtype)


def _keep_best(values, gauge, its, ok, best, best_value, most, all_ok, found, index):
    value = jnp.min(values)
    value, gauge = _lowest(value, gauge, best_value, best)
    return gauge, value, jnp.maximum(its, most), ok & all_ok, found.at[index].set(jnp.min(values))


def _lowest(values, gauge, best_value, best):
    """The lower of two (value, gauge) pairs."""
    better = values < best_value
    return jnp.minimum(values, best_value), tuple(jnp.where(better, g, b) for g, b in zip(gauge, best))


def keep_lower(value, gauge, best_value, best, drv=PROGRAM):
    """`(value, gauge)` or `(best_value, best)`, whichever is lower in value, per search (lane)."""
    return drv.call(_lowest, "llll", value, gauge, best_value, best)


def lowest(values, drv=PROGRAM):
    """The least of `values`, per search (lane)."""
    return drv.call(jnp.min, "l", values)


def _job_slots(key, *, count, dtype):
    return jnp.full(count, jnp.inf, dtype), jnp.array(0), jnp.array(True)


def search_jobs(graph: SignedGraph, key: Key, settings, jobs, drv=PROGRAM, total=None):
    """The ladder's annealing jobs: for each row `(sweeps, batch)` of the integer array `jobs`,
    `search` with `settings` annealed over `sweeps` sweeps from `job_key(key, sweeps, batch)`; one
    compiled search serves every job (the sweeps are a traced count). Returns the best gauge of
    all, each job's lowest `δ` in order, the most sweeps of any, and whether every restart of
    every job converged."""
    total = total_weight(graph, drv) if total is None else total
    dtype = graph.dtype
    gauge, value = drv.call(_no_gauge, "l", key, shapes=tuple(graph.shapes), dtype=dtype)
    found, most, ok = drv.call(_job_slots, "l", key, count=len(jobs), dtype=dtype)

    def step(carry, job):
        sweeps, batch, index = job
        run = settings._replace(anneal_steps=sweeps)
        k = drv.call(job_key, "lss", key, sweeps, batch)
        gauges, values, its, conv = search(graph, k, run, drv, total)
        best = best_gauge(values, gauges, drv)
        return drv.call(_keep_best, "lllllllll" + "s", values, best, its, conv, *carry, index)

    xs = (jobs[:, 0], jobs[:, 1], np.arange(len(jobs)))
    gauge, value, most, ok, found = drv.fold(step, (gauge, value, most, ok, found), xs)
    return gauge, found, most, ok


def estimate_jobs(graph: SignedGraph, key: Key, settings, jobs, drv=PROGRAM):
    """`search_jobs`, then the best gauge's `δ` recomputed block by block, and `Σ|a|`."""
    total = total_weight(graph, drv)
    gauge, found, most, ok = search_jobs(graph, key, settings, jobs, drv, total)
    value = sum(block_energies(graph, gauge, drv), start=jnp.zeros((), graph.dtype))
    return gauge, value, total, found, most, ok


def best_gauge(values, gauges, drv=PROGRAM):
    """The gauge of the restart lowest in `values`."""
    i = drv.call(_argmin, "l", values)
    return tuple(drv.call(_take, "ll", g, i, dtype=g.dtype) for g in gauges)


def stack(xs, drv=PROGRAM):
    """`jnp.stack` per search (lane)."""
    return drv.call(_stack, "l", tuple(xs))


def split(key, num: int, drv=PROGRAM):
    """`jax.random.split(key, num)` per search (lane)."""
    return drv.call(_split, "l", key, num=num)


def split2(key, drv=PROGRAM):
    """`jax.random.split(key)` as a pair, per search (lane)."""
    return drv.call(_split2, "l", key)
