"""Deep linear networks: the network, its task, the gradient flow and the landscape."""

from .flow import FlowStats as FlowStats
from .flow import Trajectory as Trajectory
from .flow import conservation_drift as conservation_drift
from .flow import (
    end_to_end_loss as end_to_end_loss,
)
from .flow import gradient_descent as gradient_descent
from .flow import gradient_flow as gradient_flow
from .flow import (
    loss as loss,
)
from .flow import (
    loss_adjacency as loss_adjacency,
)
from .flow import (
    vector_field as vector_field,
)
from .flow import (
    vector_field_adjacency as vector_field_adjacency,
)
from .hessian import LanczosResult as LanczosResult
from .hessian import flat_gradient as flat_gradient
from .hessian import hessian as hessian
from .hessian import hessian_spectrum as hessian_spectrum
from .hessian import hvp as hvp
from .hessian import inertia as inertia
from .hessian import lanczos as lanczos
from .hessian import spectrum_tolerance as spectrum_tolerance
from .landscape import CriticalValue as CriticalValue
from .landscape import Modes as Modes
from .landscape import NearestCritical as NearestCritical
from .landscape import NetworkClass as NetworkClass
from .landscape import aligned_network as aligned_network
from .landscape import apply_symmetry as apply_symmetry
from .landscape import check_subset as check_subset
from .landscape import class_distance as class_distance
from .landscape import critical_levels as critical_levels
from .landscape import critical_point as critical_point
from .landscape import critical_values as critical_values
from .landscape import fiber as fiber
from .landscape import level_index as level_index
from .landscape import mode_spectrum as mode_spectrum
from .landscape import mode_strengths as mode_strengths
from .landscape import nearest_critical_value as nearest_critical_value
from .landscape import network_class as network_class
from .landscape import random_symmetry as random_symmetry
from .landscape import subset_map as subset_map
from .landscape import task_modes as task_modes
from .network import DeepLinearNetwork as DeepLinearNetwork
from .saddles import CriticalPointReport as CriticalPointReport
from .saddles import Ray as Ray
from .saddles import classify_critical_point as classify_critical_point
from .saddles import line_polynomial as line_polynomial
from .saddles import mode_rays as mode_rays
from .saddles import path_direction as path_direction
from .saddles import ray_point as ray_point
from .task import Task as Task
from .theory import learning_time as learning_time
from .theory import mode_time as mode_time
from .theory import mode_trajectory as mode_trajectory
