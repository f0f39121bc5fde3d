"""Elementwise activations, the one vocabulary: `Activation` (a layer's name and monotone flag),
the ONNX ops (NumPy function, monotone flag, sign), the JAX functions the Equinox importer knows
(`JAX_ACTIVATIONS`), those a graph can be evaluated with (`JAX_FUNCTIONS`), and the composite
functions an importer names by value (`NAMED`). Names are matched without case (`"Relu"` from ONNX
is `"relu"` from JAX) by `name_key`.

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

from .._checks import InputError


class Activation(NamedTuple):
    """The elementwise nonlinearity applied to a layer's summed input (biases are not edges).

    `monotone` says whether it is non-decreasing (ReLU, sigmoid, tanh, …), which the
    near-monotonicity guarantee of a balanced graph needs.
    """

    name: str = "identity"
    monotone: bool = True


IDENTITY = Activation()
RELU = "relu"


def name_key(name: str) -> str:
    """The case-free key under which an activation name is looked up (`"Relu"` → `"relu"`)."""
    return name.lower()


def compose(outer: Activation, inner: Activation) -> Activation:
    """`outer ∘ inner`: one layer's two activations in turn (`outer` alone after the identity)."""
    if inner == IDENTITY:
        return outer
    return Activation(f"{outer.name}∘{inner.name}", outer.monotone and inner.monotone)


def is_relu(activation: Activation) -> bool:
    """Whether `activation` is ReLU (ONNX `"Relu"` or JAX `"relu"`)."""
    return name_key(activation.name) == RELU


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
    jax.nn.relu: Activation(RELU, True),
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


# The activations a graph can be evaluated with (`function.GraphFunction`), by `name_key`.
JAX_FUNCTIONS: dict[str, Callable] = {
    name_key(IDENTITY.name): lambda x: x,
    RELU: jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
}


def jax_function(activation: Activation) -> Callable | None:
    """The JAX function that evaluates `activation` (any case), or `None` if there is none here."""
    return JAX_FUNCTIONS.get(name_key(activation.name))


def named_activation(name: str, where: str) -> Activation:
    """The ONNX activation `name` (any case) whose flags need no parameters, as an `Activation`
    (`"identity"`: `IDENTITY`)."""
    if name_key(name) == name_key(IDENTITY.name):
        return IDENTITY
    fixed = {k: v for k, v in ONNX_ACTIVATIONS.items() if isinstance(v.monotone, bool)}
    canon = {name_key(k): k for k in fixed}.get(name_key(name))
    if canon is None:
        raise InputError(f"{where}: unknown activation {name!r}; expected identity or one of {sorted(fixed)}")
    return Activation(canon, fixed[canon].monotone)
