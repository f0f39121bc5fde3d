"""`Task`: the second moments `Σ_xx`, `Σ_yx` (and `tr Σ_yy`) that define the quadratic loss."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import check_array, check_positive
from .._types import Array, Float, Key, Scalar


class Task(eqx.Module):
    """`L(W) = ½ tr Σ_yy − ⟨Σ_yx, W⟩ + ½ tr(W Σ_xx Wᵀ)` for `W` of shape `(d_out, d_in)`.

    `whitened` is true when `Σ_xx = I` (then `L = ½‖Σ_yx − W‖²_F + ½ tr Σ_yy − ½‖Σ_yx‖²_F`).
    """

    sigma_xx: Float[Array, "d_in d_in"]
    sigma_yx: Float[Array, "d_out d_in"]
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
        for name, d in (("d_in", d_in), ("d_out", d_out)):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"{name} must be a positive integer, got {d!r}")
        sigma = np.asarray(check_array(singular_values, "singular_values", ndim=1), float)
        if sigma.size > min(d_in, d_out):
            raise ValueError(
                f"singular_values has {sigma.size} entries but a ({d_out}, {d_in}) map has at "
                f"most {min(d_in, d_out)}"
            )
        if np.any(sigma < 0):
            raise ValueError(f"singular_values must be >= 0, got {sigma.tolist()}")
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
            raise ValueError(
                f"X and Y must have the same number of samples (columns): X has shape "
                f"{X.shape}, Y has shape {Y.shape}"
            )
        n = X.shape[1]
        sxx, syx, tyy = X @ X.T / n, Y @ X.T / n, float(np.sum(Y * Y) / n)
        if whiten:
            evals, evecs = np.linalg.eigh(sxx)
            if evals.min() <= 1e-12 * max(evals.max(), 1e-300):
                raise ValueError(
                    f"whiten=True needs a full-rank Σ_xx, but X X^T/N has smallest eigenvalue "
                    f"{evals.min():.3g} (d_in = {X.shape[0]}, N = {n})"
                )
            syx = syx @ (evecs / np.sqrt(evals)) @ evecs.T
            sxx = np.eye(X.shape[0])
        dtype = dtype or jnp.result_type(float)
        return cls(jnp.asarray(sxx, dtype), jnp.asarray(syx, dtype), jnp.asarray(tyy, dtype), whiten)

    @classmethod
    def teacher(cls, key: Key, d_in: int, d_out: int, rank: int | None = None, scale: float = 1.0) -> Task:
        """A whitened task whose target is a random teacher `W* = scale · G/√d_in` of rank `rank`."""
        check_positive(scale, "scale")
        r = min(d_in, d_out) if rank is None else rank
        if not 1 <= r <= min(d_in, d_out):
            raise ValueError(f"rank must be in 1..{min(d_in, d_out)}, got {rank!r}")
        k1, k2 = jax.random.split(key)
        w = jax.random.normal(k1, (d_out, r)) @ jax.random.normal(k2, (r, d_in))
        w = scale * w / np.sqrt(d_in * r)
        return cls(jnp.eye(d_in, dtype=w.dtype), w, jnp.sum(w * w), True)
