"""Input validation at the public edge: clear `InputError`s (a `ValueError`) that name the argument."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from ._types import Array, Widths

SIGNED_GRAPH = "jaxflow.signed.graph.SignedGraph"  # the class `check_graph` accepts


class InputError(ValueError):
    """The input or the environment is wrong (an argument, a config, a model file, an output folder,
    the memory a run needs): the message names it and says what was expected. The command line
    prints it as one line; any other exception is a bug.

    Raised by the checks of this module (and `named_error`), it also carries the argument it names
    (`argument`) and what is wrong with it (`problem`), so that a config can name its key instead."""


def named_error(name: str, problem: str) -> InputError:
    """The `InputError` "`name` `problem`", carrying both."""
    error = InputError(f"{name} {problem}")
    error.argument, error.problem = name, problem
    return error


def check_count(value, name: str, *, minimum: int = 1) -> int:
    """An integer `>= minimum` (Python or NumPy, not bool; default: a positive integer), as an int.

    Raises:
        InputError: "`name` must be a positive integer, got …" (or "an integer >= `minimum`").
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise named_error(name, f"must be {what}, got {value!r}")
    return int(value)


def check_choice(value, name: str, choices):
    """One of `choices` (a scheme's, a solver's, a method's name), as given.

    Raises:
        InputError: "`name` must be one of [...], got …".
    """
    if value not in choices:
        raise named_error(name, f"must be one of {list(choices)}, got {value!r}")
    return value


def check_shape(shape, name: str = "shape", *, min_dims: int = 1, what: str = "a shape") -> tuple[int, ...]:
    """A tuple of `min_dims` or more positive integers: an array's shape, layer widths.

    Raises:
        InputError: "`name` must be `what`: … positive integers, got …", or naming the entry
            `name[i]` that is not a positive integer.
    """
    try:
        entries = tuple(shape)
    except TypeError:
        entries = ()
    if len(entries) < min_dims or not np.iterable(shape):
        count = "" if min_dims <= 1 else f"{min_dims} or more "
        raise named_error(name, f"must be {what}: {count}positive integers, got {shape!r}")
    return tuple(check_count(d, f"{name}[{i}]") for i, d in enumerate(entries))


def is_traced(x) -> bool:
    """Whether `x` is an abstract value under `jit`/`vmap`/`grad` (only its shape and dtype are known)."""
    return isinstance(x, jax.core.Tracer)


def check_widths(widths: Widths, name: str = "widths") -> tuple[int, ...]:
    """Widths `(d_0, …, d_h)`: two or more positive integers (depth h >= 1)."""
    return check_shape(widths, name, min_dims=2, what="the layer widths d_0, ..., d_h (depth h >= 1)")


def check_graph(graph, name: str = "graph"):
    """A `jaxflow.signed.SignedGraph` (known by its class, as this module sits below `jaxflow.signed`).

    Raises:
        InputError: "`name` must be a SignedGraph, got …".
    """
    if not any(f"{c.__module__}.{c.__qualname__}" == SIGNED_GRAPH for c in type(graph).__mro__):
        raise named_error(name, f"must be a SignedGraph, got {type(graph).__name__}")
    return graph


def check_array(x, name: str, shape: tuple[int | None, ...] | None = None, ndim: int | None = None):
    """A finite numeric array of the given shape (`None` entries match any size).

    A traced `x` (under `jit`/`vmap`) is checked for dtype and shape only.
    """
    try:
        arr = jax.ShapeDtypeStruct(x.shape, x.dtype) if is_traced(x) else np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report any conversion failure the same way
        raise named_error(name, f"must be an array, could not convert {type(x).__name__}: {e}") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise named_error(name, f"must be a numeric array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise named_error(name, f"must have {ndim} dimensions, got shape {arr.shape}")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise named_error(name, f"must have shape {want}, got {arr.shape}")
    # all finite iff the extremes are (NaN propagates through min and max): no mask the size of `x`
    if not is_traced(x) and arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise named_error(name, f"contains {bad} non-finite value(s) (NaN or inf)")
    return x


def check_positive(x, name: str, *, allow_zero: bool = False) -> float | Array:
    """A finite real number > 0 (or >= 0); a traced `x` is returned unchecked."""
    if is_traced(x):
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise named_error(name, f"must be a real number, got {x!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise named_error(name, f"must be finite and {bound}, got {x!r}")
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
    """One JAX PRNG key: typed (`jax.random.key(seed)`) or legacy (`jax.random.PRNGKey(seed)`, two
    uint32 words), returned as given.

    Raises:
        InputError: "`name` must be one JAX PRNG key, …".
    """
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ()
    legacy = dtype == np.uint32 and getattr(key, "shape", None) == (2,)
    if not (typed or legacy):
        raise named_error(name, f"must be one JAX PRNG key, e.g. jax.random.key(0); got {key!r}")
    return key


def output_folder(path, name: str = "out") -> Path:
    """The folder `path`, created with its parents; an `InputError` naming it when that fails (an
    existing file in the way, no permission, a read-only or full disk)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise named_error(name, f"{path} is a file, not a folder; choose another path") from None
    except OSError as e:
        raise named_error(name, f"{path} cannot be created ({e.strerror}); choose another path") from None
    return path
