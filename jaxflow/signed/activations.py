"""Elementwise activations: one table of ONNX ops (NumPy function, monotone flag, sign), the JAX
functions the Equinox importer knows, and the composite functions an importer names by value.

`monotone` says whether the function is non-decreasing; `nonnegative` whether its values are
`>= 0` (a gate that multiplies a tensor keeps its signs). Either may depend on a parameter: the
name of the parameter that must be `>= 0` everywhere (`"alpha"`, `"slope"`, `"min"`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .graph import Activation

_erf = np.vectorize(math.erf, otypes=[float])


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(x / 2))


def _softplus(x):
    return np.logaddexp(0, x)


def _hard_sigmoid(x, alpha=0.2, beta=0.5):
    return np.clip(alpha * x + beta, 0, 1)


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


class OnnxActivation(NamedTuple):
    """An elementwise ONNX op: `fn(x, **params)` in NumPy, its defaults, and its flags."""

    fn: Callable
    monotone: bool | str
    nonnegative: bool | str = False
    defaults: dict = {}

    def flag(self, which: str, params: dict) -> bool:
        """`monotone` or `nonnegative` for these parameters."""
        rule = getattr(self, which)
        return rule if isinstance(rule, bool) else bool(np.all(np.asarray(params[rule]) >= 0))


ONNX_ACTIVATIONS: dict[str, OnnxActivation] = {
    "Relu": OnnxActivation(lambda x: np.maximum(x, 0), True, True),
    "Sigmoid": OnnxActivation(_sigmoid, True, True),
    "Tanh": OnnxActivation(np.tanh, True),
    "Softplus": OnnxActivation(_softplus, True, True),
    "Softsign": OnnxActivation(lambda x: x / (1 + np.abs(x)), True),
    "Selu": OnnxActivation(
        lambda x, alpha, gamma: gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
        True,
        defaults={"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    ),  # fmt: skip
    "Erf": OnnxActivation(_erf, True),
    "Exp": OnnxActivation(np.exp, True, True),
    "Clip": OnnxActivation(
        lambda x, min, max: np.clip(x, min, max), True, "min", {"min": -np.inf, "max": np.inf}
    ),
    "HardSigmoid": OnnxActivation(_hard_sigmoid, "alpha", True, {"alpha": 0.2, "beta": 0.5}),
    "LeakyRelu": OnnxActivation(
        lambda x, alpha: np.where(x >= 0, x, alpha * x), "alpha", False, {"alpha": 0.01}
    ),
    "Elu": OnnxActivation(
        lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))),
        "alpha",
        defaults={"alpha": 1.0},
    ),  # fmt: skip
    "PRelu": OnnxActivation(lambda x, slope: np.where(x >= 0, x, slope * x), "slope"),
    "HardSwish": OnnxActivation(lambda x: x * _hard_sigmoid(x, 1 / 6, 0.5), False),
    "Gelu": OnnxActivation(_gelu, False, defaults={"approximate": "none"}),
    "Mish": OnnxActivation(lambda x: x * np.tanh(_softplus(x)), False),
}

# Composite functions that an importer names when an expression computes exactly one of them
# (e.g. SiLU written as `Mul(x, Sigmoid(x))`); all of them are non-monotone.
NAMED: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "silu": lambda x: x * _sigmoid(x),
    "hard_swish": ONNX_ACTIVATIONS["HardSwish"].fn,
    "gelu": _gelu,
    "gelu_tanh": lambda x: _gelu(x, "tanh"),
    "mish": ONNX_ACTIVATIONS["Mish"].fn,
}

JAX_ACTIVATIONS = {
    jax.nn.relu: Activation("relu", True),
    jax.nn.relu6: Activation("relu6", True),
    jax.nn.sigmoid: Activation("sigmoid", True),
    jax.nn.hard_sigmoid: Activation("hard_sigmoid", True),
    jax.nn.hard_tanh: Activation("hard_tanh", True),
    jax.nn.softplus: Activation("softplus", True),
    jax.nn.soft_sign: Activation("soft_sign", True),
    jax.nn.leaky_relu: Activation("leaky_relu", True),  # default slope 0.01
    jax.nn.elu: Activation("elu", True),
    jax.nn.selu: Activation("selu", True),
    jax.nn.tanh: Activation("tanh", True),
    jnp.tanh: Activation("tanh", True),
    jax.nn.gelu: Activation("gelu", False),
    jax.nn.silu: Activation("silu", False),
    jax.nn.hard_swish: Activation("hard_swish", False),
}


def named_activation(name: str, where: str) -> Activation:
    """The ONNX activation `name` (any case) whose flags need no parameters, as an `Activation`."""
    fixed = {k: v for k, v in ONNX_ACTIVATIONS.items() if isinstance(v.monotone, bool)}
    canon = {k.lower(): k for k in fixed}.get(name.lower())
    if canon is None:
        raise ValueError(f"{where}: unknown activation {name!r}; expected identity or one of {sorted(fixed)}")
    return Activation(canon, fixed[canon].monotone)
