"""Near-monotonicity of a network's function along the partial order of a gauge.

A gauge `s ∈ {±1}^n` gives the input and output orthants `K_in = {v : s_in ⊙ v >= 0}` and
`K_out = {v : s_out ⊙ v >= 0}`. `f` is monotone w.r.t. them when `x' − x ∈ K_in` implies
`f(x') − f(x) ∈ K_out`; a balanced graph (no frustrated edge under `s`) with monotone
non-decreasing activations guarantees it, since then `S_out J(x) S_in >= 0` entrywise for
every Jacobian `J(x)` (`S = diag(s)`). The scores below measure how far from this a network is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._checks import InputError, check_array, check_count, check_graph, check_key, check_positive
from .._types import Array, ArrayLike, Bool, Float, Key, Real, Scalar
from .activations import is_relu
from .blocks import Masked
from .frustration import frustration
from .function import GraphFunction, with_graph_weights
from .graph import SignedGraph
from .nullmodels import null_statistics, shuffle_signs


class Orthant(eqx.Module):
    """The orthant `K = {v : s ⊙ v >= 0}` of a sign vector `s` (shaped like the vectors)."""

    signs: Float[Array, "*shape"]

    def contains(self, v: Float[Array, "*shape"]) -> Array:
        """Whether `v ∈ K` (every coordinate of `s ⊙ v` is `>= 0`)."""
        return jnp.all(self.signs * v >= 0)

    def sample(self, key: Key, sizes: Float[Array, " S"], samples: int) -> Float[Array, "S M ..."]:
        """`samples` random `δ ∈ K` of each Euclidean norm in `sizes`: `ε · s ⊙ |z| / ‖z‖`,
        `z ~ N(0, I)`."""
        z = jnp.abs(jax.random.normal(key, (samples, *self.signs.shape), self.signs.dtype))
        axes = tuple(range(1, z.ndim))
        z = self.signs * z / jnp.sqrt(jnp.sum(z**2, axis=axes, keepdims=True))
        return sizes.reshape(-1, *(1,) * z.ndim) * z


class MonotonicityScore(eqx.Module):
    """Per input `x`, the fraction of Jacobian mass that agrees with the order,
    `m = Σ_{ki} max(0, (S_out J(x) S_in)_{ki}) / Σ_{ki} |J(x)_{ki}|` (1: monotone at `x`,
    about ½: random signs), and the stated `error` of each value: `|m̂ − m| <= error` (0 when
    every Jacobian line was taken: exact to rounding; see `monotonicity_score`). A value is NaN
    where `J(x) = 0` (no mass to judge), and `mean` averages over the other inputs.
    """

    per_input: Float[Array, "*gauges N"]
    error: Float[Array, "*gauges N"]

    @property
    def mean(self) -> Scalar:
        """Average of `per_input` over inputs with a non-zero Jacobian."""
        return jnp.nanmean(self.per_input, axis=-1)

    @property
    def mean_error(self) -> Scalar:
        """Average of `error` over the same inputs: a bound on the error of `mean` wherever every
        per-input bound holds."""
        return jnp.nanmean(self.error, axis=-1)


class PerturbationTest(eqx.Module):
    """Orthant-perturbation test: for each size `ε` (the norm of `δ`), over inputs `x` and
    perturbations `δ`, the fraction of output coordinates `k` with `s_out,k Δ_k >= 0`
    (`coordinate`) and of changes `Δ = f(x + δ) − f(x)` lying in `K_out` (`vector`), with
    `δ ∈ K_in`; `reference_*` is the same with `δ` in a uniformly random orthant.
    """

    sizes: Float[Array, " S"]
    coordinate: Float[Array, " S"]
    vector: Float[Array, " S"]
    reference_coordinate: Float[Array, " S"]
    reference_vector: Float[Array, " S"]


def _check_signs(s, name: str, size: int, what: str) -> Array:
    check_array(s, name)
    flat = np.asarray(s).reshape(-1)
    if flat.size != size:
        raise InputError(f"{name} must have one sign per {what} ({size}), got {flat.size} entries")
    if not np.all(np.abs(flat) == 1):
        raise InputError(f"{name} must hold only +1 and -1, got values {np.unique(flat).tolist()}")
    return jnp.asarray(flat)


def _check_problem(fn, s_in, s_out, inputs):
    """Validate and return flat `s_in`, `s_out` (in the inputs' dtype) and the output shape."""
    if not callable(fn):
        raise InputError(f"fn must be callable (one input -> one output), got {type(fn).__name__}")
    check_array(inputs, "inputs")
    inputs = jnp.asarray(inputs)
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise InputError(f"inputs must be a non-empty batch of shape (N, *input_shape), got {inputs.shape}")
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise InputError(f"inputs must be floating point (fn is differentiated), got dtype {inputs.dtype}")
    in_shape = inputs.shape[1:]
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct(in_shape, inputs.dtype))
    except Exception as e:  # noqa: BLE001 - any failure means fn does not take one input
        raise InputError(f"fn cannot be applied to one input of shape {in_shape}: {e}") from None
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise InputError(f"fn must return one array, got {type(out).__name__}")
    s_in = _check_signs(s_in, "s_in", int(np.prod(in_shape)), f"input coordinate of shape {in_shape}")
    s_out = _check_signs(s_out, "s_out", int(np.prod(out.shape)), f"output of shape {out.shape}")
    return inputs, s_in.astype(inputs.dtype), s_out.astype(inputs.dtype)


CONFIDENCE_Z = 3.0  # standard errors in the stated error of a score from sampled Jacobian lines
BATCH_SIZE = 64  # inputs vmapped together at most
MEMORY_BUDGET = 2**29  # bytes of working memory for one batch of Jacobian rows or perturbed evaluations
PERTURBATION_ARRAYS = 4  # per input and evaluation: deltas, their flips, changes (inputs and outputs)


def _batched(f, xs, batch_size):
    n = jax.tree.leaves(xs)[0].shape[0]
    if batch_size is None or n <= batch_size:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=batch_size)


def _sub_jaxprs(params) -> list:
    subs = []
    for p in params.values():
        for sub in p if isinstance(p, (tuple, list)) else (p,):
            if isinstance(sub, jex.core.ClosedJaxpr):
                subs.append(sub.jaxpr)
            elif isinstance(sub, jex.core.Jaxpr):
                subs.append(sub)
    return subs


def _dependent_size(jaxpr, dependent: Sequence[bool]) -> tuple[int, list[bool]]:
    """Elements of the intermediates of `jaxpr` that depend on the invars marked `dependent`
    (weights reshaped once are not counted; they are not carried per tangent), and which outvars
    depend on them."""
    dep = {v for v, d in zip(jaxpr.invars, dependent) if d}
    size = 0
    for eqn in jaxpr.eqns:
        ins = [not isinstance(v, jex.core.Literal) and v in dep for v in eqn.invars]
        if not any(ins):
            continue
        outs = [True] * len(eqn.outvars)
        for sub in _sub_jaxprs(eqn.params):
            if len(sub.invars) == len(ins):  # a call (pjit, custom_jvp, ...): follow the arguments
                inner, outs = _dependent_size(sub, ins)
            else:  # a loop or a branch: everything inside counts
                inner, _ = _dependent_size(sub, [True] * len(sub.invars))
            size += inner
        for v, d in zip(eqn.outvars, outs):
            if d:
                dep.add(v)
                size += math.prod(getattr(v.aval, "shape", ()))
    return size, [not isinstance(v, jex.core.Literal) and v in dep for v in jaxpr.outvars]


def forward_size(fn, x: jax.ShapeDtypeStruct) -> int:
    """Number of array elements that one evaluation of `fn` at an input like `x` computes from
    `x` (every intermediate of its jaxpr that depends on `x`, nested ones included; a bound on
    what a tangent or cotangent carried through `fn`, or a linearization, holds)."""
    closed = jax.make_jaxpr(fn)(x)
    return max(1, _dependent_size(closed.jaxpr, [True] * len(closed.jaxpr.invars))[0])


class JacobianPlan(NamedTuple):
    """How `monotonicity_score` walks the Jacobians: `reverse` (rows `J_k` by `vjp`, when there are
    no more outputs than inputs) or forward (columns by `jvp`), `chunk` lines at a time, `batch`
    inputs vmapped together; `forward` is `forward_size(fn)`."""

    reverse: bool
    chunk: int
    batch: int
    forward: int


def jacobian_plan(
    fn,
    x: jax.ShapeDtypeStruct,
    n_out: int,
    n_inputs: int,
    *,
    memory_budget: int,
    batch_size: int | None,
    lines: int | None = None,
) -> JacobianPlan:
    """Chunk and batch sizes so that one batch holds about `memory_budget` bytes: a chunk of `c`
    (co)tangents costs `c · (F + n_in + n_out)` elements at one input (`F = forward_size(fn)`:
    the (co)tangents through the network, the lines, the basis vectors), plus `F` for the
    linearization; `c` is as large as fits, at most the `lines` taken per input (default: every
    row, or column), then as many inputs as fit are vmapped (at most `batch_size`, at least one)."""
    n_in = math.prod(x.shape)
    item = np.dtype(x.dtype).itemsize
    size = forward_size(fn, x)
    reverse = n_out <= n_in
    n_dir = n_out if reverse else n_in
    n_lines = n_dir if lines is None else min(lines, n_dir)
    per_tangent = item * (size + n_in + n_out)
    chunk = int(min(n_lines, max(1, memory_budget // per_tangent)))
    per_input = item * size + chunk * per_tangent
    cap = n_inputs if batch_size is None else min(batch_size, n_inputs)
    batch = int(min(cap, max(1, memory_budget // per_input)))
    return JacobianPlan(reverse, chunk, batch, size)


@eqx.filter_jit
def _jacobian_sums(fn, s_in, s_out, inputs, picks, reverse: bool, chunk: int, batch: int):
    """Per input `x`, with `M_g = S_out,g J(x) S_in,g` for each gauge `g` (rows of `s_in`,
    `s_out`): when `picks` is None, the score's sums over every line (row, or column when not
    `reverse`), `Σ max(0, M_g)` and `Σ |J|`; else `a_g = Σ M_g = s_out,gᵀ J s_in,g` (one product
    per gauge) and `‖J_l‖_1` of each line `l` in `picks`."""
    shape = inputs.shape[1:]
    flat = lambda x: fn(x.reshape(shape)).reshape(-1)
    basis_signs, other_signs = (s_out, s_in) if reverse else (s_in, s_out)
    gauges, n = basis_signs.shape

    def one(args):
        x, pick = args
        x = x.reshape(-1)
        if reverse:  # rows: vᵀ J by vjp
            _, pull = jax.vjp(flat, x)
            apply = lambda v: pull(v)[0]
        else:  # columns: J v by jvp
            _, apply = jax.linearize(flat, x)

        def sweep(total, vector, reduce, init):
            """`init` plus `reduce(i, lines)` over the lines of vectors `i`, `chunk` at a time."""
            step = min(chunk, total)

            def body(k, acc):
                idx = k * step + jnp.arange(step)
                i = jnp.minimum(idx, total - 1)  # past the end: a zero vector, adds 0
                vectors = jax.vmap(vector)(i) * (idx < total)[:, None].astype(x.dtype)
                return jax.tree.map(jnp.add, acc, reduce(i, jax.vmap(apply)(vectors)))

            return lax.fori_loop(0, -(-total // step), body, init)

        basis = lambda i: jax.nn.one_hot(i, n, dtype=x.dtype)
        zeros = lambda m: jnp.zeros(m, x.dtype)
        if pick is None:

            def sums(i, lines):
                agree = lambda g: jnp.sum(
                    jnp.maximum(0.0, basis_signs[g, i][:, None] * lines * other_signs[g])
                )
                return lax.map(agree, jnp.arange(gauges)), jnp.sum(jnp.abs(lines))

            return sweep(n, basis, sums, (zeros(gauges), zeros(())))
        total = lambda g, lines: zeros(gauges).at[g].add(jnp.sum(lines * other_signs[g], axis=1))
        agree = sweep(gauges, lambda g: basis_signs[g], total, zeros(gauges))
        norms = lambda i, lines: zeros(len(pick)).at[i].add(jnp.sum(jnp.abs(lines), axis=1))
        return agree, sweep(len(pick), lambda i: basis(pick[i]), norms, zeros(len(pick)))

    return _batched(one, (inputs, picks), batch)


def _check_lines(lines: int | None) -> int | None:
    """None (every Jacobian line) or a count of at least 2 lines (a sample variance)."""
    return None if lines is None else check_count(lines, "lines", minimum=2)


def _scores(fn, s_in, s_out, inputs, key, lines, batch_size, memory_budget) -> MonotonicityScore:
    """`MonotonicityScore` of checked `inputs` under each gauge (rows of `s_in`, `s_out`), from one
    set of Jacobian lines per input (`lines` sampled with `key`, or every line when None)."""
    x = jax.ShapeDtypeStruct(inputs.shape[1:], inputs.dtype)
    n_out = s_out.shape[1]
    plan = jacobian_plan(
        fn, x, n_out, inputs.shape[0], memory_budget=memory_budget, batch_size=batch_size, lines=lines
    )
    n = n_out if plan.reverse else s_in.shape[1]
    sums = lambda picks: _jacobian_sums(fn, s_in, s_out, inputs, picks, plan.reverse, plan.chunk, plan.batch)
    if lines is None or lines >= n:
        agree, mass = sums(None)
        judged = mass > 0
        score = jnp.where(judged, agree.T / jnp.where(judged, mass, 1.0), jnp.nan)
        return MonotonicityScore(score, jnp.where(jnp.isnan(score), jnp.nan, 0.0))
    keys = jax.random.split(key, inputs.shape[0])
    agree, norms = sums(jax.vmap(lambda k: jax.random.choice(k, n, (lines,), replace=False))(keys))
    return _estimate(agree.T, norms, n)


def _estimate(agree: Float[Array, "G N"], norms: Float[Array, "N r"], n: int) -> MonotonicityScore:
    """Scores `½ (1 + a / D̂)` from the exact `a = s_outᵀ J s_in` and the `‖·‖_1` of `r` of the `n`
    lines of each Jacobian: `D̂ = (n / r) Σ_sampled`, its standard error
    `se = n √((1 − r/n) s² / r)` (`s²`: the sample variance), and the error: how far the score
    moves as `D` spans `[D̂ − z·se, D̂ + z·se]` (`z = CONFIDENCE_Z`), never below the proven
    `D >= max(|a|, Σ_sampled)`."""
    r = norms.shape[1]
    taken = jnp.sum(norms, axis=1)
    spread = CONFIDENCE_Z * n * jnp.sqrt((1 - r / n) * jnp.var(norms, axis=1, ddof=1) / r)
    floor = jnp.maximum(jnp.abs(agree), taken)
    mass, low, high = (jnp.maximum(taken * (n / r) + d, floor) for d in (0.0, -spread, spread))
    judged = mass > 0
    inverse = lambda d: 1 / jnp.where(judged, d, 1.0)
    score = jnp.where(judged, (1 + agree * inverse(mass)) / 2, jnp.nan)
    error = jnp.where(judged, jnp.abs(agree) * (inverse(low) - inverse(high)) / 2, jnp.nan)
    return MonotonicityScore(score, error)


def monotonicity_score(
    fn: Callable[[Array], Array],
    s_in: Real[ArrayLike, "*_in_shape"],
    s_out: Real[ArrayLike, "*_out_shape"],
    inputs: Float[ArrayLike, "N ..."],
    *,
    lines: int | None = None,
    key: Key | None = None,
    batch_size: int | None = BATCH_SIZE,
    memory_budget: int = MEMORY_BUDGET,
) -> MonotonicityScore:
    """Jacobian score of `fn` (one input → one output) w.r.t. the orthants of `s_in`, `s_out`.

    Since `max(0, t) = (t + |t|) / 2`, the score is `½ (1 + a / D)` with `a = s_outᵀ J s_in` (one
    vector-Jacobian product, exact) and `D = Σ_{ki} |J_ki|`, the sum of the `‖·‖_1` of the rows
    `J_k` (reverse-mode products with output basis vectors; columns by forward mode when `fn` has
    more outputs than inputs). With `lines=None` every line is taken: the score is exact to
    rounding (`error` 0). With `lines = r`, `r` lines per input are drawn at random without
    replacement (with `key`) and `D` is estimated by `D̂ = (n/r) Σ_sampled`; `error` bounds
    `|m̂ − m|` whenever `|D̂ − D| <= z·se` (`z = CONFIDENCE_Z` standard errors of the
    without-replacement mean, normal approximation: about 99.7% of draws).

    The Jacobian is never held whole: `jacobian_plan` sizes the chunk of products and the number
    of inputs vmapped together (at most `batch_size`, None: no cap) to about `memory_budget`
    bytes. `s_in` and `s_out` hold one sign per input and output coordinate (any shape of that
    size, flattened in C order).

    Raises:
        InputError: a bad `fn`, sign vector, batch of inputs, `lines`, `key` or `memory_budget`.
    """
    inputs, s_in, s_out = _check_problem(fn, s_in, s_out, inputs)
    memory_budget = check_count(memory_budget, "memory_budget")
    lines = _check_lines(lines)
    if lines is not None:
        key = check_key(key)
    return jax.tree.map(
        lambda a: a[0], _scores(fn, s_in[None], s_out[None], inputs, key, lines, batch_size, memory_budget)
    )


@eqx.filter_jit
def _perturbation_fractions(fn, s_in, s_out, inputs, key, sizes, samples, group, batch):
    shape = inputs.shape[1:]
    keys = jax.random.split(key, inputs.shape[0])

    def one(args):
        x, k = args
        k_delta, k_orth = jax.random.split(k)
        own = Orthant(s_in.reshape(shape)).sample(k_delta, sizes, samples)
        flips = jnp.where(jax.random.bernoulli(k_orth, 0.5, (samples, *shape)), -1.0, 1.0)
        ref = own * flips.astype(x.dtype)  # same norms, uniformly random orthants
        fx = fn(x).reshape(-1)

        def fractions(deltas):
            flat = deltas.reshape(-1, *shape)  # (S·M, *shape), evaluated `group` at a time
            change = _batched(lambda d: fn(x + d).reshape(-1) - fx, flat, group)
            agree = (s_out * change >= 0).reshape(*deltas.shape[:2], -1)
            return jnp.mean(agree, axis=(1, 2), dtype=x.dtype), jnp.mean(jnp.all(agree, axis=2), 1, x.dtype)

        return (*fractions(own), *fractions(ref))

    out = _batched(one, (inputs, keys), batch)
    return tuple(jnp.mean(a, axis=0) for a in out)


def orthant_perturbation_test(
    fn: Callable[[Array], Array],
    s_in: Real[ArrayLike, "*_in_shape"],
    s_out: Real[ArrayLike, "*_out_shape"],
    inputs: Float[ArrayLike, "N ..."],
    key: Key,
    *,
    sizes: Sequence[float] = (1e-2, 1e-1, 1.0),
    samples: int = 16,
    batch_size: int | None = BATCH_SIZE,
    memory_budget: int = MEMORY_BUDGET,
) -> PerturbationTest:
    """For each size `ε` and input `x`, `samples` perturbations `δ ∈ K_in` with `‖δ‖ = ε`
    (and as many in random orthants): how often `f(x + δ) − f(x)` lies in `K_out`.

    See `PerturbationTest`. A change of exactly 0 counts as agreeing with the order. The perturbed
    evaluations of one input are vmapped as many at a time as fit `memory_budget` bytes (each
    costs `forward_size(fn)` elements), then as many inputs as fit (at most `batch_size`).
    """
    inputs, s_in, s_out = _check_problem(fn, s_in, s_out, inputs)
    memory_budget = check_count(memory_budget, "memory_budget")
    sizes = np.atleast_1d(np.asarray(sizes, float))
    if sizes.ndim != 1 or sizes.size == 0:
        raise InputError(f"sizes must be a non-empty list of perturbation norms, got {sizes.tolist()}")
    for i, e in enumerate(sizes):
        check_positive(e, f"sizes[{i}]")
    samples = check_count(samples, "samples")
    key = check_key(key)
    x = jax.ShapeDtypeStruct(inputs.shape[1:], inputs.dtype)
    item, n_in, n_out = np.dtype(inputs.dtype).itemsize, s_in.size, s_out.size
    evaluations = sizes.size * samples
    per_eval = item * (forward_size(fn, x) + n_in + n_out)
    group = int(min(evaluations, max(1, memory_budget // per_eval)))
    per_input = group * per_eval + PERTURBATION_ARRAYS * item * evaluations * (n_in + n_out)
    cap = inputs.shape[0] if batch_size is None else min(batch_size, inputs.shape[0])
    batch = int(min(cap, max(1, memory_budget // per_input)))
    sizes = jnp.asarray(sizes, inputs.dtype)
    fractions = _perturbation_fractions(fn, s_in, s_out, inputs, key, sizes, samples, group, batch)
    return PerturbationTest(sizes, *fractions)


# ------------------------------------------------------------------ active subnetworks


def restrict(graph: SignedGraph, masks: Sequence[Bool[Array, "*_layer"]]) -> SignedGraph:
    """The graph restricted to the nodes where `masks` (one boolean array per layer) are true:
    every edge with an end outside is removed (`A ↦ D A D`, `D = diag(mask)`), matrix-free."""
    check_graph(graph)
    shapes = [jnp.shape(m) for m in masks]
    if len(masks) != graph.num_layers or any(s != t for s, t in zip(shapes, graph.shapes)):
        raise InputError(f"masks must hold one array per layer of shapes {graph.shapes}, got {shapes}")
    if any(jnp.asarray(m).dtype != bool for m in masks):
        raise InputError(
            f"masks must be boolean arrays, got dtypes {[str(jnp.asarray(m).dtype) for m in masks]}"
        )
    blocks = tuple(
        Masked(block, jnp.asarray(masks[src]), jnp.asarray(masks[dst]))
        for (src, dst), block in zip(graph.links, graph.blocks)
    )
    return eqx.tree_at(lambda g: g.blocks, graph, blocks)


class ActiveSubnetworks(eqx.Module):
    """Per input `x`, the subgraph on the units active at `x` (ReLU output > 0; every other
    node counts as active) and its best gauge `s(x)`: `normalized` frustration, `active`
    fraction of ReLU units, and how the order changes across inputs — `agreement[a, b]` is
    `|mean(s(x_a) ⊙ s(x_b))|` over nodes active at both (1: the same order up to a global
    sign), `agreement_full[a]` the same against the full graph's gauge."""

    normalized: Float[Array, " N"]
    active: Float[Array, " N"]
    agreement: Float[Array, "N N"]
    agreement_full: Float[Array, " N"]


def relu_masks(model, graph: SignedGraph, x: Float[Array, "*shape"]) -> tuple[Bool[Array, "*_layer"], ...]:
    """Per graph layer, the nodes active at input `x`: for the layers with a ReLU, the units of
    the matching `Lambda(jax.nn.relu)` of the `eqx.nn.Sequential` `model` (in order; or of the
    `GraphFunction` `model`) with output `> 0`; every node of the other layers."""
    relu_layers = [j for j, a in enumerate(graph.activations) if is_relu(a)]
    if isinstance(model, GraphFunction):
        values = model.layers(x)
        outputs = [values[j] > 0 for j in relu_layers]
    else:
        outputs, out = [], x
        for layer in model.layers:
            out = layer(out)
            if isinstance(layer, eqx.nn.Lambda) and layer.fn is jax.nn.relu:
                outputs.append(out > 0)
    if [graph.shapes[j] for j in relu_layers] != [o.shape for o in outputs]:
        raise InputError(
            f"model's ReLU outputs have shapes {[o.shape for o in outputs]} but the graph's ReLU "
            f"layers have shapes {[graph.shapes[j] for j in relu_layers]}: not the graph of this model"
        )
    masks = [jnp.ones(s, bool) for s in graph.shapes]
    for j, o in zip(relu_layers, outputs):
        masks[j] = o
    return tuple(masks)


AGREEMENT_CHUNK = 2**16  # nodes per step of the gauge-agreement products


def _agreements(gauges: np.ndarray, masks: np.ndarray, full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`|Σ_{common} s_a s_b| / max(#common, 1)` for every pair of rows of `gauges` (int8 signs) over
    the nodes both `masks` rows hold, and of each row against `full`: Gram matrices accumulated
    over chunks of nodes (exact integer sums in float64), never an `N × N × n` array."""
    n_inputs, n = gauges.shape
    dot, common = np.zeros((n_inputs, n_inputs)), np.zeros((n_inputs, n_inputs))
    dot_full, common_full = np.zeros(n_inputs), np.zeros(n_inputs)
    for lo in range(0, n, AGREEMENT_CHUNK):
        m = masks[:, lo : lo + AGREEMENT_CHUNK].astype(np.float64)
        g = gauges[:, lo : lo + AGREEMENT_CHUNK] * m
        dot += g @ g.T
        common += m @ m.T
        dot_full += g @ full[lo : lo + AGREEMENT_CHUNK].astype(np.float64)
        common_full += m.sum(axis=1)
    return np.abs(dot) / np.maximum(common, 1), np.abs(dot_full) / np.maximum(common_full, 1)


def active_subnetworks(
    model, graph: SignedGraph, inputs: Float[Array, "N ..."], key: Key, *, full_gauge=None, **search
) -> ActiveSubnetworks:
    """Frustration and gauge of the active subgraph of `graph` (the graph of the ReLU
    `eqx.nn.Sequential` `model`) at each input; `search` goes to `jaxflow.frustration`
    (method, restarts, …). `full_gauge` (per-layer, default: found here) is the reference order.

    Inputs are taken one at a time (the subgraph is `restrict`, matrix-free); per input only its
    node mask and gauge are kept, as bytes, and the agreements are Gram matrices of those
    accumulated over chunks of nodes."""
    check_graph(graph)
    check_key(key)
    check_array(inputs, "inputs")
    if full_gauge is None:
        full_gauge = frustration(graph, key=key, bound=False, **search).gauge
    full = np.asarray(graph.flatten(full_gauge)).astype(np.int8)
    relu = np.concatenate(
        [np.full(math.prod(s), is_relu(a)) for s, a in zip(graph.shapes, graph.activations)]
    )
    n_inputs = len(inputs)
    gauges = np.empty((n_inputs, graph.num_nodes), np.int8)
    masks = np.empty((n_inputs, graph.num_nodes), bool)
    normalized = []
    for i, (x, k) in enumerate(zip(inputs, jax.random.split(key, n_inputs))):
        m = relu_masks(model, graph, x)
        res = frustration(restrict(graph, m), key=k, bound=False, **search)
        masks[i] = np.concatenate([np.asarray(v).ravel() for v in m])
        gauges[i] = np.concatenate([np.asarray(g).ravel() for g in res.gauge]).astype(np.int8)
        normalized.append(res.normalized)
    dtype = jnp.result_type(*normalized)
    active = np.sum(masks & relu, axis=1) / max(int(relu.sum()), 1)
    agreement, agreement_full = _agreements(gauges, masks, full)
    return ActiveSubnetworks(
        normalized=jnp.stack(normalized),
        active=jnp.asarray(active, dtype),
        agreement=jnp.asarray(agreement, dtype),
        agreement_full=jnp.asarray(agreement_full, dtype),
    )


# ------------------------------------------------------------------ null models


class NullMonotonicity(eqx.Module):
    """Jacobian scores of null-model networks, each under its own best gauge (`scores`), and
    of the network with random input/output signs (`random_orthants`), with their stated errors
    (`MonotonicityScore.mean_error`); `perturbation` (when asked for) is each null network's
    `PerturbationTest` under its own gauge, fields stacked over samples."""

    scores: Float[Array, " samples"]
    random_orthants: Float[Array, " samples"]
    scores_error: Float[Array, " samples"]
    random_orthants_error: Float[Array, " samples"]
    perturbation: PerturbationTest | None = None

    @property
    def mean(self) -> Scalar:
        """Mean null-model score."""
        return null_statistics(0.0, self.scores)[0]

    @property
    def std(self) -> Scalar:
        """Standard deviation of the null-model scores (`ddof = 1`)."""
        return null_statistics(0.0, self.scores)[1]

    def zscore(self, value) -> Scalar:
        """`(value − mean) / std` of the null-model scores (`null_statistics`)."""
        return null_statistics(value, self.scores)[2]


def null_model_monotonicity(
    model,
    graph: SignedGraph,
    inputs: Float[Array, "N ..."],
    key: Key,
    *,
    samples: int = 16,
    null_model: str = "block",
    sizes: Sequence[float] | None = None,
    perturbations: int = 8,
    lines: int | None = None,
    memory_budget: int = MEMORY_BUDGET,
    **search,
) -> NullMonotonicity:
    """Reference distributions for `monotonicity_score(model, …)`: `samples` null-model networks
    (`model` with the weights of `shuffle_signs(graph, key, null_model)`, `graph` being `model`'s
    signed graph), each scored under the best gauge of its own graph (`jaxflow.frustration` with
    `search`); and `model` itself scored with `samples` uniformly random `s_in`, `s_out`, all from
    one set of Jacobian lines per input (`D` does not depend on the signs). With `sizes`, each
    null network also takes `orthant_perturbation_test(…, sizes=sizes, samples=perturbations)`.
    Scores take `lines` Jacobian lines per input (None: every line; see `monotonicity_score`).
    The null networks are built and scored one at a time, each within `memory_budget` bytes of
    working memory.

    Raises:
        InputError: a bad `graph`, `key`, `inputs`, `samples` (at least 2) or `lines`.
    """
    samples = check_count(samples, "samples", minimum=2)  # a distribution
    check_graph(graph)
    check_key(key)
    check_array(inputs, "inputs")
    lines = _check_lines(lines)
    score = {"lines": lines, "memory_budget": memory_budget}
    k_nulls, k_in, k_out, k_lines = jax.random.split(key, 4)
    scores, tests = [], []
    for k in jax.random.split(k_nulls, samples):
        k_null, k_gauge, k_score, k_pert = jax.random.split(k, 4)
        null_graph = shuffle_signs(graph, k_null, null_model)
        gauge = frustration(null_graph, key=k_gauge, bound=False, **search).gauge
        null = with_graph_weights(model, null_graph)
        scores.append(monotonicity_score(null, gauge[0], gauge[-1], inputs, key=k_score, **score))
        if sizes is not None:
            budget = {"memory_budget": memory_budget}
            tests.append(
                orthant_perturbation_test(
                    null, gauge[0], gauge[-1], inputs, k_pert, sizes=sizes, samples=perturbations, **budget
                )
            )
        del null_graph, null  # one null network alive at a time
    inputs, s_in, s_out = _check_problem(model, np.ones(graph.sizes[0]), np.ones(graph.sizes[-1]), inputs)
    signs = lambda k, n: jnp.where(jax.random.bernoulli(k, 0.5, (samples, n)), 1.0, -1.0).astype(inputs.dtype)
    gauges = signs(k_in, s_in.size), signs(k_out, s_out.size)
    random = _scores(model, *gauges, inputs, k_lines, lines, BATCH_SIZE, memory_budget)
    perturbation = jax.tree.map(lambda *a: jnp.stack(a), *tests) if tests else None
    stack = lambda attr: jnp.stack([getattr(m, attr) for m in scores])
    return NullMonotonicity(stack("mean"), random.mean, stack("mean_error"), random.mean_error, perturbation)
