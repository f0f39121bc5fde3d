"""jaxtyping aliases used across jaxflow (checked at runtime in tests only).

Dimension names, one vocabulary (docs/conventions.md): layer widths `d_0 … d_h` (`d_i`, `d_im1` for a
generic layer), `n` nodes, `N` samples, `P` parameters, `r` modes.
"""

from collections.abc import Sequence

import jaxtyping
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray, Real, UInt32

FloatLike = float | int  # a Python number where a float is meant (int included, as in PEP 484)
ArrayLike = Array | np.ndarray  # what the public edge accepts and converts: a JAX or NumPy array
Matrix = Float[Array, "rows cols"]
Vector = Float[Array, " n"]
Scalar = Float[Array, ""]
Key = PRNGKeyArray
Widths = Sequence[int | np.integer] | Int[np.ndarray, " _layers"]  # (d_0, …, d_h), as checked by check_widths
Keys = jaxtyping.Key[Array, " batch"] | UInt32[Array, "batch 2"]  # a batch of keys (typed or legacy)

__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "Float",
    "FloatLike",
    "Int",
    "Key",
    "Keys",
    "Matrix",
    "Real",
    "Scalar",
    "Vector",
    "Widths",
]
