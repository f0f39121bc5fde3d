"""`DeepLinearNetwork`: the weights `W_1..W_h` as the block sub-diagonal of `A`."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    InputError,
    check_array,
    check_choice,
    check_key,
    check_positive,
    check_task_widths,
    check_widths,
)
from .._types import Array, ArrayLike, Float, FloatLike, Key, Widths

SCHEMES = ("gaussian", "orthogonal", "balanced", "aligned", "delta_balanced")


def layer_offsets(widths: Widths) -> tuple[int, ...]:
    """Start index of each layer's nodes in `A`: `(0, d_0, d_0+d_1, …, n)`."""
    return tuple(int(x) for x in np.concatenate([[0], np.cumsum(widths)]))


def check_network(net, task=None) -> None:
    """Raise unless `net` is a `DeepLinearNetwork` (and, given `task`, maps `d_0 → d_h` as it does)."""
    if not isinstance(net, DeepLinearNetwork):
        raise InputError(f"net must be a DeepLinearNetwork, got {type(net).__name__}")
    if task is not None:
        check_task_widths(task, net.widths, "net.widths")


class DeepLinearNetwork(eqx.Module):
    """A deep linear network `x ↦ W_h ⋯ W_1 x`, `W_i` of shape `(d_i, d_{i−1})`.

    Its adjacency matrix `A` (n×n, n = Σ d_i) holds `W_i` in block `(i, i−1)`.
    """

    weights: tuple[Float[Array, "_d_i _d_im1"], ...]  # W_i: (d_i, d_{i−1}), unchecked (per layer)

    def __check_init__(self):
        for i in range(1, len(self.weights)):
            if self.weights[i].shape[1] != self.weights[i - 1].shape[0]:
                raise InputError(
                    f"weights[{i}] has shape {self.weights[i].shape} but must take "
                    f"{self.weights[i - 1].shape[0]} inputs (weights[{i - 1}] has shape "
                    f"{self.weights[i - 1].shape})"
                )

    @property
    def widths(self) -> tuple[int, ...]:
        """Layer widths `(d_0, …, d_h)`."""
        return (self.weights[0].shape[-1],) + tuple(w.shape[-2] for w in self.weights)

    @property
    def depth(self) -> int:
        """Number of weight layers `h`."""
        return len(self.weights)

    @property
    def num_parameters(self) -> int:
        """`P = Σ_i d_i d_{i−1}`."""
        return sum(int(np.prod(w.shape[-2:])) for w in self.weights)

    def end_to_end(self) -> Float[Array, "d_h d_0"]:
        """`W = W_h ⋯ W_1`."""
        out = self.weights[0]
        for w in self.weights[1:]:
            out = w @ out
        return out

    def adjacency(self) -> Float[Array, "n n"]:
        """Dense `A` with `W_i` in block `(i, i−1)`."""
        off = layer_offsets(self.widths)
        n = off[-1]
        A = jnp.zeros((n, n), self.weights[0].dtype)
        for i, w in enumerate(self.weights, start=1):
            A = A.at[off[i] : off[i + 1], off[i - 1] : off[i]].set(w)
        return A

    def conserved(self) -> tuple[Float[Array, "_d_i _d_i"], ...]:
        """`C_i = W_{i+1}ᵀ W_{i+1} − W_i W_iᵀ`, `i = 1..h−1` (constant along the flow)."""
        return tuple(
            self.weights[i].T @ self.weights[i] - self.weights[i - 1] @ self.weights[i - 1].T
            for i in range(1, self.depth)
        )

    @classmethod
    def from_adjacency(cls, A: Float[ArrayLike, "n n"], widths: Widths) -> DeepLinearNetwork:
        """Read `W_i` from block `(i, i−1)` of `A`; entries off that pattern must be zero."""
        widths = check_widths(widths)
        n = sum(widths)
        check_array(A, "A", shape=(n, n))
        off = layer_offsets(widths)
        mask = np.zeros((n, n), bool)
        for i in range(1, len(widths)):
            mask[off[i] : off[i + 1], off[i - 1] : off[i]] = True
        stray = np.abs(np.where(mask, 0.0, np.asarray(A)))
        if stray.max(initial=0.0) > 0:
            p, q = np.unravel_index(np.argmax(stray), stray.shape)
            raise InputError(
                f"A has non-zero entries off the block sub-diagonal of widths {widths}: "
                f"e.g. A[{p}, {q}] = {np.asarray(A)[p, q]!r} (edge {q} -> {p} skips a layer "
                "or stays inside one)"
            )
        A = jnp.asarray(A)
        return cls(tuple(A[off[i] : off[i + 1], off[i - 1] : off[i]] for i in range(1, len(widths))))

    @classmethod
    def init(
        cls,
        widths: Widths,
        key: Key,
        scheme: str = "gaussian",
        scale: FloatLike = 1e-2,
        *,
        task=None,
        strengths=None,
        delta: FloatLike | None = None,
        dtype=None,
    ) -> DeepLinearNetwork:
        """Initialize weights by `scheme`:

        - `"gaussian"`: i.i.d. `N(0, scale²/d_{i−1})`.
        - `"orthogonal"`: `scale ·` a random (semi-)orthogonal matrix per layer.
        - `"balanced"`: `W_i = scale · U_i D U_{i−1}ᵀ`, `U_i` random orthonormal `d_i × r`,
          `r = min d`, `D` random positive: exactly 0-balanced (`C_i = 0`).
        - `"aligned"`: 0-balanced and aligned with `task`'s singular vectors, end-to-end
          strengths `strengths` (default `scale` per mode): `W_i = R_i diag(s^{1/h}) R_{i−1}ᵀ`
          with `R_0 = V`, `R_h = U` and hidden `R_i` coordinate embeddings.
        - `"delta_balanced"`: `C_i = δ I` for all hidden layers; `δ > 0` needs
          `d_1 <= … <= d_h`, `δ < 0` needs `d_0 >= … >= d_{h−1}`.
        """
        widths = check_widths(widths)
        key = check_key(key)
        check_choice(scheme, "scheme", SCHEMES)
        scale = check_positive(scale, "scale")
        dtype = dtype or jnp.result_type(float)
        h = len(widths) - 1
        keys = jax.random.split(key, h + 2)
        if scheme == "gaussian":
            ws = [
                float(scale / np.sqrt(widths[i]))
                * jax.random.normal(keys[i], (widths[i + 1], widths[i]), dtype)
                for i in range(h)
            ]
        elif scheme == "orthogonal":
            ortho = jax.nn.initializers.orthogonal(scale)
            ws = [ortho(keys[i], (widths[i + 1], widths[i]), dtype) for i in range(h)]
        elif scheme == "balanced":
            r = min(widths)
            frames = [_orthonormal_columns(keys[i], widths[i], r, dtype) for i in range(h + 1)]
            d = scale * jax.random.uniform(keys[h + 1], (r,), dtype, 0.5, 1.5)
            ws = [frames[i + 1] @ (d[:, None] * frames[i].T) for i in range(h)]
        elif scheme == "aligned":
            ws = _aligned(widths, task, scale if strengths is None else strengths, dtype)
        else:
            ws = _delta_balanced(widths, keys, scale, delta, dtype)
        return cls(tuple(ws))


def _orthonormal_columns(key: Key, d: int, r: int, dtype) -> Float[Array, "d r"]:
    q, _ = jnp.linalg.qr(jax.random.normal(key, (d, d), dtype))
    return q[:, :r]


def _aligned(widths, task, strengths, dtype):
    if task is None:
        raise InputError('scheme="aligned" needs task= (its singular vectors give the alignment)')
    if (task.d_in, task.d_out) != (widths[0], widths[-1]):
        raise InputError(
            f"task maps {task.d_in} -> {task.d_out} but widths {widths} map {widths[0]} -> {widths[-1]}"
        )
    h = len(widths) - 1
    r = min(widths)
    s = (
        np.broadcast_to(np.asarray(strengths, float), (r,))
        if np.ndim(strengths) == 0
        else np.asarray(strengths, float)
    )
    if s.shape != (r,) or np.any(s < 0) or not np.all(np.isfinite(s)):
        raise InputError(
            f"strengths must be a non-negative scalar or a vector of length min(widths) = {r}, "
            f"got {strengths!r}"
        )
    U, _, Vt = task.svd()
    frames = [Vt.T[:, :r]] + [jnp.eye(d, r, dtype=dtype) for d in widths[1:-1]] + [U[:, :r]]
    root = jnp.asarray(s, dtype) ** (1.0 / h)
    return [frames[i + 1] @ (root[:, None] * frames[i].T) for i in range(h)]


def _delta_balanced(widths, keys, scale, delta, dtype):
    if delta is None:
        raise InputError('scheme="delta_balanced" needs delta= (the value of C_i = delta * I)')
    delta = float(delta)
    h = len(widths) - 1
    if delta > 0 and any(widths[i + 1] < widths[i] for i in range(1, h)):
        raise InputError(
            f"delta_balanced with delta > 0 needs d_1 <= ... <= d_h (C_i = W_(i+1)^T W_(i+1) - "
            f"W_i W_i^T = delta*I must be positive definite), got widths {widths}"
        )
    if delta < 0 and any(widths[i - 1] < widths[i] for i in range(1, h)):
        raise InputError(f"delta_balanced with delta < 0 needs d_0 >= ... >= d_(h-1), got widths {widths}")
    if delta < 0:  # mirror: build the transposed network with -delta, then transpose back
        ws = _delta_balanced(widths[::-1], keys, scale, -delta, dtype)
        return [w.T for w in ws[::-1]]
    w = float(scale / np.sqrt(widths[0])) * jax.random.normal(keys[0], (widths[1], widths[0]), dtype)
    ws = [w]
    for i in range(1, h):
        m = ws[-1] @ ws[-1].T + delta * jnp.eye(widths[i], dtype=dtype)
        evals, evecs = jnp.linalg.eigh(m)
        root = evecs @ (jnp.sqrt(evals)[:, None] * evecs.T)
        q = _orthonormal_columns(keys[i], widths[i + 1], widths[i], dtype)
        ws.append(q @ root)
    return ws
