"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks."""

from .linear import (
    DeepLinearNetwork as DeepLinearNetwork,
)
from .linear import (
    Task as Task,
)
from .linear import (
    loss as loss,
)
from .linear import (
    vector_field as vector_field,
)

__version__ = "0.1.0"
