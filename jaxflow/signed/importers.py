"""`SignedGraph`s of real models: the dispatcher by file type (`load_graph`), Equinox modules and
npz weight files; ONNX files are read by the op handlers of `_onnx` (`from_onnx`, re-exported).

Weights become edges (biases are dropped: they are not edges); flattening and reshaping rearrange
nodes without adding edges. Elementwise activations add no edges: each layer records its
activation and whether it is monotone non-decreasing (`activations`). Pooling is `Pool` (a max pool
links every input of its window). Weights keep their precision while a graph is built; see
`_builder` for the dtype rule. For a `DeepLinearNetwork` use `SignedGraph.from_network`.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._checks import InputError
from .._memory import Budget
from ._builder import GraphBuilder, Tensor
from ._onnx import from_onnx as from_onnx
from .activations import IDENTITY, JAX_ACTIVATIONS, named_activation
from .graph import SignedGraph

_EQX_IDENTITY = inspect.signature(eqx.nn.MLP.__init__).parameters["final_activation"].default


# ---------------------------------------------------------------------- Equinox


def from_equinox(model: eqx.Module, input_shape: tuple[int, ...] | None = None, *, dtype=None) -> SignedGraph:
    """The graph of an Equinox model: an `eqx.nn.MLP`, or an `eqx.nn.Sequential` (nested allowed)
    of `Linear`, `Conv2d`, `MaxPool2d`/`AvgPool2d`, `Lambda(activation)`, `Lambda(jnp.ravel)`,
    `Identity` and `Dropout` layers, or a list of them. `input_shape` (one input, no batch axis)
    may be left out when the first layer is `Linear`."""
    layers = _eqx_layers(model, "model")
    if input_shape is None:
        first = layers[0][1]
        if not isinstance(first, eqx.nn.Linear):
            raise InputError("input_shape is required unless the model starts with eqx.nn.Linear")
        input_shape = (first.in_features,)
    b = GraphBuilder(dtype)
    x: Tensor = b.input("input", tuple(input_shape))
    for where, layer in layers:
        try:
            x = _eqx_layer(b, x, layer, where)
        except ValueError as e:
            raise InputError(f"{where} ({_describe(layer)}): {e}") from None
    return b.build([x])


def _eqx_layers(m, where: str) -> list[tuple[str, object]]:
    if isinstance(m, eqx.nn.Sequential):
        return [x for i, layer in enumerate(m.layers) for x in _eqx_layers(layer, f"{where}.layers[{i}]")]
    if isinstance(m, (list, tuple)):
        return [x for i, layer in enumerate(m) for x in _eqx_layers(layer, f"{where}[{i}]")]
    if isinstance(m, eqx.nn.MLP):
        if not isinstance(m.layers, tuple):
            raise InputError(f"{where}: an MLP with stacked (scan) layers is not supported")
        acts = [(f"{where}.activation", m.activation)] * (len(m.layers) - 1)
        acts += [(f"{where}.final_activation", m.final_activation)]
        return [x for i, act in enumerate(acts) for x in ((f"{where}.layers[{i}]", m.layers[i]), act)]
    return [(where, m)]


def _describe(layer) -> str:
    if isinstance(layer, eqx.nn.Lambda):
        return f"Lambda({getattr(layer.fn, '__name__', layer.fn)!r})"
    return type(layer).__name__ if isinstance(layer, eqx.Module) else repr(getattr(layer, "__name__", layer))


def _eqx_layer(b: GraphBuilder, x: Tensor, layer, where: str) -> Tensor:
    if isinstance(layer, eqx.nn.Linear):
        if layer.in_features == "scalar" or layer.out_features == "scalar":
            raise InputError('"scalar" inputs or outputs are not supported; use size 1')
        return b.dense(x, layer.weight, where)
    if isinstance(layer, eqx.nn.Conv2d):
        if layer.padding_mode != "ZEROS":
            raise InputError(f"padding_mode {layer.padding_mode!r} is not supported (only ZEROS)")
        return b.conv(x, layer.weight, where, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, (eqx.nn.MaxPool2d, eqx.nn.AvgPool2d)):
        if layer.use_ceil:
            raise InputError("use_ceil=True is not supported")
        mode = "max" if isinstance(layer, eqx.nn.MaxPool2d) else "avg"
        return b.pool(x, where, layer.kernel_size, layer.stride, layer.padding, mode=mode)
    if isinstance(layer, (eqx.nn.Identity, eqx.nn.Dropout)) or layer is _EQX_IDENTITY:
        return x  # no edges; a Dropout is the identity at inference
    fn = layer.fn if isinstance(layer, eqx.nn.Lambda) else layer
    if fn is jnp.ravel:
        return b.reshape(x, (math.prod(x.shape),))
    if fn in JAX_ACTIVATIONS:
        return b.activate(x, JAX_ACTIVATIONS[fn])
    raise InputError(
        "unsupported layer: expected Linear, Conv2d, MaxPool2d, AvgPool2d, Identity, Dropout or "
        f"Lambda of jnp.ravel or one of the activations {sorted(a.name for a in JAX_ACTIVATIONS.values())}"
    )


# ---------------------------------------------------------------------- npz


def from_npz(path: str | Path, *, dtype=None) -> SignedGraph:
    """The graph of a multilayer network stored as `numpy.savez(path, W_1=..., ..., W_h=...)`.

    Format: arrays `W_1 … W_h`, `W_i` of shape `(d_i, d_{i−1})` (the convention of docs/conventions.md, `x ↦
    W_h ⋯ W_1 x`); optional biases `b_1 … b_h` are ignored; optional `activations`, an array of
    `h` strings, names the activation after each `W_i` (ONNX names such as `"Relu"`, or
    `"identity"`; default identity). Any other key is an error.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise FileNotFoundError(f"model file not found: {path}") from None
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"{path} is not a readable npz file: {e}") from None
    h = sum(1 for k in arrays if k.startswith("W_"))
    allowed = {f"W_{i}" for i in range(1, h + 1)} | {f"b_{i}" for i in range(1, h + 1)} | {"activations"}
    if h == 0 or set(arrays) - allowed or not {f"W_{i}" for i in range(1, h + 1)} <= set(arrays):
        raise InputError(
            f"{path}: expected arrays W_1 ... W_h (and optionally b_1 ... b_h, activations), got keys "
            f"{sorted(arrays)}"
        )
    acts = arrays.get("activations", np.array([IDENTITY.name] * h))
    if acts.shape != (h,) or acts.dtype.kind != "U":
        raise InputError(f"{path}: activations must be an array of {h} strings, got {acts!r}")
    b = GraphBuilder(dtype)
    x: Tensor = b.input("input", (_npz_weight(arrays, 1, path).shape[1],))
    for i in range(1, h + 1):
        try:
            x = b.dense(x, _npz_weight(arrays, i, path), f"layer{i}")
        except ValueError as e:
            raise InputError(f"{path}: W_{i}: {e}") from None
        activation = named_activation(str(acts[i - 1]), f"{path}: activations[{i - 1}]")
        if activation != IDENTITY:
            x = b.activate(x, activation)
    return b.build([x])


def _npz_weight(arrays, i: int, path) -> np.ndarray:
    w = arrays[f"W_{i}"]
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
        raise InputError(f"{path}: W_{i} must be a finite 2-D numeric array, got shape {w.shape} ({w.dtype})")
    return w


# ---------------------------------------------------------------------- by file type


def load_graph(
    path: str | Path, *, dtype=None, input_shape=None, max_memory: int | Budget | None = None
) -> SignedGraph:
    """The graph of a model file, by extension: `.onnx` (`from_onnx`, which takes `input_shape`
    and `max_memory`) or `.npz` (`from_npz`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".onnx", ".npz"):
        raise InputError(f"model file must end in .onnx or .npz, got {path.name!r}")
    if suffix == ".onnx":
        return from_onnx(path, dtype=dtype, input_shape=input_shape, max_memory=max_memory)
    if input_shape is not None:
        raise InputError(f"input_shape applies to ONNX models only, not to {path.name!r}")
    return from_npz(path, dtype=dtype)
