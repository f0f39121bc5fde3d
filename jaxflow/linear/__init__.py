"""Deep linear networks: the network, its task, the gradient flow and the landscape.

Modules: `task` (Task, modes), `network` (DeepLinearNetwork), `objective` (loss, −∇L on the
weights and on `A`), `_stepper` (the Diffrax solver wrapper), `flow` (gradient_flow,
gradient_descent, solve), `theory` (closed forms), `landscape` (critical values and points),
`symmetry` (the hidden-node symmetry), `hessian` (exact Hessian, HVP, Lanczos, inertia),
`saddles` (classification). The function `hessian` is `jaxflow.linear.hessian.hessian`: the name
`jaxflow.linear.hessian` is its module.
"""

from .flow import (
    FlowStats as FlowStats,
    Trajectory as Trajectory,
    gradient_descent as gradient_descent,
    gradient_flow as gradient_flow,
)
from .hessian import (
    LanczosResult as LanczosResult,
    hessian_spectrum as hessian_spectrum,
    hvp as hvp,
    inertia as inertia,
    lanczos as lanczos,
    spectrum_tolerance as spectrum_tolerance,
)
from .landscape import (
    CriticalValue as CriticalValue,
    NearestCritical as NearestCritical,
    NetworkClass as NetworkClass,
    critical_levels as critical_levels,
    critical_point as critical_point,
    critical_values as critical_values,
    level_index as level_index,
    nearest_critical_value as nearest_critical_value,
    network_class as network_class,
)
from .network import DeepLinearNetwork as DeepLinearNetwork
from .objective import conservation_drift as conservation_drift, loss as loss, vector_field as vector_field
from .saddles import (
    CriticalPointReport as CriticalPointReport,
    Ray as Ray,
    classify_critical_point as classify_critical_point,
    line_polynomial as line_polynomial,
    mode_rays as mode_rays,
    path_direction as path_direction,
    ray_point as ray_point,
)
from .symmetry import apply_symmetry as apply_symmetry, fiber as fiber, random_symmetry as random_symmetry
from .task import Task as Task, mode_strengths as mode_strengths, modes_learnt as modes_learnt
from .theory import learning_time as learning_time, mode_time as mode_time, mode_trajectory as mode_trajectory
