"""Near-monotonicity of a network's function along the partial order of a gauge.

A gauge `s ∈ {±1}^n` gives the input and output orthants `K_in = {v : s_in ⊙ v >= 0}` and
`K_out = {v : s_out ⊙ v >= 0}`. `f` is monotone w.r.t. them when `x' − x ∈ K_in` implies
`f(x') − f(x) ∈ K_out`; a balanced graph (no frustrated edge under `s`) with monotone
non-decreasing activations guarantees it, since then `S_out J(x) S_in >= 0` entrywise for
every Jacobian `J(x)` (`S = diag(s)`). The scores below measure how far from this a network is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_array, check_positive
from .._types import Array, Float, Key, Scalar


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
    `Σ_{ki} max(0, (S_out J(x) S_in)_{ki}) / Σ_{ki} |J(x)_{ki}|` (1: monotone at `x`,
    about ½: random signs). It is NaN where `J(x) = 0` (no mass to judge), and `mean`
    averages over the other inputs.
    """

    per_input: Float[Array, " N"]

    @property
    def mean(self) -> Scalar:
        """Average of `per_input` over inputs with a non-zero Jacobian."""
        return jnp.nanmean(self.per_input)


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
        raise ValueError(f"{name} must have one sign per {what} ({size}), got {flat.size} entries")
    if not np.all(np.abs(flat) == 1):
        raise ValueError(f"{name} must hold only +1 and -1, got values {np.unique(flat).tolist()}")
    return jnp.asarray(flat)


def _check_problem(fn, s_in, s_out, inputs):
    """Validate and return flat `s_in`, `s_out` (in the inputs' dtype) and the output shape."""
    if not callable(fn):
        raise ValueError(f"fn must be callable (one input -> one output), got {type(fn).__name__}")
    check_array(inputs, "inputs")
    inputs = jnp.asarray(inputs)
    if inputs.ndim < 2 or inputs.shape[0] == 0:
        raise ValueError(f"inputs must be a non-empty batch of shape (N, *input_shape), got {inputs.shape}")
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise ValueError(f"inputs must be floating point (fn is differentiated), got dtype {inputs.dtype}")
    in_shape = inputs.shape[1:]
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct(in_shape, inputs.dtype))
    except Exception as e:  # noqa: BLE001 - any failure means fn does not take one input
        raise ValueError(f"fn cannot be applied to one input of shape {in_shape}: {e}") from None
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"fn must return one array, got {type(out).__name__}")
    s_in = _check_signs(s_in, "s_in", int(np.prod(in_shape)), f"input coordinate of shape {in_shape}")
    s_out = _check_signs(s_out, "s_out", int(np.prod(out.shape)), f"output of shape {out.shape}")
    return inputs, s_in.astype(inputs.dtype), s_out.astype(inputs.dtype)


def _batched(f, xs, batch_size):
    n = jax.tree.leaves(xs)[0].shape[0]
    if batch_size is None or n <= batch_size:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=batch_size)


@eqx.filter_jit
def _jacobian_scores(fn, s_in, s_out, inputs, batch_size):
    def one(x):
        J = jax.jacfwd(fn)(x).reshape(s_out.size, s_in.size)
        agree = jnp.sum(jnp.maximum(0.0, s_out[:, None] * J * s_in[None, :]))
        mass = jnp.sum(jnp.abs(J))
        return jnp.where(mass > 0, agree / jnp.where(mass > 0, mass, 1.0), jnp.nan)

    return _batched(one, inputs, batch_size)


def monotonicity_score(
    fn: Callable[[Array], Array],
    s_in: Float[Array, "*shape"],
    s_out: Float[Array, "*shape"],
    inputs: Float[Array, "N ..."],
    *,
    batch_size: int | None = 256,
) -> MonotonicityScore:
    """Jacobian score of `fn` (one input → one output) w.r.t. the orthants of `s_in`, `s_out`.

    `J(x)` is computed by forward-mode autodiff (`jax.jacfwd`), mapped over `inputs` in chunks
    of `batch_size` (None: all at once). `s_in` and `s_out` hold one sign per input and output
    coordinate (any shape of that size, flattened in C order).
    """
    inputs, s_in, s_out = _check_problem(fn, s_in, s_out, inputs)
    return MonotonicityScore(_jacobian_scores(fn, s_in, s_out, inputs, batch_size))


@eqx.filter_jit
def _perturbation_fractions(fn, s_in, s_out, inputs, key, sizes, samples, batch_size):
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
            change = jax.vmap(jax.vmap(lambda d: fn(x + d).reshape(-1) - fx))(deltas)
            agree = s_out * change >= 0
            return jnp.mean(agree, axis=(1, 2), dtype=x.dtype), jnp.mean(jnp.all(agree, axis=2), 1, x.dtype)

        return (*fractions(own), *fractions(ref))

    out = _batched(one, (inputs, keys), batch_size)
    return tuple(jnp.mean(a, axis=0) for a in out)


def orthant_perturbation_test(
    fn: Callable[[Array], Array],
    s_in: Float[Array, "*shape"],
    s_out: Float[Array, "*shape"],
    inputs: Float[Array, "N ..."],
    key: Key,
    *,
    sizes: Sequence[float] = (1e-2, 1e-1, 1.0),
    samples: int = 16,
    batch_size: int | None = 256,
) -> PerturbationTest:
    """For each size `ε` and input `x`, `samples` perturbations `δ ∈ K_in` with `‖δ‖ = ε`
    (and as many in random orthants): how often `f(x + δ) − f(x)` lies in `K_out`.

    See `PerturbationTest`. A change of exactly 0 counts as agreeing with the order.
    """
    inputs, s_in, s_out = _check_problem(fn, s_in, s_out, inputs)
    sizes = np.atleast_1d(np.asarray(sizes, float))
    if sizes.ndim != 1 or sizes.size == 0:
        raise ValueError(f"sizes must be a non-empty list of perturbation norms, got {sizes.tolist()}")
    for i, e in enumerate(sizes):
        check_positive(e, f"sizes[{i}]")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    sizes = jnp.asarray(sizes, inputs.dtype)
    fractions = _perturbation_fractions(fn, s_in, s_out, inputs, key, sizes, samples, batch_size)
    return PerturbationTest(sizes, *fractions)
