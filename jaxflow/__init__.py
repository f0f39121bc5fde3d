"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks.

The top level holds the public API; everything else is in `jaxflow.linear`, `jaxflow.signed`
and, for the commands, `jaxflow.experiments`. Bad input raises `InputError` (a `ValueError`;
`ConfigError` for a config), whose message names the argument, key or file."""

import importlib.metadata

from ._checks import InputError as InputError
from .config import ConfigError as ConfigError
from .linear import (
    CriticalValue as CriticalValue,
    DeepLinearNetwork as DeepLinearNetwork,
    Task as Task,
    Trajectory as Trajectory,
    classify_critical_point as classify_critical_point,
    critical_point as critical_point,
    critical_values as critical_values,
    gradient_descent as gradient_descent,
    gradient_flow as gradient_flow,
    learning_time as learning_time,
    loss as loss,
    mode_time as mode_time,
    mode_trajectory as mode_trajectory,
    vector_field as vector_field,
)
from .linear.hessian import hessian as hessian
from .linear.sweep import SweepResult as SweepResult, sweep as sweep
from .signed import SignedGraph as SignedGraph
from .signed.frustration import FrustrationResult as FrustrationResult, frustration as frustration
from .signed.monotonicity import monotonicity_score as monotonicity_score
from .signed.nullmodels import (
    NullModelResult as NullModelResult,
    null_model_frustration as null_model_frustration,
)

try:
    __version__ = importlib.metadata.version("jaxflow")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
