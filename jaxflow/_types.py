"""jaxtyping aliases used across jaxflow (checked at runtime in tests only)."""

from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

Matrix = Float[Array, "rows cols"]
Vector = Float[Array, " n"]
Scalar = Float[Array, ""]
Key = PRNGKeyArray

__all__ = ["Array", "Bool", "Float", "Int", "Key", "Matrix", "Scalar", "Vector"]
