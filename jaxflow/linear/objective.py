"""The quadratic loss and its negative gradient `−∇L`, on the weights and on the adjacency `A`.

`L(W) = ½ tr Σ_yy − ⟨Σ_yx, W⟩ + ½ tr(W Σ_xx Wᵀ)` with `W = W_h ⋯ W_1`; on `A`,
`L(A) = ½ tr Σ_yy − ⟨E, A^h⟩ + ½ tr(A^h S A^hᵀ)` with `E = blk_{h,0}(Σ_yx)`, `S = blk_{0,0}(Σ_xx)`.
The flow `dW_i/dt = −∂L/∂W_i` keeps the blocks `C_i` of `net.conserved()`; `conservation_drift`
measures how far a run moved them.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._types import Array, Float, Scalar, Widths
from .network import DeepLinearNetwork, layer_offsets
from .task import Task


def end_to_end_loss(W: Float[Array, "d_h d_0"], task: Task) -> Scalar:
    """`L(W) = ½ tr Σ_yy − ⟨Σ_yx, W⟩ + ½ tr(W Σ_xx Wᵀ)`."""
    return 0.5 * task.trace_yy - jnp.vdot(task.sigma_yx, W) + 0.5 * jnp.vdot(W @ task.sigma_xx, W)


def loss(net: DeepLinearNetwork, task: Task) -> Scalar:
    """The loss of the network's end-to-end map `W = W_h ⋯ W_1`."""
    return end_to_end_loss(net.end_to_end(), task)


def residual(W: Float[Array, "d_h d_0"], task: Task) -> Float[Array, "d_h d_0"]:
    """`−∂L/∂W = Σ_yx − W Σ_xx`."""
    return task.sigma_yx - W @ task.sigma_xx


def vector_field(net: DeepLinearNetwork, task: Task) -> DeepLinearNetwork:
    """`−∇L` blockwise: `−∂L/∂W_i = (W_h⋯W_{i+1})ᵀ (Σ_yx − W Σ_xx) (W_{i−1}⋯W_1)ᵀ`.

    Forward prefix products `P_i = W_i ⋯ W_1`, then the residual is carried back through
    `B_h = R`, `B_{i−1} = W_iᵀ B_i`, and `−∂L/∂W_i = B_i P_{i−1}ᵀ`: `3(h−1)` matrix products.
    """
    ws = net.weights
    prefix = [ws[0]]  # prefix[i] = W_{i+1} ⋯ W_1
    for w in ws[1:-1]:
        prefix.append(w @ prefix[-1])
    back = residual(ws[-1] @ prefix[-1] if len(ws) > 1 else ws[0], task)
    grads = []
    for i in range(len(ws) - 1, 0, -1):
        grads.append(back @ prefix[i - 1].T)
        back = ws[i].T @ back
    grads.append(back)
    return DeepLinearNetwork(tuple(reversed(grads)))


def weights_field(weights: tuple, task: Task) -> tuple:
    """`vector_field` on a bare tuple of weights `(W_1, …, W_h)`: the tuple of `−∂L/∂W_i`."""
    return vector_field(DeepLinearNetwork(weights), task).weights


def gradient_norm(weights: tuple, task: Task) -> Scalar:
    """`‖∇L‖` over all weights `(W_1, …, W_h)` (the vector field's norm)."""
    return jnp.sqrt(sum(jnp.vdot(g, g) for g in weights_field(weights, task)))


def _power(A: Float[Array, "n n"], k: int) -> Float[Array, "n n"]:
    out = A
    for _ in range(k - 1):
        out = out @ A
    return out


def _embed(block, widths: Widths, row_layer: int, col_layer: int, dtype) -> Float[Array, "n n"]:
    off = layer_offsets(widths)
    M = jnp.zeros((off[-1], off[-1]), dtype)
    return M.at[off[row_layer] : off[row_layer + 1], off[col_layer] : off[col_layer + 1]].set(block)


def loss_adjacency(A: Float[Array, "n n"], widths: Widths, task: Task) -> Scalar:
    """`L(A) = ½ tr Σ_yy − ⟨E, A^h⟩ + ½ tr(A^h S A^hᵀ)`, `E = blk_{h,0}(Σ_yx)`, `S = blk_{0,0}(Σ_xx)`.

    For a whitened task this is `½‖E − A^h‖²_F + const`.
    """
    h = len(widths) - 1
    E = _embed(task.sigma_yx, widths, h, 0, A.dtype)
    S = _embed(task.sigma_xx, widths, 0, 0, A.dtype)
    Ah = _power(A, h)
    return 0.5 * task.trace_yy - jnp.vdot(E, Ah) + 0.5 * jnp.vdot(Ah @ S, Ah)


def vector_field_adjacency(A: Float[Array, "n n"], widths: Widths, task: Task) -> Float[Array, "n n"]:
    """`dA/dt = Σ_{j=1..h} (A^{h−j})ᵀ (E − A^h S) (A^{j−1})ᵀ` (block sub-diagonal)."""
    h = len(widths) - 1
    n = A.shape[0]
    E = _embed(task.sigma_yx, widths, h, 0, A.dtype)
    S = _embed(task.sigma_xx, widths, 0, 0, A.dtype)
    powers = [jnp.eye(n, dtype=A.dtype)]
    for _ in range(h):
        powers.append(powers[-1] @ A)
    M = E - powers[h] @ S
    return sum(powers[h - j].T @ M @ powers[j - 1].T for j in range(1, h + 1))


def conservation_drift(net: DeepLinearNetwork, initial: DeepLinearNetwork) -> Scalar:
    """`max_i ‖C_i − C_i⁰‖_F / (‖W_i‖²_F + ‖W_{i+1}‖²_F)`: how far the conserved blocks of `net`
    moved from those of `initial`, relative to the size of their two terms (0 for depth 1)."""
    ws = net.weights
    drifts = []
    for i, (c, c0) in enumerate(zip(net.conserved(), initial.conserved())):
        size = jnp.vdot(ws[i], ws[i]) + jnp.vdot(ws[i + 1], ws[i + 1])
        drifts.append(jnp.linalg.norm(c - c0) / jnp.where(size > 0, size, 1))
    return jnp.max(jnp.stack(drifts)) if drifts else jnp.zeros((), ws[0].dtype)
