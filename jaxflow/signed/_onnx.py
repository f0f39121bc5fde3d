"""The ONNX reader: an ONNX model as a `SignedGraph`, one handler per op family (`HANDLERS`).

Values flowing through the graph are constants (NumPy arrays: weights, shape arithmetic), tensors
computed from the input (`View`/`Pending` of `_builder`, in their full ONNX shape with the batch
axis of size 1), or `Lazy` elementwise expressions of one computed tensor. Elementwise ops stay
lazy until a non-elementwise op reads them, so `Mul(x, Sigmoid(x))` becomes one activation of `x`'s
layer; then a leading affine map scales the incoming edges (a folded BatchNormalization), the
nonlinear part is recorded as the layer's activation, and a trailing scale becomes per-channel
edges (a positive scalar stays inside the activation). Any op whose inputs are all constants is
evaluated by the ONNX reference implementation. An output head (a Softmax or LogSoftmax of the
logits, post-processing such as ArgMax or TopK) is set aside before the run: the graph ends at the
values that enter it, and its `metadata` names it. docs/guide/importers.md has the table of what
each op means in the signed graph.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .._checks import InputError
from .._memory import Budget, check_fits
from ._builder import GraphBuilder, Pending, Tensor, View
from .activations import NAMED, ONNX_ACTIVATIONS, Activation
from .graph import SignedGraph

HANDLERS: dict[str, Callable] = {}  # op type -> handler(reader, node, args, attrs) -> value(s)
_PROBE = np.linspace(-6.0, 6.0, 241)  # where composite activations are compared with `NAMED`
_BILINEAR = (
    "a bilinear product has no fixed edge weights (each factor's weights depend on the other "
    "factor's values), so its signed graph is undefined"
)
_NORMALIZES = (
    "it divides each entry by a sum of exponentials over a whole axis, so its outputs have no fixed "
    "edge weights from its inputs and its signed graph is undefined"
)
_SELECTS = (
    "it selects entries by their computed values (indices, a one-hot or a data-dependent subset), "
    "which no fixed edges express"
)
_RECURRENT = (
    "a recurrent layer multiplies its gates by its state and candidate values, all computed from "
    f"the input, at every step of the sequence: {_BILINEAR}"
)
_QUANTIZED = (
    "a quantized model computes in integers with scales (DynamicQuantizeLinear takes them from the "
    "input's values), so its edges are not its float weights; import the float model it was "
    "quantized from"
)
_QUANTIZED_OPS = ("DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "ConvInteger",
                  "MatMulInteger", "QLinearConv", "QLinearMatMul")  # fmt: skip
REFUSED = {  # ops without a signed graph, and why
    **dict.fromkeys(("LSTM", "GRU", "RNN"), _RECURRENT),
    **dict.fromkeys(_QUANTIZED_OPS, _QUANTIZED),
}
# Ops that end a classifier or detector, with why they are no edges: set aside as the output head
# when only post-processing follows them (`_heads`), refused inside the network.
HEAD_OPS = {
    "Softmax": _NORMALIZES, "LogSoftmax": _NORMALIZES, "Hardmax": _SELECTS, "ArgMax": _SELECTS,
    "ArgMin": _SELECTS, "TopK": _SELECTS, "NonMaxSuppression": _SELECTS,
}  # fmt: skip


def handles(*ops: str):
    """Register a handler for the ONNX ops `ops`."""

    def register(fn):
        for op in ops:
            HANDLERS[op] = fn
        return fn

    return register


# ---------------------------------------------------------------------- elementwise expressions


@dataclasses.dataclass(frozen=True, eq=False)
class Expr:
    """An elementwise function of one tensor `x`: `op` is `"x"`, `"affine"` (`params` scale and
    shift), `Add`/`Sub`/`Mul`/`Div` of two expressions, or an activation of `ONNX_ACTIVATIONS`."""

    op: str
    args: tuple[Expr, ...] = ()
    params: dict = dataclasses.field(default_factory=dict)
    name: str = ""


X = Expr("x")


@dataclasses.dataclass(frozen=True, eq=False)
class Lazy:
    """`expr` of the computed tensor `source` (the ONNX value `key`, read `reads` times in it)."""

    source: Tensor
    key: str
    expr: Expr
    reads: int = 1

    @property
    def shape(self):
        return self.source.shape


def _is_linear(e: Expr) -> bool:
    if e.op in ("Add", "Sub"):
        return all(map(_is_linear, e.args))
    return e.op == "x" or (e.op == "affine" and _is_linear(e.args[0]))


def _linear(e: Expr) -> tuple:
    """`(scale, shift)` of an expression that `_is_linear`."""
    if e.op == "x":
        return 1.0, 0.0
    if e.op == "affine":
        s, b = _linear(e.args[0])
        return s * e.params["scale"], b * e.params["scale"] + e.params["shift"]
    (s1, b1), (s2, b2) = map(_linear, e.args)
    return (s1 + s2, b1 + b2) if e.op == "Add" else (s1 - s2, b1 - b2)


def _evaluate(e: Expr, x: np.ndarray) -> np.ndarray:
    if e.op == "x":
        return x
    vals = [_evaluate(a, x) for a in e.args]
    if e.op == "affine":
        return vals[0] * e.params["scale"] + e.params["shift"]
    if e.op in _BINARY:
        return _BINARY[e.op](*vals)
    return ONNX_ACTIVATIONS[e.op].fn(vals[0], **e.params)


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _direction(e: Expr) -> int:
    """+1 non-decreasing, −1 non-increasing, 0 neither (or not known) in `x`."""
    if e.op == "x":
        return 1
    if e.op == "affine":
        s = np.asarray(e.params["scale"])
        sign = 1 if np.all(s >= 0) else -1 if np.all(s <= 0) else 0
        return sign * _direction(e.args[0])
    if e.op in ("Add", "Sub"):
        d1, d2 = map(_direction, e.args)
        d2 = d2 if e.op == "Add" else -d2
        return d1 if d1 == d2 else 0
    if e.op in _BINARY:
        return 0  # a product or quotient of two functions of x
    return _direction(e.args[0]) if ONNX_ACTIVATIONS[e.op].flag("monotone", e.params) else 0


def _nonnegative(e: Expr, x: bool) -> bool:
    """Whether `e >= 0` everywhere, given whether `x >= 0`."""
    if e.op == "x":
        return x
    if e.op == "affine":
        params = (np.asarray(e.params["scale"]), np.asarray(e.params["shift"]))
        return all(np.all(p >= 0) for p in params) and _nonnegative(e.args[0], x)
    if e.op in ("Add", "Mul", "Div"):
        return all(_nonnegative(a, x) for a in e.args)
    return e.op != "Sub" and ONNX_ACTIVATIONS[e.op].flag("nonnegative", e.params)


def _text(e: Expr) -> str:
    if e.op == "x":
        return "x"
    if e.op == "affine":
        s, b = (e.params[k] for k in ("scale", "shift"))
        text = _text(e.args[0])
        text = text if np.all(np.asarray(s) == 1) else f"{_number(s)}·{text}"
        return text if np.all(np.asarray(b) == 0) else f"({text} + {_number(b)})"
    return f"{e.op}({', '.join(map(_text, e.args))})"


def _number(v) -> str:
    return f"{float(np.ravel(v)[0]):.4g}" if np.size(v) == 1 else "c"


def _describe(e: Expr) -> str:
    """The activation's name: an ONNX op applied to `x`, a `NAMED` composite it computes, or the
    expression written out."""
    if e.op in ONNX_ACTIVATIONS and e.args[0].op == "x":
        return e.op
    if all(np.size(v) == 1 for v in _params(e) if not isinstance(v, str)):
        with np.errstate(all="ignore"):
            y = _evaluate(e, _PROBE)
        for name, fn in NAMED.items():
            if np.allclose(y, fn(_PROBE), rtol=1e-5, atol=1e-5):
                return name
    return _text(e)


def _params(e: Expr):
    yield from e.params.values()
    for a in e.args:
        yield from _params(a)


def _pull(e: Expr) -> tuple[Expr, Expr | None]:
    """`(e with its leading affine map replaced by x, that map)` when `e` is a chain of unary
    functions that starts with an affine map of `x`; else `(e, None)`."""
    if e.op == "affine" and e.args[0].op == "x":
        return X, e
    if len(e.args) != 1:
        return e, None
    inner, lead = _pull(e.args[0])
    return dataclasses.replace(e, args=(inner,)), lead


# ---------------------------------------------------------------------- the reader


class _Reader:
    """The state of one import: values by ONNX name, their remaining reads, the builder."""

    def __init__(self, onnx, proto, builder: GraphBuilder, folder: Path | None, name: str):
        self.onnx, self.b, self.folder, self.name = onnx, builder, folder, name
        self.graph = proto.graph
        self.opsets = list(proto.opset_import)
        self.opset = next((o.version for o in self.opsets if o.domain in ("", "ai.onnx")), 1)
        self.stored = {t.name: t for t in self.graph.initializer}
        self.values: dict[str, object] = {}
        self.alias: dict[str, str] = {}  # Identity/Dropout outputs -> the value they pass on
        self.uses: Counter = Counter()
        self.nonnegative_layers: set[int] = set()
        self.consumers: dict[str, list[int]] = {}
        for k, node in enumerate(self.graph.node):
            for n in node.input:
                self.consumers.setdefault(n, []).append(k)
        self.cut, self.outputs, self.entering = _heads(onnx, self.graph, self.consumers)
        for k, node in enumerate(self.graph.node):
            if k in self.cut:
                continue
            if node.op_type in ("Identity", "Dropout"):
                self.alias[node.output[0]] = self.root(node.input[0])
                continue
            self.uses.update(self.root(n) for n in node.input if n)
        self.uses.update(self.root(o) for o in (*self.outputs, *self.entering))
        self.left = Counter(self.uses)

    def root(self, name: str) -> str:
        while name in self.alias:
            name = self.alias[name]
        return name

    # ------------------------------------------------------------------ values

    def fetch(self, name: str):
        """The value `name`; a pending sum or lazy expression read by several nodes is made nodes
        first (so its edges and activation are not duplicated)."""
        if not name:
            return None
        key = self.root(name)
        if key in self.values:
            v = self.values[key]
        elif key in self.stored:
            v = _initializer(self.onnx, self.stored[key], self.folder)
        else:
            raise InputError(
                f"input {name!r} is not produced by an earlier node or initializer (malformed graph)"
            )
        if self.uses[key] > 1 and isinstance(v, (Pending, Lazy)):
            v = self.values[key] = self.b.view(self.tensor(v))
        self.left[key] -= 1
        if self.left[key] <= 0:
            self.values.pop(key, None)
        return v

    def tensor(self, v, what: str = "input") -> Tensor:
        """`v` as a computed tensor (a lazy expression is applied)."""
        if v is None or isinstance(v, np.ndarray):
            raise InputError(f"{what} must be a tensor computed from the model input, got a constant")
        return self.materialize(v) if isinstance(v, Lazy) else v

    def lazy(self, v, key: str) -> Lazy:
        return v if isinstance(v, Lazy) else Lazy(self.tensor(v), key, X)

    def key(self, node, i: int, v) -> str:
        return v.key if isinstance(v, Lazy) else self.root(node.input[i])

    def nonnegative(self, v) -> bool:
        """Whether the computed value `v` is `>= 0` (by the activations recorded on its layers)."""
        if isinstance(v, Lazy):
            return _nonnegative(v.expr, self.nonnegative(v.source))
        return isinstance(v, View) and set(self.b.layers_of(v)) <= self.nonnegative_layers

    # ------------------------------------------------------------------ shapes

    def batchless(self, t):
        """A tensor (or array) without its leading batch axis of size 1 (unchanged if none)."""
        if len(t.shape) < 2 or t.shape[0] != 1:
            return t
        return t[0] if isinstance(t, np.ndarray) else self.b.reshape(t, t.shape[1:])

    def image(self, v, what: str) -> Tensor:
        """An `(N=1, C, H, W)` input as a `(C, H, W)` tensor."""
        t = self.tensor(v)
        if len(t.shape) != 4 or t.shape[0] != 1:
            raise InputError(f"{what} needs an (N=1, C, H, W) input, got shape {t.shape}")
        return self.batchless(t)

    def batched(self, t: Tensor, shape=None) -> Tensor:
        return self.b.reshape(t, (1, *t.shape) if shape is None else tuple(shape))

    # ------------------------------------------------------------------ elementwise

    def affine(self, v, key: str, scale, shift, name: str) -> Lazy:
        """`scale · v + shift` (constants broadcast to `v`'s shape)."""
        lz = self.lazy(v, key)
        scale, shift = np.asarray(scale), np.asarray(shift)
        if np.broadcast_shapes(lz.shape, scale.shape, shift.shape) != lz.shape:
            raise InputError(
                f"a constant of shape {scale.shape if scale.ndim else shift.shape} would broadcast the "
                f"tensor of shape {lz.shape} to a larger shape"
            )
        e = lz.expr
        if e.op == "affine":
            s0, b0 = e.params["scale"], e.params["shift"]
            params, args = {"scale": s0 * scale, "shift": b0 * scale + shift}, e.args
        else:
            params, args = {"scale": scale, "shift": shift}, (e,)
        return dataclasses.replace(lz, expr=Expr("affine", args, params, name))

    def scaled(self, t: Tensor, factor, name: str) -> Tensor:
        """`factor ⊙ t`: the incoming edges scaled; a constant with one entry per channel (or
        node) is a learned parameter, a scalar is structure (see `GraphBuilder.scale`)."""
        learned = np.size(factor) > 1
        factor = self.batchless(np.broadcast_to(factor, t.shape))
        return self.batched(self.b.scale(self.batchless(t), factor, name, learned), t.shape)

    def activate(
        self, t: Tensor, activation: Activation, name: str, shared: bool, nonnegative: bool
    ) -> Tensor:
        v = self.b.activate(self.batchless(t), activation, name, shared)
        self.nonnegative_layers.difference_update(self.b.layers_of(v))
        if nonnegative:
            self.nonnegative_layers.update(self.b.layers_of(v))
        return self.batched(v, t.shape)

    def materialize(self, lz: Lazy) -> Tensor:
        """Apply a lazy expression: see the module docstring."""
        e, src = lz.expr, lz.source
        if _is_linear(e):
            return self.scaled(src, _linear(e)[0], e.name)
        post = None
        if e.op == "affine":
            s = e.params["scale"]
            if np.size(s) == 1 and float(np.ravel(s)[0]) > 0:
                e = dataclasses.replace(e, params={"scale": s, "shift": 0.0})
            else:
                post, e = s, e.args[0]
        e, pre = _pull(e)
        x = src if pre is None else self.scaled(src, pre.params["scale"], pre.name)
        activation = Activation(_describe(e), _direction(e) == 1)
        nonnegative = _nonnegative(e, self.nonnegative(x))
        shared = pre is None and self.uses[lz.key] > lz.reads
        v = self.activate(x, activation, e.name or lz.key, shared, nonnegative)
        return v if post is None else self.scaled(v, post, lz.expr.name)

    # ------------------------------------------------------------------ nodes

    def run(self, input_shape, max_memory: int | Budget | None) -> SignedGraph:
        inputs = [i for i in self.graph.input if i.name not in self.stored]
        if len(inputs) != 1:
            raise InputError(
                f"an ONNX model must have exactly one data input, got {[i.name for i in inputs]}"
            )
        shape = _input_shape(inputs[0], input_shape)
        shapes = _shapes(self.onnx, self.graph, self.opsets, inputs[0], shape)
        where, big = max(shapes.values(), key=lambda v: math.prod(v[1]))
        check_fits(  # the memory guard, before the builder allocates
            import_bytes(sum(math.prod(s) for _, s in shapes.values()), _weight_bytes(self.onnx, self.graph)),
            max_memory,
            f"importing {self.name} with input shape {list(shape)} (its largest tensor: {where}, shape "
            f"{big}, {math.prod(big):,} values)",
            "the input shape (input_shape; --input-shape on the command line) or use a smaller model",
        )
        self.values[inputs[0].name] = self.batched(self.b.input(inputs[0].name, shape[1:]))
        for k, node in enumerate(self.graph.node):
            if k in self.cut:
                continue
            if node.output[0] in self.alias:
                self.check_unused(node, node.output[1:], f"ONNX node {node.name or k!r} ({node.op_type})")
                continue
            where = f"ONNX node {node.name or k!r} ({node.op_type})"
            try:
                self.node(node)
            except ValueError as e:
                raise InputError(f"{where}: {e}") from None
        ends = {o: self.fetch(o) for o in (*self.outputs, *self.entering)}
        if any(ends[o] is None or isinstance(ends[o], np.ndarray) for o in self.outputs):
            raise InputError("an ONNX output is a constant, not computed from the input")
        ends = {o: v for o, v in ends.items() if not isinstance(v, np.ndarray)}
        graph = self.b.build([self.batchless(self.tensor(v)) for v in ends.values()], list(ends))
        cut = [(k, self.graph.node[k]) for k in sorted(self.cut)]
        head = ", ".join(f"{n.op_type} {n.name or k!r}" for k, n in cut if n.op_type in HEAD_OPS)
        named = (("output_head", head),) if head else ()
        return dataclasses.replace(graph, metadata=named + graph.metadata)

    def node(self, node):
        args = [self.fetch(name) for name in node.input]
        attrs = {a.name: _attribute(self.onnx, a) for a in node.attribute}
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            raise InputError(f"unsupported op {op!r} of domain {node.domain!r}")
        if all(a is None or isinstance(a, np.ndarray) for a in args) and not _random(op):
            outs = _run(self.onnx, node, args, self.opset)
        elif op in HANDLERS:
            outs = HANDLERS[op](self, node, args, attrs)
        elif op in REFUSED:
            raise InputError(f"unsupported op {op!r}: {REFUSED[op]}")
        else:
            raise InputError(f"unsupported op {op!r}; supported ops: {', '.join(sorted(HANDLERS))}")
        outs = outs if isinstance(outs, list) else [outs]
        self.check_unused(node, node.output[len(outs) :], "")
        for name, value in zip(node.output, outs):
            if name and self.uses[name]:
                self.values[name] = value

    def check_unused(self, node, names, where: str):
        for extra in names:
            if extra and self.uses[self.root(extra)]:
                prefix = f"{where}: " if where else ""
                raise InputError(
                    f"{prefix}its output {extra!r} is used, but only the first output is supported"
                )

    def const(self, args, i: int, what: str) -> np.ndarray:
        if i >= len(args) or args[i] is None:
            raise InputError(f"missing input {i} ({what})")
        if not isinstance(args[i], np.ndarray):
            raise InputError(f"input {i} ({what}) must be a constant (an initializer or a Constant node)")
        return args[i]


def _after_head() -> set[str]:
    """The ops that may follow an output head: rearrangements, casts, shapes and other heads."""
    return {*HEAD_OPS, *_MOVES, "Identity", "Dropout", "Cast", "CastLike", "Shape", "Size"}


def _downstream(graph, consumers: dict[str, list[int]], outputs) -> list[int]:
    """The nodes that read the values `outputs`, directly or through other nodes, in graph order."""
    seen, stack = set(), list(outputs)
    while stack:
        for j in consumers.get(stack.pop(), ()):
            if j not in seen:
                seen.add(j)
                stack.extend(graph.node[j].output)
    return sorted(seen)


def _heads(onnx, graph, consumers) -> tuple[set[int], list[str], list[str]]:
    """The output heads, set aside: the `HEAD_OPS` nodes followed only by post-processing
    (`_post_processes`), and those nodes (indices). Then the graph's outputs not computed by them,
    and the values that enter them from the rest of the graph (a Softmax's logits; values known
    without the input are dropped)."""
    known, stored, cut = _known(graph), {t.name: t for t in graph.initializer}, set()
    for k, node in enumerate(graph.node):
        if node.op_type not in HEAD_OPS:
            continue
        later, beyond = _after(onnx, graph, consumers, k, known, stored)
        if beyond is None:
            cut.update((k, *later))
    made = {o for k in cut for o in graph.node[k].output}
    outputs = [o.name for o in graph.output if o.name not in made]
    entering = [i for k in sorted(cut) for i in graph.node[k].input if i and i not in made | known]
    return cut, outputs, [i for i in dict.fromkeys(entering) if i not in outputs]


def _after(onnx, graph, consumers, k: int, known: set[str], stored: dict) -> tuple[list[int], int | None]:
    """The nodes downstream of node `k` (a `HEAD_OPS` node), and the first of them that is not
    post-processing (`_post_processes`), or None."""
    later = _downstream(graph, consumers, graph.node[k].output)
    made = {o for j in (k, *later) for o in graph.node[j].output}
    beyond = (j for j in later if not _post_processes(onnx, graph.node[j], made, known, stored))
    return later, next(beyond, None)


def _known(graph) -> set[str]:
    """The values known without the model input: initializers, and the outputs of Shape, Size and
    of the (non-random) nodes whose inputs are all known."""
    known = {t.name for t in graph.initializer}
    for n in graph.node:
        constant = all(i in known for i in n.input if i) and not _random(n.op_type)
        if constant or n.op_type in ("Shape", "Size"):
            known.update(n.output)
    return known


_BIN_AXIS = {"Conv": 1, "MatMul": 0, "Gemm": 0}  # the weight axis a product sums over (Gemm: transB=0)


def _post_processes(onnx, node, made: set[str], known: set[str], stored: dict) -> bool:
    """Whether `node`, downstream of a `HEAD_OPS` node whose downstream values are `made`, is
    post-processing: an `_after_head()` op; arithmetic (Add, Sub, Mul, Div) of those values and
    values `known` without the input (anchors, strides); or the expectation of a distribution over
    its bins, a Conv, MatMul or Gemm of such a value with stored weights 0, 1, …, n−1 along the
    summed axis and no bias (the box decoding of distribution focal loss: GFL, YOLOv6, YOLOv8)."""
    op = node.op_type
    if op in _after_head():
        return True
    if op in ("Add", "Sub", "Mul", "Div"):
        return all(i in made or i in known for i in node.input)
    if op not in _BIN_AXIS or len(node.input) < 2 or node.input[0] not in made or any(node.input[2:]):
        return False
    t = stored.get(node.input[1])
    if t is None or t.data_location == onnx.TensorProto.EXTERNAL:
        return False
    w = onnx.numpy_helper.to_array(t)
    transposed = op == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    axis = 1 if transposed else _BIN_AXIS[op]
    bins = w.shape[axis] if w.ndim > axis else 0
    return bins > 1 and bins == w.size and np.array_equal(w.ravel(), np.arange(bins))


def _random(op: str) -> bool:
    return op.startswith("Random") or op in ("Bernoulli", "Multinomial")


def _attribute(onnx, a):
    v = onnx.helper.get_attribute_value(a)
    return v.decode() if isinstance(v, bytes) else v


def _run(onnx, node, inputs, opset: int) -> list[np.ndarray]:
    """`node` evaluated by the ONNX reference implementation on `inputs`."""
    from onnx.reference import ReferenceEvaluator

    feeds = {name: v for name, v in zip(node.input, inputs) if name}
    h = onnx.helper  # a bare node would be run at the newest opset: wrap it in a graph of the model's
    graph = h.make_graph([node], "node", [h.make_empty_tensor_value_info(n) for n in feeds],
                         [h.make_empty_tensor_value_info(n) for n in node.output if n])  # fmt: skip
    try:
        outs = ReferenceEvaluator(graph, opsets={"": opset}).run(None, feeds)
    except Exception as e:  # noqa: BLE001 - the reference raises many kinds of errors on bad inputs
        raise InputError(f"cannot evaluate it: {type(e).__name__}: {e}") from None
    return [np.asarray(o) for o in outs]


# ---------------------------------------------------------------------- loading


def from_onnx(model, *, dtype=None, input_shape=None, max_memory: int | Budget | None = None) -> SignedGraph:
    """The graph of an ONNX model (a path or an `onnx.ModelProto`; needs the `jaxflow[onnx]` extra).

    The model has one data input `(N, …)`; `input_shape` (the full shape with the batch axis, e.g.
    `(1, 3, 224, 224)`) replaces its dynamic dimensions and must agree with its fixed ones; a
    dynamic batch axis is taken as 1. Ops are read by the handlers in `HANDLERS`; any other op, and
    ops whose signed graph is undefined (a product of two computed tensors, `REFUSED`, a `HEAD_OPS`
    op inside the network), fail with an error naming the op and the node; an output head is set
    aside (the pair `("output_head", …)` of the graph's `metadata` names it). Weights are read per
    tensor as nodes need them (external data too); see `_builder` for the dtype rule. Shapes come
    first: every tensor's shape is inferred (strict ONNX shape inference; an inconsistent model is
    refused, naming the node) and the import's peak memory estimated from them (`import_bytes`)
    before anything is allocated: a model that cannot fit `max_memory` (bytes; None: the memory
    available) is refused, naming its largest tensor.
    """
    onnx = _import_onnx()
    proto, folder, name = _load(onnx, model)
    graph = _Reader(onnx, proto, GraphBuilder(dtype), folder, name).run(input_shape, max_memory)
    del proto
    gc.collect()  # the reader's reference cycles hold the parsed model (VGG-16: 0.5 GB) until then
    return graph


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("reading ONNX files needs the onnx package: pip install 'jaxflow[onnx]'") from None
    return onnx


def _load(onnx, model):
    """The model proto (external data not loaded), the folder its external data lives in and its
    name in messages."""
    if isinstance(model, onnx.ModelProto):
        _check(onnx, model, "the ONNX model")
        return model, None, "the ONNX model"
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    try:  # the checker parses the file on its own: first, so that its copy is freed before ours
        _check(onnx, str(path), str(path))  # (VGG-16: 0.55 GB each, the file's bytes twice as much)
        malformed = None
    except InputError as e:
        malformed = e
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises various errors on bad bytes
        raise InputError(f"{path} is not a readable ONNX model: {type(e).__name__}: {e}") from None
    if malformed is not None:
        raise malformed
    return proto, path.resolve().parent, str(path)


def _check(onnx, model, name: str) -> None:
    """`onnx.checker.check_model(model)`, its complaint an `InputError` naming `name`."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise InputError(f"{name}: malformed ONNX model: {str(e).splitlines()[0]}") from None


def _initializer(onnx, tensor, folder: Path | None) -> np.ndarray:
    """An initializer as an array, external data read from its file (checked) without the rest."""
    if tensor.data_type not in onnx.helper.get_all_tensor_dtypes():
        raise InputError(
            f"initializer {tensor.name!r} has data type {tensor.data_type}, not an ONNX tensor type"
        )
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return onnx.numpy_helper.to_array(tensor)
    info = {e.key: e.value for e in tensor.external_data}
    if folder is None:
        raise InputError(f"initializer {tensor.name!r} has external data; pass the model's path, not a proto")
    path = (folder / info.get("location", "")).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        raise InputError(
            f"initializer {tensor.name!r}: external data {info.get('location')!r} is not a file in {folder}"
        )
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).newbyteorder("<")
    count = math.prod(tensor.dims)
    offset, length = int(info.get("offset", 0)), int(info.get("length", count * dtype.itemsize))
    if length != count * dtype.itemsize or offset < 0 or offset + length > path.stat().st_size:
        raise InputError(
            f"initializer {tensor.name!r}: external data ({length} bytes at offset {offset} of {path.name}, "
            f"{path.stat().st_size} bytes) does not hold a {dtype} tensor of shape {tuple(tensor.dims)}"
        )
    return np.fromfile(path, dtype, count, offset=offset).reshape(tuple(tensor.dims))


def _shapes(onnx, graph, opsets, value_info, shape) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor computed at import whose shape is known, by name: what makes it (the input,
    or `"the output of ONNX node 'name' (op)"`) and its shape. By ONNX shape inference with data
    propagation on a copy of the graph that declares its large weights instead of holding them and
    leaves its outputs undeclared; strict (a model whose shapes it finds inconsistent is refused,
    naming the node) unless the graph has ops of other domains than ONNX's (the import refuses
    them) or the error is about element types (the handlers judge those)."""
    h = onnx.helper
    external = onnx.TensorProto.EXTERNAL
    small = [t for t in graph.initializer if t.data_location != external and t.ByteSize() <= 4096]
    kept = {t.name for t in small}
    declared = [h.make_tensor_value_info(t.name, t.data_type, t.dims) for t in graph.initializer
                if t.name not in kept]  # fmt: skip
    elem = value_info.type.tensor_type.elem_type
    inputs = [h.make_tensor_value_info(value_info.name, elem, shape), *declared]
    outputs = [h.make_empty_tensor_value_info(o.name) for o in graph.output]
    model = h.make_model(h.make_graph(graph.node, "shapes", inputs, outputs, small), opset_imports=opsets)
    strict = all(n.domain in ("", "ai.onnx") for n in graph.node)  # others are refused by `node`
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=strict, data_prop=True).graph
    except Exception as e:  # noqa: BLE001 - inference raises several kinds of errors on a malformed graph
        text = " ".join(str(e).split())
        at = re.search(r"\(op_type:(\S+), node name: (.*?)\): (?:\[\w+\] )?(.*?)(?= \(op_type:|$)", text)
        if at is None or "type" not in at[3].lower():
            where = f"ONNX node {at[2]!r} ({at[1]}): " if at else ""
            raise InputError(f"{where}ONNX shape inference: {at[3] if at else text}") from None
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph  # dtypes: `node` judges
    known = {v.name: _declared_shape(v) for v in [*inferred.value_info, *inferred.output]}
    found = {value_info.name: ("the input", tuple(shape))}
    for k, node in enumerate(graph.node):
        for o in node.output:
            if known.get(o) is not None:
                found[o] = (f"the output of ONNX node {node.name or k!r} ({node.op_type})", known[o])
    return found


def _declared_shape(value_info) -> tuple[int, ...] | None:
    """The shape of a tensor whose dimensions are all known, else None."""
    dims = value_info.type.tensor_type.shape.dim
    if not value_info.type.HasField("tensor_type") or not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(max(d.dim_value, 0) for d in dims)


def import_bytes(values: int, weights: int) -> int:
    """Peak memory of an import: `12 · values + 3 · weights`, for `values` entries of the input and
    computed tensors (the builder numbers each node with an int64 and holds a temporary copy of
    part of a tensor's numbers while it rearranges or checks them) and `weights` bytes of stored
    weights (the parsed model's bytes, the array read from them and its copy on the device: 3
    times the stored bytes at most; the file's bytes while it is parsed, twice, come before)."""
    return 12 * values + 3 * weights


def _weight_bytes(onnx, graph) -> int:
    """Bytes of the stored weights: as stored, or 8 per declared value for external data."""
    total = 0
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            total += math.prod(max(int(d), 0) for d in t.dims) * 8
        else:
            total += t.ByteSize()
    return total


def _input_shape(value_info, input_shape) -> tuple[int, ...]:
    """The input's full shape: declared, with `input_shape` replacing dynamic dimensions."""
    dims = value_info.type.tensor_type.shape.dim
    declared = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    shown = [s if s is not None else d.dim_param or "?" for s, d in zip(declared, dims)]
    name = value_info.name
    if input_shape is not None:
        given = tuple(input_shape)
        if len(given) < 2 or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in given
        ):
            raise InputError(
                f"input_shape must be positive integers (N, C, ...) with N = 1, got {input_shape!r}"
            )
        if given[0] != 1:
            raise InputError(f"input_shape must have batch size 1, got {given}")
        if len(given) != len(declared) or any(d not in (None, s) for d, s in zip(declared[1:], given[1:])):
            raise InputError(f"input_shape {given} disagrees with ONNX input {name!r} of shape {shown}")
        return tuple(int(s) for s in given)
    if len(declared) < 2 or any(s is None for s in declared[1:]):
        raise InputError(
            f"ONNX input {name!r} has shape {shown} with dynamic (symbolic or unknown) dimensions; give "
            "the full input shape: input_shape=(1, C, H, W) (on the command line: --input-shape 1,C,H,W)"
        )
    if declared[0] not in (None, 1):
        raise InputError(f"ONNX input {name!r} has batch size {declared[0]}; only batch size 1 is supported")
    return (1, *declared[1:])


# ---------------------------------------------------------------------- handlers: elementwise


@handles(*ONNX_ACTIVATIONS)
def _activation(r: _Reader, node, args, attrs):
    """An elementwise activation: lazy until read (parameters from attributes or constant inputs)."""
    spec = ONNX_ACTIVATIONS[node.op_type]
    params = {k: attrs.get(k, v) for k, v in spec.defaults.items()}
    inputs = {"PRelu": ("slope",), "Clip": ("min", "max")}.get(node.op_type, ())
    params.update(
        {
            k: r.const(args, i + 1, k)
            for i, k in enumerate(inputs)
            if i + 1 < len(args) and args[i + 1] is not None
        }
    )
    lz = r.lazy(args[0], r.key(node, 0, args[0]))
    expr = Expr(node.op_type, (lz.expr,), params, node.output[0])
    return dataclasses.replace(lz, expr=expr)


@handles(*HEAD_OPS)
def _inside(r: _Reader, node, args, attrs):
    """A `HEAD_OPS` node that a later layer reads (one that ends the model is set aside): refused."""
    stored = {t.name: t for t in r.graph.initializer}
    k = next(k for k, n in enumerate(r.graph.node) if n == node)
    later = r.graph.node[_after(r.onnx, r.graph, r.consumers, k, _known(r.graph), stored)[1]]
    raise InputError(
        f"{node.op_type} inside the network (its output reaches node {later.name!r} ({later.op_type})): "
        f"{HEAD_OPS[node.op_type]}; only an output head (followed by nothing but rearrangements and "
        "post-processing: ArgMax, TopK, arithmetic with constants, the expectation over bins) is set aside"
    )


@handles("Neg")
def _neg(r: _Reader, node, args, attrs):
    return r.affine(args[0], r.key(node, 0, args[0]), -1.0, 0.0, node.output[0])


@handles("Add", "Sub", "Mul", "Div")
def _arithmetic(r: _Reader, node, args, attrs):
    """With a constant: a bias (dropped) or a scale of the incoming edges. Of one tensor's
    functions: a lazy expression. Of two tensors: a residual sum, a channel gate, or refused."""
    op, (a, b), out = node.op_type, args, node.output[0]
    for v, c, i in ((a, b, 0), (b, a, 1)):
        if isinstance(c, np.ndarray) and not isinstance(v, np.ndarray):
            if op == "Div" and i == 1:
                raise InputError("a constant divided by a computed tensor (c / x) is not supported")
            scale, shift = {
                "Add": (1.0, c), "Sub": (1.0, -c) if i == 0 else (-1.0, c), "Mul": (c, 0.0),
                "Div": (1.0 / np.where(c == 0, np.nan, c), 0.0),
            }[op]  # fmt: skip
            if np.any(np.isnan(scale)):
                raise InputError("division by a constant with zero entries")
            return r.affine(v, r.key(node, i, v), scale, shift, out)
    ka, kb = r.key(node, 0, a), r.key(node, 1, b)
    if ka == kb:  # two functions of the same tensor
        la, lb = r.lazy(a, ka), r.lazy(b, kb)
        return Lazy(la.source, ka, Expr(op, (la.expr, lb.expr), name=out), la.reads + lb.reads)
    if op in ("Add", "Sub"):
        return _residual(r, r.tensor(a), r.tensor(b), out, 1.0 if op == "Add" else -1.0)
    if op == "Mul":
        return _gate(r, node, a, b)
    raise InputError(
        f"Div of two tensors computed from the input ({node.input[0]!r} and {node.input[1]!r}): a "
        "quotient of two computed tensors has no fixed edge weights, so its signed graph is undefined"
    )


def _residual(r: _Reader, a: Tensor, b: Tensor, name: str, sign: float) -> Tensor:
    """`a ± b`, the lower-rank one broadcast first (ONNX broadcasting aligns trailing axes)."""
    shapes = (a.shape, b.shape)
    if len(a.shape) != len(b.shape):
        full = np.broadcast_shapes(*shapes) if _broadcastable(*shapes) else None
        if full is None:
            raise InputError(f"cannot add tensors of shapes {a.shape} and {b.shape} (not broadcastable)")
        a, b = (View(np.broadcast_to(r.b.view(t).nodes, full)) if t.shape != full else t for t in (a, b))
    shape = a.shape if math.prod(a.shape) >= math.prod(b.shape) else b.shape
    return r.batched(r.b.add(r.batchless(a), r.batchless(b), name, sign), shape)


def _broadcastable(*shapes) -> bool:
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        return False
    return True


def _gate(r: _Reader, node, a, b) -> Tensor:
    """`x ⊙ g` with a non-negative gate `g` broadcast over `x`, or of `x`'s shape and computed from
    `x` (squeeze-excitation): a new layer fed by identity edges from `x` and broadcast edges from
    `g`, activation `"gate"`, monotone when `x` is non-negative."""
    ta, tb = (r.b.view(r.tensor(v)) for v in (a, b))
    if ta.shape != tb.shape:
        (x, g) = (
            (ta, tb) if _broadcastable(tb.shape, ta.shape) and ta.nodes.size > tb.nodes.size else (tb, ta)
        )
        gate = np.broadcast_shapes(x.shape, g.shape) == x.shape
    else:
        gate = r.b.depends(tb, ta) or r.b.depends(ta, tb)
        x, g = (ta, tb) if r.b.depends(tb, ta) else (tb, ta)
    if not gate:
        raise InputError(
            f"Mul of two tensors computed from the input ({node.input[0]!r} and {node.input[1]!r}, shapes "
            f"{ta.shape} and {tb.shape}) that is neither a function of one tensor nor a gate (one factor "
            f"computed from the other or broadcast over it): {_BILINEAR}"
        )
    if not r.nonnegative(g):
        raise InputError(
            f"Mul of computed tensors of shapes {ta.shape} and {tb.shape}: a gate must be non-negative "
            f"(end in Sigmoid, HardSigmoid, Relu, …) so that it keeps the gated tensor's signs; "
            f"otherwise {_BILINEAR}"
        )
    monotone = r.nonnegative(x)
    g = View(np.broadcast_to(g.nodes, x.shape))
    gated = r.b.gate(r.batchless(x), r.batchless(g), node.output[0], Activation("gate", monotone))
    if monotone:
        r.nonnegative_layers.update(r.b.layers_of(gated))
    return r.batched(gated, x.shape)


@handles("BatchNormalization")
def _batch_norm(r: _Reader, node, args, attrs):
    """`γ (x − μ)/√(σ² + ε) + β`: an affine map per channel (axis 1), lazy."""
    if attrs.get("training_mode", 0):
        raise InputError("training_mode=1 is not supported (export the model in inference mode)")
    gamma, beta, mean, var = (r.const(args, i, w) for i, w in enumerate(("scale", "B", "mean", "var"), 1))
    rank = len(args[0].shape)
    if rank < 2:
        raise InputError(f"BatchNormalization needs an (N, C, …) input, got shape {args[0].shape}")
    channel = lambda v: np.reshape(v, (1, -1, *(1,) * (rank - 2)))
    s = gamma / np.sqrt(var + np.asarray(attrs.get("epsilon", 1e-5), var.dtype))
    return r.affine(args[0], r.key(node, 0, args[0]), channel(s), channel(beta - mean * s), node.output[0])


@handles("LayerNormalization", "GroupNormalization", "InstanceNormalization")
def _normalization(r: _Reader, node, args, attrs):
    """The normalization as a (non-monotone) activation of the layers holding the input, then its
    affine part as a lazy scale (per-channel edges when applied)."""
    op, x = node.op_type, r.tensor(args[0])
    rank = len(x.shape)
    scale = r.const(args, 1, "scale")
    bias = args[2] if len(args) > 2 and args[2] is not None else np.zeros(())
    if op != "LayerNormalization":  # per channel (axis 1); GroupNormalization-18 gives one per group
        c = x.shape[1]
        scale, bias = (
            np.repeat(v, c // v.size) if v.size not in (1, c) else v for v in (scale, np.asarray(bias))
        )
        scale, bias = (np.reshape(v, (1, -1, *(1,) * (rank - 2))) for v in (scale, bias))
    shared = r.uses[r.root(node.input[0])] > 1
    v = r.activate(x, Activation(op, False), node.output[0], shared, False)
    return r.affine(v, f"{node.output[0]}:normalized", scale, bias, node.output[0])


@handles("Cast", "CastLike")
def _cast(r: _Reader, node, args, attrs):
    """A computed tensor cast to a floating type: unchanged."""
    like = args[1] if node.op_type == "CastLike" and isinstance(args[1], np.ndarray) else None
    to = like.dtype if like is not None else np.float32
    to = r.onnx.helper.tensor_dtype_to_np_dtype(attrs["to"]) if node.op_type == "Cast" else to
    if not np.issubdtype(to, np.floating):
        raise InputError("a computed tensor cast to a non-floating type is not supported")
    return args[0]


# ---------------------------------------------------------------------- handlers: linear maps


def _window(attrs, shape, kernel) -> dict:
    """Stride, padding and dilation of a Conv or pool from ONNX attributes (incl. `auto_pad`)."""
    stride = tuple(attrs.get("strides", (1, 1)))
    dilation = tuple(attrs.get("dilations", (1, 1)))
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for a in range(2):
            span = (math.ceil(shape[a] / stride[a]) - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1
            total = max(0, span - shape[a])
            small, large = total // 2, total - total // 2
            pads.append((small, large) if auto == "SAME_UPPER" else (large, small))
    elif auto in ("NOTSET", "VALID"):
        p = attrs.get("pads", (0, 0, 0, 0)) if auto == "NOTSET" else (0, 0, 0, 0)
        if len(p) != 4:
            raise InputError(f"pads must have 4 entries for a 2-D window, got {list(p)}")
        pads = [(p[0], p[2]), (p[1], p[3])]
    else:
        raise InputError(f"unknown auto_pad {auto!r}")
    if attrs.get("ceil_mode", 0):  # extra end padding gives the ceil-mode outputs
        for a in range(2):
            span = shape[a] + sum(pads[a]) - dilation[a] * (kernel[a] - 1) - 1
            pads[a] = (pads[a][0], pads[a][1] + (-span) % stride[a])
    return {"stride": stride, "padding": tuple(pads), "dilation": dilation}


@handles("Conv")
def _conv(r: _Reader, node, args, attrs):
    """Kernel edges (`Conv2d`); the bias is dropped."""
    x, kernel = r.image(args[0], "a 2-D convolution"), r.const(args, 1, "weight")
    if kernel.ndim != 4:
        raise InputError(f"only 2-D convolutions are supported, got a weight of shape {kernel.shape}")
    window = _window(attrs, x.shape[1:], kernel.shape[2:])
    return r.batched(r.b.conv(x, kernel, node.output[0], groups=attrs.get("group", 1), **window))


@handles("ConvTranspose")
def _conv_transpose(r: _Reader, node, args, attrs):
    """Kernel edges of the transposed convolution (`ConvTranspose2d`); the bias is dropped."""
    x, kernel = r.image(args[0], "a 2-D transposed convolution"), r.const(args, 1, "weight")
    if kernel.ndim != 4:
        raise InputError(
            f"only 2-D transposed convolutions are supported, got a weight of shape {kernel.shape}"
        )
    if "output_shape" in attrs or attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise InputError("output_shape and auto_pad SAME_* are not supported (export with explicit pads)")
    window = _window({k: v for k, v in attrs.items() if k != "auto_pad"}, x.shape[1:], kernel.shape[2:])
    extra = tuple(attrs.get("output_padding", (0, 0)))
    p = r.b.conv_transpose(
        x, kernel, node.output[0], groups=attrs.get("group", 1), output_padding=extra, **window
    )
    return r.batched(p)


@handles("Gemm")
def _gemm(r: _Reader, node, args, attrs):
    """`alpha · A Bᵀ` (or `A B`) with a constant `B`: dense edges; `C` is a bias."""
    a = r.tensor(args[0], "input 0 (A)")
    w = r.const(args, 1, "B")
    if len(a.shape) != 2 or 1 not in a.shape or w.ndim != 2:
        raise InputError(f"Gemm needs A of shape (1, k) and a 2-D B, got shapes {a.shape} and {w.shape}")
    w = w if attrs.get("transB", 0) else w.T
    alpha = attrs.get("alpha", 1.0)
    p = r.b.dense(a, w if alpha == 1 else alpha * w, node.output[0])
    return r.batched(p)


@handles("MatMul")
def _matmul(r: _Reader, node, args, attrs):
    """A product with a constant matrix: dense edges, or a 1×1 convolution when it acts on one
    axis at every position (a Linear layer on channels-last tensors). Of two computed tensors
    (attention): refused."""
    a, b = args
    if not isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
        raise InputError(
            f"MatMul of two tensors computed from the input ({node.input[0]!r} and {node.input[1]!r}): "
            f"{_BILINEAR}"
        )
    const, i = (b, 0) if isinstance(b, np.ndarray) else (a, 1)
    x = r.tensor(args[i])
    w = const.reshape(const.shape[-2:]) if const.ndim > 2 and math.prod(const.shape[:-2]) == 1 else const
    if w.ndim != 2 or len(x.shape) < max(const.ndim, 1 + i):
        raise InputError(
            f"only products with a 2-D constant are supported, got shapes {x.shape} and {const.shape}"
        )
    return r.b.linear(x, w if i == 0 else w.T, len(x.shape) - 1 - i, node.output[0])


@handles("MaxPool", "AveragePool")
def _pool(r: _Reader, node, args, attrs):
    """`Pool`: an average's positive edges, or edges of weight 1 from a max's window."""
    x = r.image(args[0], "2-D pooling")
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise InputError(f"only 2-D pooling is supported, got kernel_shape {list(kernel)}")
    window = _window(attrs, x.shape[1:], kernel)
    if node.op_type == "MaxPool":
        return r.batched(r.b.pool(x, node.output[0], kernel, mode="max", **window))
    include = bool(attrs.get("count_include_pad", 0))
    if attrs.get("ceil_mode", 0) and include:
        raise InputError("ceil_mode=1 with count_include_pad=1 is not supported")
    return r.batched(r.b.pool(x, node.output[0], kernel, mode="avg", count_include_pad=include, **window))


@handles("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(r: _Reader, node, args, attrs):
    """A `Pool` over all of `(H, W)` (none over 1×1)."""
    x = r.image(args[0], "2-D pooling")
    mode = "avg" if node.op_type == "GlobalAveragePool" else "max"
    return r.batched(r.b.reduce(x, (1, 2), node.output[0], mode))


@handles("ReduceMean", "ReduceSum", "ReduceMax")
def _reduce(r: _Reader, node, args, attrs):
    """A global pool over `(H, W)` (e.g. adaptive average pooling to 1×1), else `Sparse` edges."""
    x = r.tensor(args[0])
    rank = len(x.shape)
    given = args[1] if len(args) > 1 and args[1] is not None else attrs.get("axes")
    if given is None or len(given) == 0:
        if attrs.get("noop_with_empty_axes", 0):
            return x
        given = range(rank)
    axes = sorted({int(a) % rank for a in np.ravel(given)})
    keep = tuple(1 if a in axes else s for a, s in enumerate(x.shape))
    out = keep if attrs.get("keepdims", 1) else tuple(s for a, s in enumerate(x.shape) if a not in axes)
    batch = rank > 1 and x.shape[0] == 1
    inner = [a - 1 for a in axes if a > 0] if batch else axes
    mode = {"ReduceMean": "avg", "ReduceSum": "sum", "ReduceMax": "max"}[node.op_type]
    reduced = r.b.reduce(r.batchless(x) if batch else x, inner, node.output[0], mode)
    return r.b.reshape(reduced, out)


@handles("Resize", "Upsample")
def _resize(r: _Reader, node, args, attrs):
    """Nearest or linear interpolation of `(H, W)`: positive `Sparse` edges with the weights."""
    x = r.image(args[0], f"{node.op_type}")
    mode = attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear", "bilinear") or attrs.get("antialias", 0):
        raise InputError(f"only nearest and linear modes without antialias are supported, got mode {mode!r}")
    if attrs.get("axes") is not None or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise InputError("the axes and keep_aspect_ratio_policy attributes are not supported")
    names = ("roi", "scales", "sizes") if node.op_type == "Resize" and r.opset >= 11 else ("scales",)
    named = {k: v for k, v in zip(names, args[1:]) if v is not None and np.size(v)}
    scales, sizes = named.get("scales", attrs.get("scales")), named.get("sizes")
    full = (1, *x.shape)
    if sizes is not None:
        out, scales = tuple(int(s) for s in sizes), np.asarray(sizes, float) / full
    elif scales is not None:
        scales = np.asarray(scales, float)
        out = tuple(int(math.floor(n * s)) for n, s in zip(full, scales))
    else:
        raise InputError("needs scales or sizes")
    if len(out) != 4 or out[:2] != full[:2]:
        raise InputError(f"only the spatial axes (H, W) may be resized, got output shape {out}")
    ctm = (
        "asymmetric"
        if node.op_type == "Upsample"
        else attrs.get("coordinate_transformation_mode", "half_pixel")
    )
    nearest = "floor" if node.op_type == "Upsample" else attrs.get("nearest_mode", "round_prefer_floor")
    mats = [
        _interpolation(full[a], out[a], scales[a], "nearest" if mode == "nearest" else "linear", ctm, nearest)
        for a in (2, 3)
    ]
    (oh, ih), (ow, iw) = (np.nonzero(m) for m in mats)
    c, (h, w), (ho, wo) = x.shape[0], x.shape[1:], out[2:]
    ch = np.arange(c)[:, None, None]
    rows = (ch * ho + oh[None, :, None]) * wo + ow[None, None, :]
    cols = (ch * h + ih[None, :, None]) * w + iw[None, None, :]
    weight = mats[0][oh, ih][None, :, None] * mats[1][ow, iw][None, None, :]
    shape = (c, ho, wo)
    p = r.b.linear_map(
        x, shape, rows.ravel(), cols.ravel(), np.broadcast_to(weight, rows.shape).ravel(), node.output[0]
    )
    return r.batched(p)


def _interpolation(n: int, m: int, scale: float, mode: str, ctm: str, nearest: str) -> np.ndarray:
    """`(m, n)`: the weights of ONNX Resize along one axis of `n` inputs and `m` outputs."""
    i = np.arange(m, dtype=float)
    length = n * scale  # the output length before rounding, as ONNX defines the coordinates
    coords = {
        "half_pixel": (i + 0.5) / scale - 0.5,
        "pytorch_half_pixel": (i + 0.5) / scale - 0.5 if length != 1 else np.full(m, -0.5),
        "align_corners": i * (n - 1) / (length - 1) if length != 1 else np.zeros(m),
        "asymmetric": i / scale,
        "tf_half_pixel_for_nearest": (i + 0.5) / scale,
    }
    if ctm not in coords:
        raise InputError(
            f"coordinate_transformation_mode {ctm!r} is not supported; use one of {sorted(coords)}"
        )
    x = coords[ctm]
    mat = np.zeros((m, n))
    if mode == "nearest":
        rounding = {
            "round_prefer_floor": lambda v: np.ceil(v - 0.5),
            "round_prefer_ceil": lambda v: np.floor(v + 0.5),
            "floor": np.floor,
            "ceil": np.ceil,
        }
        if nearest not in rounding:
            raise InputError(f"nearest_mode {nearest!r} is not supported")
        mat[np.arange(m), np.clip(rounding[nearest](x), 0, n - 1).astype(int)] = 1.0
        return mat
    x = np.clip(x, 0, n - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    np.add.at(mat, (np.arange(m), lo), 1 - (x - lo))
    np.add.at(mat, (np.arange(m), hi), x - lo)
    return mat


# ---------------------------------------------------------------------- handlers: rearrangements

# Ops that only move or copy entries (their data inputs; the others must be constants): evaluated
# by the reference implementation on arrays of node numbers, so they add no nodes and no edges.
_MOVES = {
    "Reshape": (0,), "Flatten": (0,), "Transpose": (0,), "Squeeze": (0,), "Unsqueeze": (0,),
    "Slice": (0,), "Split": (0,), "Gather": (0,), "GatherND": (0,), "GatherElements": (0,),
    "Expand": (0,), "Tile": (0,), "DepthToSpace": (0,), "SpaceToDepth": (0,), "Concat": None,
    "Where": (1, 2),
}  # fmt: skip


@handles(*_MOVES)
def _move(r: _Reader, node, args, attrs):
    """A view of existing nodes (no edges); a constant zero operand is a structural zero."""
    data = _MOVES[node.op_type] or range(len(args))
    computed = [i for i in data if not isinstance(args[i], np.ndarray)]
    inputs = list(args)
    for i in range(len(args)):
        if i in computed:
            continue
        if i in data and np.any(args[i]):
            raise InputError(
                f"input {i} ({node.input[i]!r}) is a non-zero constant joined to computed tensors: a "
                "constant tensor (such as a class token or position embedding) has no nodes in the "
                "signed graph"
            )
        if i in data:
            inputs[i] = np.full(np.shape(args[i]), -1, np.int64)
        elif args[i] is not None:
            r.const(args, i, "an index or shape")
    tensors = {i: r.tensor(args[i]) for i in computed}
    run = lambda arrays: _run(r.onnx, node, [arrays.get(i, v) for i, v in enumerate(inputs)], r.opset)
    if len(computed) == 1 and len(node.output) == 1 and set(data) == {computed[0]}:
        (i,) = computed
        return r.b.rearrange(tensors[i], lambda nodes: run({i: nodes})[0])
    outs = run({i: r.b.view(t).nodes for i, t in tensors.items()})
    return [View(o.astype(np.int64)) for o in outs]


@handles("Pad")
def _pad(r: _Reader, node, args, attrs):
    """Zero padding: a border of structural zeros (a following Conv or pool takes it as padding)."""
    mode = attrs.get("mode", "constant")
    value = args[2] if len(args) > 2 and args[2] is not None else attrs.get("value", 0.0)
    if mode != "constant" or np.any(np.asarray(value) != 0):
        raise InputError(
            f"only zero padding (mode 'constant', value 0) is supported, got mode {mode!r}, value {value}"
        )
    nodes = r.b.view(r.tensor(args[0])).nodes
    pads = np.asarray(r.const(args, 1, "pads") if r.opset >= 11 else attrs["pads"], np.int64)
    axes = args[3] if len(args) > 3 and args[3] is not None else range(nodes.ndim)
    axes = [int(a) % nodes.ndim for a in np.ravel(axes)]
    widths = [(0, 0)] * nodes.ndim
    for a, lo, hi in zip(axes, pads[: len(axes)], pads[len(axes) :]):
        widths[a] = (int(lo), int(hi))
    grown = np.pad(nodes, [(max(lo, 0), max(hi, 0)) for lo, hi in widths], constant_values=-1)
    return View(grown[tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(widths, grown.shape))])


@handles("Shape", "Size")
def _shape(r: _Reader, node, args, attrs):
    """The full ONNX shape (size) of a computed tensor, a constant."""
    shape = np.array(args[0].shape, np.int64)
    if node.op_type == "Size":
        return np.array(shape.prod(), np.int64)
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return shape[start:end]
