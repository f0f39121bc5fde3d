"""The exact Hessian of the loss in the weights: dense, as products, its spectrum and inertia.

Weights are flattened as `ravel_pytree(list(net.weights))` (row-major `W_1`, then `W_2`, …),
so `P = Σ_i d_i d_{i−1}`. Second derivatives are forward-mode derivatives of the blockwise
gradient (`−vector_field`), which costs `O(h)` matrix products per direction; Lanczos needs
only these Hessian-vector products.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .._checks import InputError, check_array, check_count, check_key
from .._types import Array, ArrayLike, Float, FloatLike, Int, Key
from .network import DeepLinearNetwork, check_network
from .objective import vector_field
from .task import Task


def flat_gradient(net: DeepLinearNetwork, task: Task) -> tuple[Float[Array, " P"], Callable]:
    """`(θ, g)`: the flat weights `θ` and `g(θ) = ∇L(θ)`, flat, in the order of `ravel_pytree`."""
    theta, unravel = ravel_pytree(list(net.weights))

    def grad(x):
        field = vector_field(DeepLinearNetwork(tuple(unravel(x))), task)
        return -ravel_pytree(list(field.weights))[0]

    return theta, grad


@eqx.filter_jit
def _hessian(net: DeepLinearNetwork, task: Task) -> Float[Array, "P P"]:
    ws, h = net.weights, net.depth
    blocks = {}
    for j in range(h):  # column block j: forward mode in W_j only, rows i <= j only

        def grads(wj, j=j):
            field = vector_field(DeepLinearNetwork(ws[:j] + (wj,) + ws[j + 1 :]), task)
            return [-g for g in field.weights[: j + 1]]

        for i, b in enumerate(jax.jacfwd(grads)(ws[j])):
            blocks[i, j] = b.reshape(b.shape[0] * b.shape[1], -1)
    rows = [[blocks[i, j] if i <= j else blocks[j, i].T for j in range(h)] for i in range(h)]
    return jnp.block(rows)


def hessian(net: DeepLinearNetwork, task: Task) -> Float[Array, "P P"]:
    """The dense `P×P` Hessian `∂²L/∂θ²`, `θ = ravel_pytree(list(net.weights))`, by autodiff.

    Block `(i, j)`, `i <= j`, is forward mode in `W_j` alone over the blockwise gradient of the
    layers up to `j` (the other tangents are symbolic zeros, the unused layers are dropped);
    block `(j, i)` is its transpose, so the result is exactly symmetric.
    """
    check_network(net, task)
    return _hessian(net, task)


@eqx.filter_jit
def _hvp(net: DeepLinearNetwork, task: Task, v: Float[Array, " P"]) -> Float[Array, " P"]:
    theta, grad = flat_gradient(net, task)
    return jax.jvp(grad, (theta,), (v,))[1]


def hvp(net: DeepLinearNetwork, task: Task, v: Float[ArrayLike, " P"]) -> Float[Array, " P"]:
    """The Hessian-vector product `H v` (forward mode over the blockwise gradient), `v` flat."""
    check_network(net, task)
    check_array(v, "v", shape=(net.num_parameters,))
    return _hvp(net, task, jnp.asarray(v, net.weights[0].dtype))


def hessian_spectrum(
    net: DeepLinearNetwork, task: Task, *, vectors: bool = False
) -> Float[Array, " P"] | tuple[Float[Array, " P"], Float[Array, "P P"]]:
    """Eigenvalues of the Hessian, ascending (and the eigenvectors as columns if `vectors`)."""
    H = hessian(net, task)
    return jnp.linalg.eigh(H) if vectors else jnp.linalg.eigvalsh(H)


def spectrum_tolerance(eigenvalues: Float[ArrayLike, " P"]) -> float:
    """`P · eps · max|λ|`: eigenvalues this small are numerically zero."""
    lam = np.asarray(eigenvalues)
    return float(lam.size * np.finfo(lam.dtype).eps * np.max(np.abs(lam), initial=0.0))


def inertia(eigenvalues: Float[ArrayLike, " P"], tol: FloatLike | None = None) -> tuple[int, int, int]:
    """`(n_neg, n_zero, n_pos)`: eigenvalues below `−tol`, within `tol`, above `tol`.

    `tol` defaults to `spectrum_tolerance(eigenvalues)`.
    """
    lam = np.asarray(check_array(eigenvalues, "eigenvalues", ndim=1))
    tol = spectrum_tolerance(lam) if tol is None else tol
    return int(np.sum(lam < -tol)), int(np.sum(np.abs(lam) <= tol)), int(np.sum(lam > tol))


class LanczosResult(eqx.Module):
    """Ritz values `θ` (ascending) of the Hessian on a Krylov space, with residual bounds.

    Each `θ_i` is within `residuals[i]` of an eigenvalue of the Hessian.
    """

    ritz_values: Float[Array, " m"]
    residuals: Float[Array, " m"]
    breakdowns: Int[Array, ""]

    @property
    def smallest(self) -> Float[Array, ""]:
        """The smallest Ritz value (an upper bound on the smallest eigenvalue)."""
        return self.ritz_values[0]

    @property
    def largest(self) -> Float[Array, ""]:
        """The largest Ritz value (a lower bound on the largest eigenvalue)."""
        return self.ritz_values[-1]


@eqx.filter_jit
def _lanczos(net: DeepLinearNetwork, task: Task, key: Key, iterations: int) -> LanczosResult:
    theta, grad = flat_gradient(net, task)
    matvec = lambda v: jax.jvp(grad, (theta,), (v,))[1]
    P, m = theta.shape[0], iterations
    Q = jnp.zeros((m + 1, P), theta.dtype)
    v0 = jax.random.normal(key, (P,), theta.dtype)
    Q = Q.at[0].set(v0 / jnp.linalg.norm(v0))

    def project_out(Q, w):
        return w - Q.T @ (Q @ w)

    def fresh(Q, j):  # an invariant subspace was found: go on from a random vector, with β = 0
        v = jax.random.normal(jax.random.fold_in(key, j), (P,), theta.dtype)
        v = project_out(Q, project_out(Q, v))
        return v / jnp.linalg.norm(v)

    def step(j, carry):
        Q, alpha, beta, breaks = carry
        w = matvec(Q[j])
        a = jnp.vdot(Q[j], w)
        w = w - a * Q[j] - beta[j - 1] * Q[j - 1]  # three-term recurrence (Q[−1] = Q[m] = 0 here)
        before = jnp.linalg.norm(w)
        w = project_out(Q, w)  # full reorthogonalization; a second pass on cancellation (Kahan-Parlett)
        w = jax.lax.cond(jnp.linalg.norm(w) < 0.7 * before, lambda w: project_out(Q, w), lambda w: w, w)
        b = jnp.linalg.norm(w)
        lost = b <= P * jnp.finfo(theta.dtype).eps * (jnp.abs(a) + jnp.max(jnp.abs(alpha)) + beta[j - 1])
        w = jax.lax.cond(lost, lambda w: fresh(Q, j), lambda w: w / b, w)
        return (
            Q.at[j + 1].set(w),
            alpha.at[j].set(a),
            beta.at[j].set(jnp.where(lost, 0.0, b)),
            breaks + lost.astype(jnp.int32),
        )

    zeros = jnp.zeros((m,), theta.dtype)
    Q, alpha, beta, breaks = jax.lax.fori_loop(0, m, step, (Q, zeros, zeros, jnp.zeros((), jnp.int32)))
    T = jnp.diag(alpha) + jnp.diag(beta[:-1], 1) + jnp.diag(beta[:-1], -1)
    ritz, S = jnp.linalg.eigh(T)
    return LanczosResult(ritz, jnp.abs(beta[-1] * S[-1]), breaks)


def lanczos(net: DeepLinearNetwork, task: Task, key: Key, iterations: int = 64) -> LanczosResult:
    """Lanczos on the Hessian, matrix-free (HVPs only), with full reorthogonalization.

    `iterations` HVPs give Ritz values whose extremes converge first to the Hessian's extreme
    eigenvalues; memory is `(iterations + 1) × P` floats. With `iterations = P` the Ritz values
    are the whole spectrum.
    """
    check_network(net, task)
    P = net.num_parameters
    check_count(iterations, "iterations")
    if iterations > P:
        raise InputError(f"iterations must be at most the number of weights P = {P}, got {iterations}")
    return _lanczos(net, task, check_key(key), int(iterations))
