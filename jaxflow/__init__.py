"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks."""

from .linear import CriticalValue as CriticalValue
from .linear import (
    DeepLinearNetwork as DeepLinearNetwork,
)
from .linear import (
    Task as Task,
)
from .linear import Trajectory as Trajectory
from .linear import apply_symmetry as apply_symmetry
from .linear import classify_critical_point as classify_critical_point
from .linear import critical_levels as critical_levels
from .linear import critical_point as critical_point
from .linear import critical_values as critical_values
from .linear import fiber as fiber
from .linear import gradient_descent as gradient_descent
from .linear import gradient_flow as gradient_flow
from .linear import hessian as hessian
from .linear import hvp as hvp
from .linear import inertia as inertia
from .linear import lanczos as lanczos
from .linear import learning_time as learning_time
from .linear import level_index as level_index
from .linear import (
    loss as loss,
)
from .linear import mode_rays as mode_rays
from .linear import mode_strengths as mode_strengths
from .linear import mode_time as mode_time
from .linear import mode_trajectory as mode_trajectory
from .linear import nearest_critical_value as nearest_critical_value
from .linear import network_class as network_class
from .linear import (
    vector_field as vector_field,
)
from .signed import SignedGraph as SignedGraph
from .signed import block_frustration as block_frustration
from .signed import frustration as frustration
from .signed import gauge_frustration as gauge_frustration
from .signed import monotonicity_score as monotonicity_score
from .signed import null_model_frustration as null_model_frustration
from .sweep import SweepResult as SweepResult
from .sweep import sweep as sweep

__version__ = "0.1.0"
