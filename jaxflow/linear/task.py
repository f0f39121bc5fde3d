"""`Task`: the second moments `Σ_xx`, `Σ_yx` (and `tr Σ_yy`) that define the quadratic loss, and its modes.

The modes are read in whitened coordinates: with `Σ_xx^{½}` the square root of `Σ_xx` and
`Σ_xx^{+½}` the pseudo-inverse root, `M = Σ_yx Σ_xx^{+½} = U diag(μ) Vᵀ` (for a whitened task
`M = Σ_yx` and `μ = σ`); a map `W` has strength `s_k = u_kᵀ W Σ_xx^{½} v_k` along mode `k`, and
has learnt mode `k` when `s_k > μ_k / 2`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import InputError, check_array, check_count, check_positive
from .._types import Array, ArrayLike, Bool, Float, FloatLike, Key, Scalar


class Task(eqx.Module):
    """`L(W) = ½ tr Σ_yy − ⟨Σ_yx, W⟩ + ½ tr(W Σ_xx Wᵀ)` for `W` of shape `(d_h, d_0)`.

    `whitened` is true when `Σ_xx = I` (then `L = ½‖Σ_yx − W‖²_F + ½ tr Σ_yy − ½‖Σ_yx‖²_F`).
    """

    sigma_xx: Float[Array, "d_0 d_0"]
    sigma_yx: Float[Array, "d_h d_0"]
    trace_yy: Scalar
    whitened: bool = eqx.field(static=True, default=False)

    @property
    def d_in(self) -> int:
        return self.sigma_yx.shape[1]

    @property
    def d_out(self) -> int:
        return self.sigma_yx.shape[0]

    def svd(self):
        """`Σ_yx = U diag(σ) Vᵀ`, full `U`, `Vᵀ`, `σ` descending (length `min(d_out, d_in)`)."""
        return jnp.linalg.svd(self.sigma_yx, full_matrices=True)

    @property
    def singular_values(self) -> Float[Array, " r"]:
        """Singular values `σ_1 >= … >= σ_r` of `Σ_yx`."""
        return jnp.linalg.svd(self.sigma_yx, compute_uv=False)

    @classmethod
    def from_spectrum(cls, singular_values, d_in: int, d_out: int, dtype=None) -> Task:
        """`Σ_yx = diag(σ)` padded to `(d_out, d_in)`, `Σ_xx = I`: `L = ½‖Σ_yx − W‖²_F`."""
        check_count(d_in, "d_in")
        check_count(d_out, "d_out")
        sigma = np.asarray(check_array(singular_values, "singular_values", ndim=1), float)
        if sigma.size > min(d_in, d_out):
            raise InputError(
                f"singular_values has {sigma.size} entries but a ({d_out}, {d_in}) map has at "
                f"most {min(d_in, d_out)}"
            )
        if np.any(sigma < 0):
            raise InputError(f"singular_values must be >= 0, got {sigma.tolist()}")
        dtype = dtype or jnp.result_type(float)
        syx = np.zeros((d_out, d_in))
        syx[np.arange(sigma.size), np.arange(sigma.size)] = sigma
        return cls(
            sigma_xx=jnp.eye(d_in, dtype=dtype),
            sigma_yx=jnp.asarray(syx, dtype),
            trace_yy=jnp.asarray(np.sum(sigma**2), dtype),
            whitened=True,
        )

    @classmethod
    def from_data(cls, X, Y, *, whiten: bool = False, dtype=None) -> Task:
        """Moments of data `X (d_0, N)`, `Y (d_h, N)`: `L = ‖Y − W X‖²_F / (2N)`.

        With `whiten=True` the inputs are first mapped to `Σ_xx^{−1/2} X` (needs `Σ_xx` full
        rank), so the task is whitened and `Σ_yx` becomes `Σ_yx Σ_xx^{−1/2}`.
        """
        check_array(X, "X", ndim=2)
        check_array(Y, "Y", ndim=2)
        X, Y = np.asarray(X, float), np.asarray(Y, float)
        if X.shape[1] != Y.shape[1]:
            raise InputError(
                f"X and Y must have the same number of samples (columns): X has shape "
                f"{X.shape}, Y has shape {Y.shape}"
            )
        n = X.shape[1]
        sxx, syx, tyy = X @ X.T / n, Y @ X.T / n, float(np.sum(Y * Y) / n)
        if whiten:
            evals, evecs = np.linalg.eigh(sxx)
            if evals.min() <= 1e-12 * max(evals.max(), 1e-300):
                raise InputError(
                    f"whiten=True needs a full-rank Σ_xx, but X X^T/N has smallest eigenvalue "
                    f"{evals.min():.3g} (d_in = {X.shape[0]}, N = {n})"
                )
            syx = syx @ (evecs / np.sqrt(evals)) @ evecs.T
            sxx = np.eye(X.shape[0])
        dtype = dtype or jnp.result_type(float)
        return cls(jnp.asarray(sxx, dtype), jnp.asarray(syx, dtype), jnp.asarray(tyy, dtype), whiten)

    @classmethod
    def teacher(
        cls, key: Key, d_in: int, d_out: int, rank: int | None = None, scale: FloatLike = 1.0
    ) -> Task:
        """A whitened task whose target is a random teacher `W* = scale · G/√d_in` of rank `rank`."""
        check_positive(scale, "scale")
        r = min(d_in, d_out) if rank is None else rank
        if not 1 <= r <= min(d_in, d_out):
            raise InputError(f"rank must be in 1..{min(d_in, d_out)}, got {rank!r}")
        k1, k2 = jax.random.split(key)
        w = jax.random.normal(k1, (d_out, r)) @ jax.random.normal(k2, (r, d_in))
        w = scale * w / np.sqrt(d_in * r)
        return cls(jnp.eye(d_in, dtype=w.dtype), w, jnp.sum(w * w), True)


class Modes(eqx.Module):
    """The task's modes `M = Σ_yx Σ_xx^{+½} = U diag(μ) Vᵀ` (thin SVD, `μ` descending).

    `root = Σ_xx^{½}` and `inv_root = Σ_xx^{+½}`; both are the identity for a whitened task.
    """

    U: Float[Array, "d_h r"]
    mu: Float[Array, " r"]
    V: Float[Array, "d_0 r"]
    root: Float[Array, "d_0 d_0"]
    inv_root: Float[Array, "d_0 d_0"]


@eqx.filter_jit
def task_modes(task: Task) -> Modes:
    """The modes of `task` (pure `jnp`; eigenvalues of `Σ_xx` below `d_0·eps·λ_max` count as 0)."""
    sxx = task.sigma_xx
    if task.whitened:
        root = inv_root = jnp.eye(task.d_in, dtype=sxx.dtype)
    else:
        lam, Q = jnp.linalg.eigh(sxx)
        keep = lam > task.d_in * jnp.finfo(sxx.dtype).eps * jnp.max(jnp.abs(lam))
        safe = jnp.where(keep, lam, 1.0)
        root = (Q * jnp.where(keep, jnp.sqrt(safe), 0.0)) @ Q.T
        inv_root = (Q * jnp.where(keep, 1.0 / jnp.sqrt(safe), 0.0)) @ Q.T
    U, mu, Vt = jnp.linalg.svd(task.sigma_yx @ inv_root, full_matrices=False)
    return Modes(U, mu, Vt.T, root, inv_root)


@eqx.filter_jit
def mode_strengths(W: Float[Array, "d_h d_0"], task: Task) -> Float[Array, " r"]:
    """`s_k = u_kᵀ W Σ_xx^{½} v_k`: the strength of `W` along each mode (`= u_kᵀ W v_k` if whitened).

    Pure `jnp`; `vmap` over `W` computes the task's SVD once. Within a repeated singular value
    the strengths depend on the basis the SVD chose.
    """
    m = task_modes(task)
    return jnp.einsum("ik,ij,jk->k", m.U, W @ m.root, m.V)


def modes_learnt(
    strengths: Float[ArrayLike, "*batch r"], mu: Float[ArrayLike, " r"]
) -> Bool[ArrayLike, "*batch r"]:
    """`s_k > μ_k / 2` and `μ_k > 0`: which modes a map of strengths `s` (`mode_strengths`) has learnt.

    A zero mode is never learnt (learning it changes nothing). Elementwise, so NumPy arrays give a
    NumPy result and `jnp` arrays a traceable one.
    """
    return (strengths > mu / 2) & (mu > 0)


def mode_spectrum(task: Task) -> np.ndarray:
    """`μ` (descending) with repeated values made exactly equal and zero values exactly 0.

    Singular values within `tol = max(d_0, d_h)·eps·μ_1` of their neighbour are one repeated
    value (replaced by their mean); those below `tol` are zero.
    """
    mu = np.asarray(task_modes(task).mu, float)
    tol = max(task.d_in, task.d_out) * np.finfo(float).eps * (mu[0] if mu.size else 0.0)
    mu = np.where(mu > tol, mu, 0.0)
    groups = np.concatenate([[0], np.cumsum(np.abs(np.diff(mu)) > tol)])
    means = np.array([mu[groups == g].mean() for g in range(groups[-1] + 1)])
    return means[groups]


BOUNDED_RTOL = (
    1e3  # `check_bounded` allows a part off the range of `Σ_xx` up to this many `max(d)·eps·‖Σ_yx‖`
)


def check_bounded(task: Task) -> None:
    """Raise unless the loss is bounded below (`Σ_yx` on the range of `Σ_xx`), i.e. has critical points."""
    if task.whitened:
        return
    m = task_modes(task)
    syx = np.asarray(task.sigma_yx)
    off = np.linalg.norm(syx - syx @ np.asarray(m.inv_root) @ np.asarray(m.root))
    scale = np.linalg.norm(syx)
    if off > BOUNDED_RTOL * np.finfo(float).eps * max(task.d_in, task.d_out) * scale:
        raise InputError(
            f"task.sigma_yx has a part of norm {off:.3g} outside the range of the singular "
            "task.sigma_xx: the loss is unbounded below and has no critical points"
        )
