"""Input validation at the public edge: clear `InputError`s (a `ValueError`) that name the argument."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from ._types import Array, Widths


class InputError(ValueError):
    """The input or the environment is wrong (an argument, a config, a model file, an output folder,
    the memory a run needs): the message names it and says what was expected. The command line
    prints it as one line; any other exception is a bug."""


def count_problem(value, minimum: int = 1) -> str | None:
    """Why `value` is not an integer `>= minimum` (Python or NumPy, not bool), or None if it is."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        return f"must be {what}, got {value!r}"
    return None


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """An integer `>= minimum` (default: a positive integer), as a Python int."""
    problem = count_problem(value, minimum)
    if problem:
        raise InputError(f"{name} {problem}")
    return int(value)


def is_traced(x) -> bool:
    """Whether `x` is an abstract value under `jit`/`vmap`/`grad` (only its shape and dtype are known)."""
    return isinstance(x, jax.core.Tracer)


def check_widths(widths: Widths, name: str = "widths") -> tuple[int, ...]:
    """Widths `(d_0, …, d_h)`: at least two positive integers (depth h >= 1)."""
    try:
        widths = tuple(widths)
    except TypeError:
        raise InputError(f"{name} must be a sequence of layer widths, got {widths!r}") from None
    if len(widths) < 2:
        raise InputError(
            f"{name} must list at least two layer widths (d_0, ..., d_h with depth h >= 1), got {widths!r}"
        )
    return tuple(check_count(d, f"{name}[{i}]") for i, d in enumerate(widths))


def check_array(x, name: str, shape: tuple[int | None, ...] | None = None, ndim: int | None = None):
    """A finite numeric array of the given shape (`None` entries match any size).

    A traced `x` (under `jit`/`vmap`) is checked for dtype and shape only.
    """
    try:
        arr = jax.ShapeDtypeStruct(x.shape, x.dtype) if is_traced(x) else np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report any conversion failure the same way
        raise InputError(f"{name} must be an array, could not convert {type(x).__name__}: {e}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise InputError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise InputError(f"{name} must have shape {want}, got {arr.shape}")
    if not is_traced(x) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return x


def check_positive(x, name: str, *, allow_zero: bool = False) -> float | Array:
    """A finite real number > 0 (or >= 0); a traced `x` is returned unchecked."""
    if is_traced(x):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a real number, got {x!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InputError(f"{name} must be finite and {bound}, got {x!r}")
    return v


def check_task_widths(task, widths: Widths, name: str = "widths") -> tuple[int, ...]:
    """Widths `(d_0, …, d_h)` of a network for `task`: `d_0 = task.d_in`, `d_h = task.d_out`."""
    widths = check_widths(widths, name)
    if (task.d_in, task.d_out) != (widths[0], widths[-1]):
        raise InputError(
            f"{name} {widths} map {widths[0]} -> {widths[-1]} but the task maps {task.d_in} -> {task.d_out}"
        )
    return widths


def check_key(key, name: str = "key"):
    """A JAX PRNG key: `jax.random.key(seed)` (or a legacy `jax.random.PRNGKey(seed)`)."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ()
    legacy = dtype == np.uint32 and getattr(key, "shape", None) == (2,)
    if not (typed or legacy):
        raise InputError(f"{name} must be one JAX PRNG key, e.g. jax.random.key(0); got {key!r}")
    return key


def output_folder(path, name: str = "out") -> Path:
    """The folder `path`, created with its parents; an `InputError` naming it when that fails (an
    existing file in the way, no permission, a read-only or full disk)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{name} {path} is a file, not a folder; choose another path") from None
    except OSError as e:
        raise InputError(f"{name} {path} cannot be created ({e.strerror}); choose another path") from None
    return path
