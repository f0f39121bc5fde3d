"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks."""

from .linear import (
    CriticalValue as CriticalValue,
    DeepLinearNetwork as DeepLinearNetwork,
    Task as Task,
    Trajectory as Trajectory,
    apply_symmetry as apply_symmetry,
    classify_critical_point as classify_critical_point,
    critical_levels as critical_levels,
    critical_point as critical_point,
    critical_values as critical_values,
    fiber as fiber,
    gradient_descent as gradient_descent,
    gradient_flow as gradient_flow,
    hessian as hessian,
    hvp as hvp,
    inertia as inertia,
    lanczos as lanczos,
    learning_time as learning_time,
    level_index as level_index,
    loss as loss,
    mode_rays as mode_rays,
    mode_strengths as mode_strengths,
    mode_time as mode_time,
    mode_trajectory as mode_trajectory,
    nearest_critical_value as nearest_critical_value,
    network_class as network_class,
    vector_field as vector_field,
)
from .signed import (
    SignedGraph as SignedGraph,
    block_frustration as block_frustration,
    frustration as frustration,
    gauge_frustration as gauge_frustration,
    monotonicity_score as monotonicity_score,
    null_model_frustration as null_model_frustration,
)
from .sweep import SweepResult as SweepResult, sweep as sweep

__version__ = "0.1.0"
