"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks.

The top level holds the public API; everything else is in `jaxflow.linear`, `jaxflow.signed`
and, for the commands, `jaxflow.experiments`. Bad input raises `InputError` (a `ValueError`;
`ConfigError` for a config), whose message names the argument, key or file. A public name is
imported when it is first used, so that `import jaxflow` imports no JAX: the `jaxflow` command
guards against interrupts (`jaxflow._interrupt`) before JAX loads."""

import functools
import importlib
import importlib.metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the public names, listed once: static tools (the docs' reference) read them here
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
    from .linear.sweep import (
        Flow as Flow,
        Lanes as Lanes,
        Networks as Networks,
        SweepResult as SweepResult,
        sweep as sweep,
    )
    from .signed import SignedGraph as SignedGraph
    from .signed.frustration import FrustrationResult as FrustrationResult, frustration as frustration
    from .signed.monotonicity import monotonicity_score as monotonicity_score
    from .signed.nullmodels import (
        NullModelResult as NullModelResult,
        null_model_frustration as null_model_frustration,
    )


@functools.cache
def _public() -> dict[str, str]:
    """Public name → the module below `jaxflow` that defines it, read from the imports under
    `TYPE_CHECKING` above (Python skips them), on first use: `import jaxflow` stays light."""
    import ast

    with open(__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"]
    return {alias.name: node.module for node in block.body for alias in node.names}


def __getattr__(name: str):
    if name not in _public():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_public()[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_public()})


try:
    __version__ = importlib.metadata.version("jaxflow")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
