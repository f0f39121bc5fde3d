"""Input validation at the public edge: clear `ValueError`s that name the argument."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def is_traced(x) -> bool:
    """Whether `x` is an abstract value under `jit`/`vmap`/`grad` (only its shape and dtype are known)."""
    return isinstance(x, jax.core.Tracer)


def check_widths(widths: Sequence[int], name: str = "widths") -> tuple[int, ...]:
    """Widths `(d_0, …, d_h)`: at least two positive integers (depth h >= 1)."""
    try:
        widths = tuple(widths)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of layer widths, got {widths!r}") from None
    if len(widths) < 2:
        raise ValueError(
            f"{name} must list at least two layer widths (d_0, ..., d_h with depth h >= 1), got {widths!r}"
        )
    for i, d in enumerate(widths):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"{name}[{i}] must be a positive integer, got {d!r} in {widths!r}")
    return tuple(int(d) for d in widths)


def check_array(x, name: str, shape: tuple[int | None, ...] | None = None, ndim: int | None = None):
    """A finite numeric array of the given shape (`None` entries match any size).

    A traced `x` (under `jit`/`vmap`) is checked for dtype and shape only.
    """
    try:
        arr = jax.ShapeDtypeStruct(x.shape, x.dtype) if is_traced(x) else np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report any conversion failure the same way
        raise ValueError(f"{name} must be an array, could not convert {type(x).__name__}: {e}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if not is_traced(x) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return x


def check_positive(x, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (or >= 0); a traced `x` is returned unchecked."""
    if is_traced(x):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {x!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {x!r}")
    return v


def check_task_widths(task, widths: Sequence[int], name: str = "widths") -> tuple[int, ...]:
    """Widths `(d_0, …, d_h)` of a network for `task`: `d_0 = task.d_in`, `d_h = task.d_out`."""
    widths = check_widths(widths, name)
    if (task.d_in, task.d_out) != (widths[0], widths[-1]):
        raise ValueError(
            f"{name} {widths} map {widths[0]} -> {widths[-1]} but the task maps {task.d_in} -> {task.d_out}"
        )
    return widths


def check_key(key, name: str = "key"):
    """A JAX PRNG key: `jax.random.key(seed)` (or a legacy `jax.random.PRNGKey(seed)`)."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ()
    legacy = dtype == np.uint32 and getattr(key, "shape", None) == (2,)
    if not (typed or legacy):
        raise ValueError(f"{name} must be one JAX PRNG key, e.g. jax.random.key(0); got {key!r}")
    return key
