"""The hidden-node symmetry `W_i ↦ T_i W_i T_{i−1}^{−1}` (`T_0 = T_h = I`) and its fibers.

It keeps the end-to-end map `W = W_h ⋯ W_1`, hence the loss and the critical set: the landscape
is read on the quotient by it, and `fiber` samples the points of one class.
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import (
    InputError,
    check_array,
    check_choice,
    check_count,
    check_key,
    check_positive,
    check_widths,
)
from .._types import Array, ArrayLike, Float, FloatLike, Key, Keys, Widths
from .network import DeepLinearNetwork


def _inverse_right(
    w: Float[Array, "_d_i _d_im1"], T: Float[ArrayLike, "_d_im1 _d_im1"]
) -> Float[Array, "_d_i _d_im1"]:
    return jnp.linalg.solve(T.T, w.T).T


def act(weights: Sequence[Float[Array, "_d_i _d_im1"]], T: Sequence[Float[ArrayLike, "_d_i _d_i"]]) -> tuple:
    """`W_i ↦ T_i W_i T_{i−1}^{−1}` on a tuple of weights (pure `jnp`; `T_0 = T_h = I`)."""
    h = len(weights)
    out = []
    for i, w in enumerate(weights, start=1):
        if i < h:
            w = T[i - 1] @ w
        if i > 1:
            w = _inverse_right(w, T[i - 2])
        out.append(w)
    return tuple(out)


def apply_symmetry(net: DeepLinearNetwork, T: Sequence[Float[ArrayLike, "_d_i _d_i"]]) -> DeepLinearNetwork:
    """The hidden-node symmetry `W_i ↦ T_i W_i T_{i−1}^{−1}`, `T = (T_1, …, T_{h−1})` invertible.

    It keeps the end-to-end map, hence the loss, and criticality (`∇L(T·θ) = T^{−ᵀ}∇L(θ)`);
    orthogonal `T_i` also keep `‖∇L‖`, the Hessian spectrum and the flow, and conjugate the
    conserved blocks, `C_i ↦ T_i C_i T_iᵀ`.
    """
    widths = net.widths
    T = tuple(T)
    if len(T) != net.depth - 1:
        raise InputError(f"T must hold {net.depth - 1} matrices (one per hidden layer), got {len(T)}")
    for i, t in enumerate(T, start=1):
        check_array(t, f"T[{i - 1}]", shape=(widths[i], widths[i]))
        if np.linalg.cond(np.asarray(t)) > 1 / np.finfo(float).eps:
            raise InputError(f"T[{i - 1}] (acting on hidden layer {i}) must be invertible")
    return DeepLinearNetwork(act(net.weights, T))


GROUPS = ("orthogonal", "gl")


def random_symmetry(key: Key, widths: Widths, group: str = "orthogonal", scale: FloatLike = 1.0) -> tuple:
    """A random group element `(T_1, …, T_{h−1})`.

    `"orthogonal"`: Haar-distributed `O(d_i)`; `"gl"`: `T_i = Q diag(e^{scale·z}) Q'` with Haar
    `Q, Q'` and standard Gaussian `z` (invertible, condition number `e^{scale·(max z − min z)}`);
    `scale` is unused for the orthogonal group.
    """
    return _random_element(check_key(key), check_widths(widths), *_check_group(group, scale))


def _check_group(group: str, scale: FloatLike) -> tuple[str, float]:
    return check_choice(group, "group", GROUPS), check_positive(scale, "scale")


def _haar(key: Key, d: int) -> Float[Array, "_d_i _d_i"]:
    Q, R = jnp.linalg.qr(jax.random.normal(key, (d, d)))
    return Q * jnp.sign(jnp.diag(R))


def _random_element(key: Key, widths: tuple[int, ...], group: str, scale: float) -> tuple:
    hidden = widths[1:-1]
    out = []
    for k, d in zip(jax.random.split(key, max(len(hidden), 1)), hidden):
        k1, k2, k3 = jax.random.split(k, 3)
        T = _haar(k1, d)
        if group == "gl":
            T = (T * jnp.exp(scale * jax.random.normal(k2, (d,)))) @ _haar(k3, d)
        out.append(T)
    return tuple(out)


def fiber(
    net: DeepLinearNetwork, key: Key, num: int, group: str = "orthogonal", scale: float = 1.0
) -> DeepLinearNetwork:
    """`num` points `T·net` of the network's fiber, stacked on a leading axis of the weights."""
    check_count(num, "num")
    return _fiber(net, jax.random.split(check_key(key), num), *_check_group(group, scale))


@eqx.filter_jit
def _fiber(net: DeepLinearNetwork, keys: Keys, group: str, scale: float) -> DeepLinearNetwork:
    widths = net.widths
    point = lambda k: DeepLinearNetwork(act(net.weights, _random_element(k, widths, group, scale)))
    return jax.vmap(point)(keys)
