"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks."""

from .linear import CriticalValue as CriticalValue
from .linear import (
    DeepLinearNetwork as DeepLinearNetwork,
)
from .linear import (
    Task as Task,
)
from .linear import Trajectory as Trajectory
from .linear import critical_levels as critical_levels
from .linear import critical_point as critical_point
from .linear import critical_values as critical_values
from .linear import gradient_descent as gradient_descent
from .linear import gradient_flow as gradient_flow
from .linear import learning_time as learning_time
from .linear import level_index as level_index
from .linear import (
    loss as loss,
)
from .linear import mode_strengths as mode_strengths
from .linear import mode_time as mode_time
from .linear import mode_trajectory as mode_trajectory
from .linear import nearest_critical_value as nearest_critical_value
from .linear import (
    vector_field as vector_field,
)

__version__ = "0.1.0"
