"""Deep linear networks: the network, its task, the gradient flow and the landscape."""

from .flow import (
    FlowStats as FlowStats,
    Trajectory as Trajectory,
    conservation_drift as conservation_drift,
    end_to_end_loss as end_to_end_loss,
    gradient_descent as gradient_descent,
    gradient_flow as gradient_flow,
    loss as loss,
    loss_adjacency as loss_adjacency,
    vector_field as vector_field,
    vector_field_adjacency as vector_field_adjacency,
)
from .hessian import (
    LanczosResult as LanczosResult,
    flat_gradient as flat_gradient,
    hessian as hessian,
    hessian_spectrum as hessian_spectrum,
    hvp as hvp,
    inertia as inertia,
    lanczos as lanczos,
    spectrum_tolerance as spectrum_tolerance,
)
from .landscape import (
    CriticalValue as CriticalValue,
    Modes as Modes,
    NearestCritical as NearestCritical,
    NetworkClass as NetworkClass,
    aligned_network as aligned_network,
    apply_symmetry as apply_symmetry,
    check_subset as check_subset,
    class_distance as class_distance,
    critical_levels as critical_levels,
    critical_point as critical_point,
    critical_values as critical_values,
    fiber as fiber,
    level_index as level_index,
    mode_spectrum as mode_spectrum,
    mode_strengths as mode_strengths,
    nearest_critical_value as nearest_critical_value,
    network_class as network_class,
    random_symmetry as random_symmetry,
    subset_map as subset_map,
    task_modes as task_modes,
)
from .network import DeepLinearNetwork as DeepLinearNetwork
from .saddles import (
    CriticalPointReport as CriticalPointReport,
    Ray as Ray,
    classify_critical_point as classify_critical_point,
    line_polynomial as line_polynomial,
    mode_rays as mode_rays,
    path_direction as path_direction,
    ray_point as ray_point,
)
from .task import Task as Task
from .theory import learning_time as learning_time, mode_time as mode_time, mode_trajectory as mode_trajectory
