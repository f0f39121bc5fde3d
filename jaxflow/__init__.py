"""jaxflow: gradient flow and landscape of deep linear networks; frustration of signed networks.

The top level holds the public API of DESIGN.md; everything else is in `jaxflow.linear`,
`jaxflow.signed` and, for the commands, `jaxflow.experiments`. A public name is imported when it
is first used, so that `import jaxflow` imports no JAX: the `jaxflow` command guards against
interrupts (`jaxflow._interrupt`) before JAX loads."""

import importlib
import importlib.metadata

_LINEAR = (
    "CriticalValue", "DeepLinearNetwork", "Task", "Trajectory", "classify_critical_point", "critical_point",
    "critical_values", "gradient_descent", "gradient_flow", "learning_time", "loss", "mode_time",
    "mode_trajectory", "vector_field",
)  # fmt: skip
_PUBLIC = {
    **dict.fromkeys(_LINEAR, "linear"),
    "hessian": "linear.hessian",
    "SweepResult": "linear.sweep",
    "sweep": "linear.sweep",
    "SignedGraph": "signed",
    "FrustrationResult": "signed.frustration",
    "frustration": "signed.frustration",
    "monotonicity_score": "signed.monotonicity",
    "NullModelResult": "signed.nullmodels",
    "null_model_frustration": "signed.nullmodels",
}
"""Public name → the module below `jaxflow` that defines it."""


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


try:
    __version__ = importlib.metadata.version("jaxflow")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
