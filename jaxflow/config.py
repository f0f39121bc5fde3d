"""Typed configs loaded from TOML and validated with one clear message per problem.

A config is a frozen dataclass; `parse(cls, table)` checks unknown keys, types and nested
tables, then the dataclass's own `__post_init__` checks values (raise `ConfigError` naming the
key, or an `InputError` of `jaxflow._checks` naming the field, which becomes one naming the key).
`load_config(path, cls)` reads a TOML file. `parse` builds any frozen dataclass so: a command's
tables may be the typed objects of a core (`jaxflow sweep`'s are those of `linear.sweep`).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from ._checks import InputError, check_choice, check_count, check_positive, check_shape, check_widths

T = TypeVar("T")


class ConfigError(InputError):
    """A config value is missing, unknown, of the wrong type or out of range."""


def fail(key: str, message: str):
    """Raise `ConfigError` for `key`."""
    raise ConfigError(f"config key '{key}': {message}")


def require(key: str, check, value, **options):
    """`check(value, key, **options)`, a check of `jaxflow._checks`: its `InputError` is raised as a
    `ConfigError` naming the config key (or the entry of it) that is wrong."""
    try:
        return check(value, key, **options)
    except InputError as e:
        fail(e.argument, e.problem)


def require_counts(config, *names: str, minimum: int = 1) -> None:
    """Each of `config`'s fields `names` that is set is an integer `>= minimum` (`check_count`)."""
    for name in names:
        if getattr(config, name) is not None:
            require(name, check_count, getattr(config, name), minimum=minimum)


def require_positive(config, *names: str) -> None:
    """Each of `config`'s fields `names` is a finite number `> 0` (`check_positive`)."""
    for name in names:
        require(name, check_positive, getattr(config, name))


def require_singular_values(singular_values, widths, key: str = "task.singular_values") -> None:
    """`singular_values` fit the map of networks of `widths`: at most `min(d_0, d_h)` of them."""
    d_in, d_out = widths[0], widths[-1]
    if len(singular_values) > min(d_in, d_out):
        fail(
            key,
            f"a ({d_out}, {d_in}) map has at most {min(d_in, d_out)} singular values, "
            f"got {list(singular_values)}",
        )


def _check(value: Any, tp: Any, key: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) == 1:  # `X | None`: report the error inside X
            return _check(value, arms[0], key)
        tables = [a for a in arms if dataclasses.is_dataclass(a)]
        if isinstance(value, dict) and len(tables) == 1:  # `str | Table`: a table is the table's
            return _check(value, tables[0], key)
        for arm in (a for a in args if a is not type(None)):
            try:
                return _check(value, arm, key)
            except ConfigError:
                pass
        fail(key, f"expected {_name(tp)}, got {value!r}")
    if origin is Literal:
        return require(key, check_choice, value, choices=args)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(key, f"must be a table, got {value!r}")
        return parse(tp, value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            fail(key, f"must be a list, got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                fail(key, f"must be a list of {len(args)} items, got {value!r}")
            return tuple(_check(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            fail(key, f"must be a table, got {value!r}")
        return {k: _check(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(key, f"must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, f"must be an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            fail(key, f"must be a {tp.__name__}, got {value!r}")
        return value
    raise TypeError(f"config type {tp!r} of '{key}' is not supported")


def _name(tp) -> str:
    if get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in get_args(tp) if a is not type(None))
    if dataclasses.is_dataclass(tp):
        return f"a table {{{', '.join(f.name for f in dataclasses.fields(tp))}}}"
    return getattr(tp, "__name__", str(tp))


def parse(cls: type[T], table: dict, where: str = "") -> T:
    """Build the dataclass `cls` from a TOML table, checking keys and types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    prefix = f"{where}." if where else ""
    unknown = sorted(set(table) - set(fields))
    if unknown:
        fail(prefix + unknown[0], f"unknown key; allowed keys here are {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in table:
            kwargs[name] = _check(table[name], hints[name], prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fail(prefix + name, "missing (required)")
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a value check in `__post_init__`: name the key from the top
        raise ConfigError(str(e).replace("config key '", f"config key '{prefix}", 1)) from None
    except (TypeError, ValueError) as e:
        if hasattr(e, "argument"):  # a check of `jaxflow._checks` in a type's own `__post_init__`
            fail(prefix + e.argument, e.problem)
        raise ConfigError(f"config '{where or cls.__name__}': {e}") from None


def load_toml(path: str | Path) -> dict:
    """Read a TOML file; unreadable or malformed files raise `ConfigError` naming the file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_config(path: str | Path, cls: type[T]) -> T:
    """`parse(cls, load_toml(path))`."""
    return parse(cls, load_toml(path))


def check_input_shape(shape, key: str = "input_shape") -> tuple[int, ...]:
    """A model's full input shape, batch axis first (e.g. `(1, 3, 224, 224)`): two or more
    positive integers."""
    what = "the full input shape, batch axis first (e.g. [1, 3, 224, 224])"
    return require(key, check_shape, shape, min_dims=2, what=what)


def parse_input_shape(text: str, option: str = "--input-shape") -> tuple[int, ...]:
    """`"1,3,224,224"` → `(1, 3, 224, 224)` (spaces and enclosing brackets allowed); anything else
    raises `ConfigError` naming `option`."""
    body = text.strip().strip("()[]").strip()
    parts = [p.strip() for p in body.split(",")] if body else []
    if len(parts) < 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"{option} must be the full input shape as comma-separated positive integers, batch axis "
            f"first (e.g. 1,3,224,224), got {text!r}"
        )
    return tuple(int(p) for p in parts)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A small digits classifier (`jaxflow.train.make_model`): `"mlp"` is Linear+ReLU layers of
    widths `hidden`; `"cnn"` is, per entry of `channels`, a `kernel_size` Conv2d (same padding) +
    ReLU + 2×2 pooling (`pool`), then one Linear layer to the 10 classes."""

    kind: Literal["mlp", "cnn"] = "mlp"
    hidden: tuple[int, ...] = (32,)
    channels: tuple[int, ...] = (8,)
    kernel_size: int = 3
    pool: Literal["max", "avg"] = "max"

    def __post_init__(self):
        for name in ("hidden", "channels"):
            require(name, check_shape, getattr(self, name), what="layer widths")
        if self.kind == "cnn" and not 1 <= len(self.channels) <= 3:
            fail("channels", f"an 8x8 image allows 1 to 3 conv+pool blocks, got {list(self.channels)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            fail("kernel_size", f"must be a positive odd integer (same padding), got {self.kernel_size}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optax training on scikit-learn's digits (`jaxflow.train.train`), with a checkpoint at
    initialization, every `checkpoint_every` epochs and at the end."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 3e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    checkpoint_every: int = 5
    test_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self):
        require_counts(self, "epochs", "batch_size", "checkpoint_every")
        require_positive(self, "learning_rate")
        if not 0 < self.test_fraction < 1:
            fail("test_fraction", f"must be in (0, 1), got {self.test_fraction}")


@dataclasses.dataclass(frozen=True)
class StudyFrustrationConfig:
    """Frustration in a study: `jaxflow.frustration` with the estimator `method` (a name, with
    `restarts`/`tol`/`batch_size` as its effort, unset: the library's defaults for the graph; or a
    table of an estimator's fields, `{name = "anneal", sweeps = 400}`), against `null_samples`
    sign-shuffled null models of kind `null_model`; with `robustness`, the z-score at each rung
    of the ladder and under an independent estimator (`experiments.nulls.zscore_robustness`)."""

    method: Literal["auto", "ladder", "layerwise", "anneal", "greedy", "exact"] | dict[str, Any] = "auto"
    restarts: int | None = None
    tol: float | None = None
    batch_size: int | None = None
    null_samples: int = 64
    null_model: Literal["block", "kernel", "global", "flip"] = "block"
    robustness: bool = True

    def __post_init__(self):
        require_counts(self, "restarts", "batch_size")
        if self.tol is not None and not 0 <= self.tol < 1:
            fail("tol", f"must be in [0, 1) (a fraction of Σ|a| per sweep), got {self.tol}")
        require_counts(self, "null_samples", minimum=2)  # a reference distribution


@dataclasses.dataclass(frozen=True)
class StudyMonotonicityConfig:
    """Near-monotonicity in a study: scores on `inputs` test inputs, `perturbations` orthant
    perturbations per input and norm in `sizes`, `null_samples` sign-shuffled networks, and the
    active subnetworks of `active_inputs` inputs. Each Jacobian score takes `lines` random rows
    of the Jacobian per input (every row when it has no more: exact; `monotonicity_score`'s
    `lines`). Jacobian rows and perturbed evaluations are batched to about `memory_mb` MiB of
    working memory (`monotonicity_score`'s `memory_budget`)."""

    inputs: int = 256
    sizes: tuple[float, ...] = (0.01, 0.1, 1.0)
    perturbations: int = 8
    null_samples: int = 16
    active_inputs: int = 16
    lines: int = 64
    memory_mb: int = 512

    def __post_init__(self):
        require_counts(self, "inputs", "perturbations", "active_inputs", "memory_mb")
        require_counts(self, "null_samples", minimum=2)  # a reference distribution
        require_counts(self, "lines", minimum=2)  # a sample variance
        if not self.sizes or any(not e > 0 for e in self.sizes):
            fail("sizes", f"must be a non-empty list of perturbation norms > 0, got {list(self.sizes)}")


@dataclasses.dataclass(frozen=True)
class StudyDLNConfig:
    """Deep linear networks along the gradient flow: `inits` initializations (`scheme`, `scale`)
    of `widths` on the whitened task `Σ_yx = diag(singular_values)`, saved at `times` equally
    spaced times in `[0, t1]`; the frustration of `A(t)` against `null_samples` null models."""

    widths: tuple[int, ...] = (4, 8, 8, 4)
    singular_values: tuple[float, ...] = (4.0, 3.0, 2.0, 1.0)
    inits: int = 8
    scheme: Literal["gaussian", "orthogonal"] = "gaussian"
    scale: float = 0.1
    t1: float = 20.0
    times: int = 41
    null_samples: int = 32

    def __post_init__(self):
        require("widths", check_widths, self.widths)
        require_singular_values(self.singular_values, self.widths, "singular_values")
        if any(v < 0 for v in self.singular_values):
            fail("singular_values", f"must be >= 0, got {list(self.singular_values)}")
        require_counts(self, "inits", "times", "null_samples", minimum=2)
        require_positive(self, "scale", "t1")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """`jaxflow study`: frustration and near-monotonicity of one network against null models.

    Exactly one source: `model` (a digits classifier trained here with `train`, followed along
    its checkpoints), `model_file` (an ONNX or npz file, relative to the config file; with
    `input_shape`, the full input shape for a model whose input has dynamic dimensions) or `dln`
    (deep linear networks along the gradient flow)."""

    name: str = "study"
    seed: int = 0
    model: ModelConfig | None = None
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    model_file: str | None = None
    input_shape: tuple[int, ...] | None = None
    dln: StudyDLNConfig | None = None
    frustration: StudyFrustrationConfig = dataclasses.field(default_factory=StudyFrustrationConfig)
    monotonicity: StudyMonotonicityConfig = dataclasses.field(default_factory=StudyMonotonicityConfig)

    def __post_init__(self):
        sources = [k for k in ("model", "model_file", "dln") if getattr(self, k) is not None]
        if len(sources) != 1:
            fail(
                "model",
                f"a study needs exactly one of [model], model_file or [dln], got {sources or 'none'}",
            )
        if self.input_shape is not None:
            if self.model_file is None:
                fail("input_shape", "is only allowed with model_file (the shape of that model's input)")
            check_input_shape(self.input_shape)


def onnx_shape(path, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """`shape` for an ONNX file; None for other files (an npz model's shapes are its arrays')."""
    return shape if str(path).lower().endswith(".onnx") else None


@dataclasses.dataclass(frozen=True)
class FrustrationModel:
    """One model of a study across models: its `file` (relative to the config file), its full
    `input_shape` (default: the config's `input_shape`, else the file's own) and the `name` it
    has in the table (default: the file's stem)."""

    file: str
    input_shape: tuple[int, ...] | None = None
    name: str | None = None

    def __post_init__(self):
        if not self.file:
            fail("file", "must name a model file (.onnx or .npz)")
        if self.input_shape is not None:
            check_input_shape(self.input_shape)
        if self.name is not None and not self.name.strip():
            fail("name", "must not be empty")


@dataclasses.dataclass(frozen=True)
class FrustrationConfig(StudyFrustrationConfig):
    """`jaxflow frustration MODEL_FILE...`: the search and null models of `StudyFrustrationConfig`,
    seeded by `seed`; `per_layer` adds each trained block's frustration against its own null.
    `models` (paths, or tables `{file, input_shape, name}`) lists the models of a study across
    models when none is given on the command line; `input_shape` is every model's full input
    shape unless its entry has its own."""

    seed: int = 0
    per_layer: bool = True
    models: tuple[str | FrustrationModel, ...] = ()
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.input_shape is not None:
            check_input_shape(self.input_shape)
        for i, m in enumerate(self.models):
            if isinstance(m, str) and not m:
                fail(f"models[{i}]", "must name a model file (.onnx or .npz)")

    def model_entries(
        self, config_dir=".", input_shape: tuple[int, ...] | None = None
    ) -> list[FrustrationModel]:
        """`models` as `FrustrationModel`s, paths anchored at `config_dir` unless absolute. An
        ONNX entry without its own `input_shape` gets the config's; `input_shape` (the command
        line's) overrides both for every ONNX entry (npz files have fixed shapes)."""
        out = []
        for m in self.models:
            m = FrustrationModel(m) if isinstance(m, str) else m
            path = Path(m.file)
            path = path if path.is_absolute() else Path(config_dir) / path
            shape = m.input_shape or self.input_shape
            if input_shape is not None:
                shape = input_shape
            out.append(FrustrationModel(str(path), onnx_shape(path, shape), m.name))
        return out


@dataclasses.dataclass(frozen=True)
class SweepTaskConfig:
    """The whitened task `Σ_yx = diag(singular_values)` padded to `(d_h, d_0)` (`Task.from_spectrum`)."""

    singular_values: tuple[float, ...] = (3.0, 2.0, 1.0)

    def __post_init__(self):
        sv = self.singular_values
        if not sv or any(not 0 <= v < float("inf") for v in sv) or max(sv) == 0:
            fail("singular_values", f"must be finite values >= 0, at least one > 0, got {list(sv)}")


@dataclasses.dataclass(frozen=True)
class LandscapeConfig:
    """`jaxflow landscape`: every critical value of `task` for networks of `widths`, each
    classified at its canonical critical point (`critical_point(..., balanced=balanced)`) with
    `probes` random null-space directions (seeded by `seed`) for the higher-order test, and
    checked by the flow when `verify`. Dense Hessians: at most `max_parameters` weights."""

    task: SweepTaskConfig = dataclasses.field(default_factory=SweepTaskConfig)
    widths: tuple[int, ...] = (3, 3, 3, 3)
    balanced: bool = True
    probes: int = 16
    verify: bool = False
    seed: int = 0
    max_parameters: int = 2000

    def __post_init__(self):
        require("widths", check_widths, self.widths)
        require_singular_values(self.task.singular_values, self.widths)
        require_counts(self, "probes", "max_parameters")
        P = sum(a * b for a, b in zip(self.widths, self.widths[1:]))
        if P > self.max_parameters:
            fail(
                "widths",
                f"give P = {P} weights, more than max_parameters = {self.max_parameters} (dense Hessians)",
            )
