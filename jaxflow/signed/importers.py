"""`SignedGraph`s of real models: Equinox modules, npz weight files and ONNX files.

Weights become edges (biases are dropped: they are not edges); Flatten, Reshape, Transpose and
Concat rearrange nodes without adding edges; a BatchNormalization is folded into the linear map
before it (its scale `γ/√(σ²+ε)` multiplies that map's edges, so a negative `γ` flips signs) or,
after a rearrangement or activation, becomes a layer of per-channel edges; an Add of two tensors
is a residual sum. Elementwise activations add no edges: each layer records its activation and
whether it is monotone non-decreasing (an activation whose input is also read raw elsewhere gets a
layer of its own, fed by identity edges). Pooling is `Pool` (a max pool links every input of its
window). Several output heads are stacked into one output layer. For a `DeepLinearNetwork` use
`SignedGraph.from_network`.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._builder import GraphBuilder, Pending, Tensor
from .graph import Activation, SignedGraph

# ---------------------------------------------------------------------- activations

# Elementwise activations (ONNX op names) and whether they are monotone non-decreasing.
ONNX_ACTIVATIONS = {
    "Relu": True,
    "Sigmoid": True,
    "Tanh": True,
    "Softplus": True,
    "Softsign": True,
    "Selu": True,
    "Clip": True,
    "HardSigmoid": None,  # max(0, min(1, alpha x + beta)): monotone iff alpha >= 0
    "LeakyRelu": None,  # monotone iff alpha >= 0
    "Elu": None,  # monotone iff alpha >= 0
    "PRelu": None,  # monotone iff every slope >= 0
    "HardSwish": False,
    "Gelu": False,
    "Mish": False,
}

_EQX_IDENTITY = inspect.signature(eqx.nn.MLP.__init__).parameters["final_activation"].default
_JAX_ACTIVATIONS = {
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
            raise ValueError("input_shape is required unless the model starts with eqx.nn.Linear")
        input_shape = (first.in_features,)
    b = GraphBuilder(dtype)
    x: Tensor = b.input("input", tuple(input_shape))
    for where, layer in layers:
        try:
            x = _eqx_layer(b, x, layer, where)
        except ValueError as e:
            raise ValueError(f"{where} ({_describe(layer)}): {e}") from None
    return b.build([x])


def _eqx_layers(m, where: str) -> list[tuple[str, object]]:
    if isinstance(m, eqx.nn.Sequential):
        return [x for i, layer in enumerate(m.layers) for x in _eqx_layers(layer, f"{where}.layers[{i}]")]
    if isinstance(m, (list, tuple)):
        return [x for i, layer in enumerate(m) for x in _eqx_layers(layer, f"{where}[{i}]")]
    if isinstance(m, eqx.nn.MLP):
        if not isinstance(m.layers, tuple):
            raise ValueError(f"{where}: an MLP with stacked (scan) layers is not supported")
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
            raise ValueError('"scalar" inputs or outputs are not supported; use size 1')
        return b.dense(x, layer.weight, where)
    if isinstance(layer, eqx.nn.Conv2d):
        if layer.padding_mode != "ZEROS":
            raise ValueError(f"padding_mode {layer.padding_mode!r} is not supported (only ZEROS)")
        return b.conv(x, layer.weight, where, layer.stride, layer.padding, layer.dilation, layer.groups)
    if isinstance(layer, (eqx.nn.MaxPool2d, eqx.nn.AvgPool2d)):
        if layer.use_ceil:
            raise ValueError("use_ceil=True is not supported")
        mode = "max" if isinstance(layer, eqx.nn.MaxPool2d) else "avg"
        return b.pool(x, where, layer.kernel_size, layer.stride, layer.padding, mode=mode)
    if isinstance(layer, (eqx.nn.Identity, eqx.nn.Dropout)) or layer is _EQX_IDENTITY:
        return x  # no edges; a Dropout is the identity at inference
    fn = layer.fn if isinstance(layer, eqx.nn.Lambda) else layer
    if fn is jnp.ravel:
        return b.reshape(x, (math.prod(x.shape),))
    if fn in _JAX_ACTIVATIONS:
        return b.activate(x, _JAX_ACTIVATIONS[fn])
    raise ValueError(
        "unsupported layer: expected Linear, Conv2d, MaxPool2d, AvgPool2d, Identity, Dropout or "
        f"Lambda of jnp.ravel or one of the activations {sorted(a.name for a in _JAX_ACTIVATIONS.values())}"
    )


# ---------------------------------------------------------------------- npz


def from_npz(path: str | Path, *, dtype=None) -> SignedGraph:
    """The graph of a multilayer network stored as `numpy.savez(path, W_1=..., ..., W_h=...)`.

    Format: arrays `W_1 … W_h`, `W_i` of shape `(d_i, d_{i−1})` (the DESIGN convention, `x ↦
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
        raise ValueError(f"{path} is not a readable npz file: {e}") from None
    h = sum(1 for k in arrays if k.startswith("W_"))
    allowed = {f"W_{i}" for i in range(1, h + 1)} | {f"b_{i}" for i in range(1, h + 1)} | {"activations"}
    if h == 0 or set(arrays) - allowed or not {f"W_{i}" for i in range(1, h + 1)} <= set(arrays):
        raise ValueError(
            f"{path}: expected arrays W_1 ... W_h (and optionally b_1 ... b_h, activations), got keys "
            f"{sorted(arrays)}"
        )
    acts = arrays.get("activations", np.array(["identity"] * h))
    if acts.shape != (h,) or acts.dtype.kind != "U":
        raise ValueError(f"{path}: activations must be an array of {h} strings, got {acts!r}")
    b = GraphBuilder(dtype)
    x: Tensor = b.input("input", (_npz_weight(arrays, 1, path).shape[1],))
    for i in range(1, h + 1):
        try:
            x = b.dense(x, _npz_weight(arrays, i, path), f"layer{i}")
        except ValueError as e:
            raise ValueError(f"{path}: W_{i}: {e}") from None
        if acts[i - 1].lower() != "identity":
            x = b.activate(x, _named_activation(str(acts[i - 1]), f"{path}: activations[{i - 1}]"))
    return b.build([x])


def _npz_weight(arrays, i: int, path) -> np.ndarray:
    w = arrays[f"W_{i}"]
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
        raise ValueError(f"{path}: W_{i} must be a finite 2-D numeric array, got shape {w.shape} ({w.dtype})")
    return w


def _named_activation(name: str, where: str) -> Activation:
    canon = {k.lower(): k for k in ONNX_ACTIVATIONS}.get(name.lower())
    if canon is None or ONNX_ACTIVATIONS[canon] is None:
        fixed = sorted(k for k, v in ONNX_ACTIVATIONS.items() if v is not None)
        raise ValueError(f"{where}: unknown activation {name!r}; expected identity or one of {fixed}")
    return Activation(canon, ONNX_ACTIVATIONS[canon])


# ---------------------------------------------------------------------- ONNX


def from_onnx(model, *, dtype=None) -> SignedGraph:
    """The graph of an ONNX model (a path or an `onnx.ModelProto`; needs the `jaxflow[onnx]` extra).

    The model has one data input `(N, …)` (the batch axis `N` is dropped). Supported ops: Conv
    (2-D), Gemm, MatMul (by a constant weight), BatchNormalization, Add/Sub (of two tensors: a
    residual sum; of a constant: a bias, dropped), Concat, Flatten, Reshape, Transpose, MaxPool,
    AveragePool, GlobalAveragePool, GlobalMaxPool, Identity, Dropout, the activations in
    `ONNX_ACTIVATIONS`, and Constant/Shape/Gather/Unsqueeze/Squeeze/Cast on constants. Weights may
    be initializers or Constant nodes. Any other op is an error naming the op and the node.
    """
    onnx = _import_onnx()
    proto = _load_onnx(onnx, model)
    graph = proto.graph
    from onnx import numpy_helper

    values: dict[str, object] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in values]
    if len(inputs) != 1:
        raise ValueError(f"an ONNX model must have exactly one data input, got {[i.name for i in inputs]}")
    uses = Counter(name for node in graph.node for name in node.input if name)
    uses.update(o.name for o in graph.output)
    b = GraphBuilder(dtype)
    values[inputs[0].name] = b.input(inputs[0].name, _input_shape(inputs[0]))
    for k, node in enumerate(graph.node):
        where = f"ONNX node {node.name or k!r} ({node.op_type})"
        try:
            args = [_fetch(b, values, uses, name) for name in node.input]
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            out = _onnx_node(b, node, args, attrs, uses)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        for extra in node.output[1:]:
            if uses[extra]:
                raise ValueError(
                    f"{where}: its output {extra!r} is used, but only the first output is supported"
                )
        values[node.output[0]] = out
    heads = [_fetch(b, values, uses, o.name) for o in graph.output]
    if any(not isinstance(t, Tensor) for t in heads):
        raise ValueError("an ONNX output is a constant, not computed from the input")
    return b.build(heads)


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("reading ONNX files needs the onnx package: pip install 'jaxflow[onnx]'") from None
    return onnx


def _load_onnx(onnx, model):
    if isinstance(model, onnx.ModelProto):
        proto = model
    else:
        path = Path(model)
        if not path.exists():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            proto = onnx.load(str(path))
        except Exception as e:  # noqa: BLE001 - protobuf raises various errors on bad bytes
            raise ValueError(f"{path} is not a readable ONNX model: {type(e).__name__}: {e}") from None
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise ValueError(f"malformed ONNX model: {str(e).splitlines()[0]}") from None
    return proto


def _input_shape(value_info) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) < 2 or any(s is None or s < 1 for s in shape[1:]) or shape[0] not in (None, 1):
        shown = [s if s is not None else d.dim_param or "?" for s, d in zip(shape, dims)]
        raise ValueError(
            f"ONNX input {value_info.name!r} must have shape (N, ...) with a batch axis N (1 or symbolic) "
            f"and known positive sizes after it, got {shown}"
        )
    return tuple(shape[1:])


def _fetch(b: GraphBuilder, values: dict, uses: Counter, name: str):
    """The tensor or constant `name`; a pending sum read by several nodes becomes a layer first."""
    if not name:
        return None
    if name not in values:
        raise ValueError(
            f"input {name!r} is not produced by an earlier node or initializer (malformed graph)"
        )
    v = values[name]
    if isinstance(v, Pending) and uses[name] > 1:
        v = values[name] = b.view(v)
    return v


def _const(args, i: int, what: str) -> np.ndarray:
    if i >= len(args) or args[i] is None:
        raise ValueError(f"missing input {i} ({what})")
    if not isinstance(args[i], np.ndarray):
        raise ValueError(f"input {i} ({what}) must be a constant (an initializer or a Constant node)")
    return args[i]


def _tensor(args, i: int) -> Tensor:
    if i >= len(args) or args[i] is None:
        raise ValueError(f"missing input {i}")
    if isinstance(args[i], np.ndarray):
        raise ValueError(f"input {i} is a constant where a tensor computed from the model input is expected")
    return args[i]


def _axis(axis: int, rank: int) -> int:
    """An ONNX axis (counting the batch axis) as an axis of the batch-free tensor."""
    a = axis + rank + 1 if axis < 0 else axis
    if not 1 <= a <= rank:
        raise ValueError(f"axis {axis} is the batch axis or out of range for a rank-{rank + 1} tensor")
    return a - 1


def _window(attrs, shape, kernel) -> dict:
    """Stride, padding and dilation of a Conv or pool from ONNX attributes (incl. `auto_pad`)."""
    stride = tuple(attrs.get("strides", (1, 1)))
    dilation = tuple(attrs.get("dilations", (1, 1)))
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for a in range(2):
            total = max(
                0,
                (math.ceil(shape[a] / stride[a]) - 1) * stride[a]
                + dilation[a] * (kernel[a] - 1)
                + 1
                - shape[a],
            )
            small, large = total // 2, total - total // 2
            pads.append((small, large) if auto == "SAME_UPPER" else (large, small))
    elif auto in ("NOTSET", "VALID"):
        p = attrs.get("pads", (0, 0, 0, 0)) if auto == "NOTSET" else (0, 0, 0, 0)
        if len(p) != 4:
            raise ValueError(f"pads must have 4 entries for a 2-D window, got {list(p)}")
        pads = [(p[0], p[2]), (p[1], p[3])]
    else:
        raise ValueError(f"unknown auto_pad {auto!r}")
    if attrs.get("ceil_mode", 0):  # extra end padding gives the ceil-mode outputs
        for a in range(2):
            span = shape[a] + sum(pads[a]) - dilation[a] * (kernel[a] - 1) - 1
            pads[a] = (pads[a][0], pads[a][1] + (-span) % stride[a])
    return {"stride": stride, "padding": tuple(pads), "dilation": dilation}


def _activation(op: str, args, attrs) -> Activation:
    monotone = ONNX_ACTIVATIONS[op]
    if op in ("LeakyRelu", "Elu"):
        monotone = attrs.get("alpha", 0.01 if op == "LeakyRelu" else 1.0) >= 0
    elif op == "HardSigmoid":
        monotone = attrs.get("alpha", 0.2) >= 0
    elif op == "PRelu":
        monotone = bool(np.all(_const(args, 1, "slope") >= 0))
    return Activation(op, bool(monotone))


def _onnx_node(b: GraphBuilder, node, args, attrs, uses: Counter):
    op, name = node.op_type, node.output[0]
    if op == "Constant":
        from onnx import numpy_helper

        (key, value), *_ = attrs.items()
        return numpy_helper.to_array(value) if key == "value" else np.asarray(value)
    if op == "Shape":
        return np.array((1, *_tensor(args, 0).shape), np.int64)
    if all(isinstance(a, np.ndarray) or a is None for a in args) and op in _CONST_OPS:
        return np.asarray(_CONST_OPS[op](args, attrs))
    if op in ONNX_ACTIVATIONS:
        return b.activate(
            _tensor(args, 0), _activation(op, args, attrs), name, shared=uses[node.input[0]] > 1
        )
    if op in ("Identity", "Dropout"):
        return _tensor(args, 0)
    if op == "Conv":
        kernel = _const(args, 1, "weight")
        x = _tensor(args, 0)
        if kernel.ndim != 4:
            raise ValueError(f"only 2-D convolutions are supported, got a weight of shape {kernel.shape}")
        if len(x.shape) != 3:
            raise ValueError(
                f"a 2-D convolution needs an (N, C, H, W) input, got (N, {', '.join(map(str, x.shape))})"
            )
        window = _window(attrs, x.shape[1:], kernel.shape[2:])
        return b.conv(x, kernel, name, groups=attrs.get("group", 1), **window)
    if op == "Gemm":
        if attrs.get("transA", 0):
            raise ValueError("transA=1 is not supported (the input must be (N, k))")
        w = _const(args, 1, "B")
        w = w if attrs.get("transB", 0) else w.T
        return b.dense(_tensor(args, 0), attrs.get("alpha", 1.0) * w, name)
    if op == "MatMul":
        x, w = _tensor(args, 0), _const(args, 1, "weight")
        if len(x.shape) != 1 or w.ndim != 2:
            raise ValueError(f"only (N, k) @ (k, m) is supported, got shapes (N, {x.shape}) and {w.shape}")
        return b.dense(x, w.T, name)
    if op == "BatchNormalization":
        if attrs.get("training_mode", 0):
            raise ValueError("training_mode=1 is not supported (export the model in inference mode)")
        gamma, var = _const(args, 1, "scale"), _const(args, 4, "input_var")
        return b.scale(_tensor(args, 0), gamma / np.sqrt(var + attrs.get("epsilon", 1e-5)), name)
    if op in ("Add", "Sub"):
        sign = 1.0 if op == "Add" else -1.0
        x, y = args[0], args[1] if len(args) > 1 else None
        if isinstance(x, np.ndarray) and y is not None and not isinstance(y, np.ndarray):
            return y if sign == 1 else b.scale(y, -np.ones(y.shape[:1]), name)  # constant ± tensor
        if isinstance(y, np.ndarray):
            return _tensor(args, 0)  # tensor ± constant: a bias
        return b.add(_tensor(args, 0), _tensor(args, 1), name, sign)
    if op == "Concat":
        xs = [_tensor(args, i) for i in range(len(args))]
        return b.concat(xs, _axis(attrs["axis"], len(xs[0].shape)))
    if op == "Flatten":
        x = _tensor(args, 0)
        if attrs.get("axis", 1) not in (1, -len(x.shape)):
            raise ValueError(f"only Flatten with axis=1 is supported, got axis={attrs['axis']}")
        return b.reshape(x, (math.prod(x.shape),))
    if op == "Reshape":
        x, target = _tensor(args, 0), _const(args, 1, "shape")
        full = _onnx_reshape((1, *x.shape), target, attrs.get("allowzero", 0))
        if full[0] != 1:
            raise ValueError(f"Reshape to {list(target)} moves the batch axis")
        return b.reshape(x, full[1:])
    if op == "Transpose":
        x = _tensor(args, 0)
        perm = attrs.get("perm", list(range(len(x.shape), -1, -1)))
        if perm[0] != 0:
            raise ValueError(f"Transpose with perm {list(perm)} moves the batch axis")
        return b.transpose(x, [p - 1 for p in perm[1:]])
    if op in ("MaxPool", "AveragePool"):
        x = _tensor(args, 0)
        if len(x.shape) != 3:
            raise ValueError(f"only 2-D pooling is supported, got an input of shape (N, {x.shape})")
        kernel = tuple(attrs["kernel_shape"])
        window = _window(attrs, x.shape[1:], kernel)
        if op == "MaxPool":
            return b.pool(x, name, kernel, mode="max", **window)
        if attrs.get("ceil_mode", 0) and attrs.get("count_include_pad", 0):
            raise ValueError("ceil_mode=1 with count_include_pad=1 is not supported")
        return b.pool(
            x, name, kernel, mode="avg", count_include_pad=bool(attrs.get("count_include_pad", 0)), **window
        )
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        x = _tensor(args, 0)
        if len(x.shape) != 3:
            raise ValueError(f"only 2-D pooling is supported, got an input of shape (N, {x.shape})")
        return b.pool(x, name, x.shape[1:], mode="avg" if op == "GlobalAveragePool" else "max")
    supported = sorted({*ONNX_ACTIVATIONS, *_TENSOR_OPS, *_CONST_OPS, "Constant", "Shape"})
    raise ValueError(f"unsupported op {op!r}; supported ops: {', '.join(supported)}")


_TENSOR_OPS = (
    "Identity", "Dropout", "Conv", "Gemm", "MatMul", "BatchNormalization", "Add", "Sub", "Concat", "Flatten",
    "Reshape", "Transpose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
)  # fmt: skip


def _onnx_reshape(shape: tuple[int, ...], target, allowzero: int) -> tuple[int, ...]:
    target = [int(t) for t in target]
    out = [shape[i] if t == 0 and not allowzero else t for i, t in enumerate(target)]
    if out.count(-1) > 1:
        raise ValueError(f"Reshape target {target} has more than one -1")
    if -1 in out:
        known = math.prod(t for t in out if t != -1)
        out[out.index(-1)] = math.prod(shape) // known if known else 0
    if math.prod(out) != math.prod(shape):
        raise ValueError(f"cannot reshape (N, {', '.join(map(str, shape[1:]))}) to {target}")
    return tuple(out)


def _axes(args, attrs):
    return tuple(int(a) for a in (args[1] if len(args) > 1 and args[1] is not None else attrs["axes"]))


# Shape arithmetic on constants (PyTorch exports compute Reshape targets this way).
_CONST_OPS = {
    "Identity": lambda a, k: a[0],
    "Cast": lambda a, k: a[0],
    "Gather": lambda a, k: np.take(a[0], a[1], axis=k.get("axis", 0)),
    "Unsqueeze": lambda a, k: np.expand_dims(a[0], _axes(a, k)),
    "Squeeze": lambda a, k: np.squeeze(a[0], _axes(a, k) if len(a) > 1 or "axes" in k else None),
    "Concat": lambda a, k: np.concatenate(a, axis=k["axis"]),
    "Reshape": lambda a, k: a[0].reshape(_onnx_reshape(a[0].shape, a[1], k.get("allowzero", 0))),
    "Transpose": lambda a, k: np.transpose(a[0], k.get("perm")),
}


# ---------------------------------------------------------------------- by file type


def load_graph(path: str | Path, *, dtype=None) -> SignedGraph:
    """The graph of a model file, by extension: `.onnx` (`from_onnx`) or `.npz` (`from_npz`)."""
    path = Path(path)
    readers = {".onnx": from_onnx, ".npz": from_npz}
    if path.suffix.lower() not in readers:
        raise ValueError(f"model file must end in .onnx or .npz, got {path.name!r}")
    return readers[path.suffix.lower()](path, dtype=dtype)
