"""The quadratic loss and its negative gradient, on the weights and on the adjacency `A`."""

from __future__ import annotations

import jax.numpy as jnp

from .._types import Array, Float, Scalar
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

    Prefix and suffix products make this `O(h)` matrix products.
    """
    ws = net.weights
    h = len(ws)
    prefix = [ws[0]]  # prefix[i] = W_{i+1} ⋯ W_1
    for w in ws[1:]:
        prefix.append(w @ prefix[-1])
    suffix = [None] * h  # suffix[i] = W_h ⋯ W_{i+2}, the product after layer i+1
    acc = None
    for i in range(h - 1, -1, -1):
        suffix[i] = acc
        acc = ws[i] if acc is None else acc @ ws[i]
    R = residual(prefix[-1], task)
    grads = []
    for i in range(h):
        g = R if suffix[i] is None else suffix[i].T @ R
        grads.append(g if i == 0 else g @ prefix[i - 1].T)
    return DeepLinearNetwork(tuple(grads))


def _power(A, k: int):
    out = A
    for _ in range(k - 1):
        out = out @ A
    return out


def _embed(block, widths, row_layer: int, col_layer: int, dtype):
    off = layer_offsets(widths)
    M = jnp.zeros((off[-1], off[-1]), dtype)
    return M.at[off[row_layer] : off[row_layer + 1], off[col_layer] : off[col_layer + 1]].set(block)


def loss_adjacency(A: Float[Array, "n n"], widths, task: Task) -> Scalar:
    """`L(A) = ½ tr Σ_yy − ⟨E, A^h⟩ + ½ tr(A^h S A^hᵀ)`, `E = blk_{h,0}(Σ_yx)`, `S = blk_{0,0}(Σ_xx)`.

    For a whitened task this is `½‖E − A^h‖²_F + const`.
    """
    h = len(widths) - 1
    E = _embed(task.sigma_yx, widths, h, 0, A.dtype)
    S = _embed(task.sigma_xx, widths, 0, 0, A.dtype)
    Ah = _power(A, h)
    return 0.5 * task.trace_yy - jnp.vdot(E, Ah) + 0.5 * jnp.vdot(Ah @ S, Ah)


def vector_field_adjacency(A: Float[Array, "n n"], widths, task: Task) -> Float[Array, "n n"]:
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


def _field(t, weights, task: Task):
    return vector_field(DeepLinearNetwork(weights), task).weights


def gradient_norm(weights, task: Task) -> Scalar:
    """`‖∇L‖` over all weights (the vector field's norm)."""
    return jnp.sqrt(sum(jnp.vdot(g, g) for g in _field(None, weights, task)))


def solve(
    net: DeepLinearNetwork,
    task: Task,
    t1,
    *,
    solver=None,
    rtol=1e-8,
    atol=1e-8,
    saveat=None,
    gtol=None,
    dt0=None,
    max_steps: int = 100_000,
    throw: bool = True,
    adjoint=None,
):
    """Integrate `dW_i/dt = −∂L/∂W_i` from `net` over `[0, t1]` with Diffrax.

    The state is the tuple of weights. `gtol` (optional) stops at the first time with
    `‖∇L‖ < gtol` through a Diffrax event. Returns the raw `diffrax.Solution`. Pass `rtol`,
    `atol`, `t1`, `gtol` as arrays to avoid retracing when they change.
    """
    import diffrax

    event = None
    if gtol is not None:
        event = diffrax.Event(lambda t, y, args, **kw: gradient_norm(y, args) < gtol)
    return diffrax.diffeqsolve(
        diffrax.ODETerm(_field),
        diffrax.Tsit5() if solver is None else solver,
        t0=0.0,
        t1=t1,
        dt0=dt0,
        y0=net.weights,
        args=task,
        saveat=diffrax.SaveAt(t1=True) if saveat is None else saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        event=event,
        max_steps=max_steps,
        throw=throw,
    )
