"""Sweep configs: the shipped ones load; every kind of bad input fails with one message naming the key."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxflow.config import ConfigError, load_config, parse
from jaxflow.experiments.sweep import SweepConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["quickstart.toml", "depth_sweep.toml"])
def test_shipped_configs_load(name):
    config = load_config(ROOT / "configs" / name, SweepConfig)
    assert all(w[0] == w[-1] == 3 for w in config.network.architectures)


def test_depth_sweep_sweeps_depth():
    config = load_config(ROOT / "configs" / "depth_sweep.toml", SweepConfig)
    assert [len(w) - 1 for w in config.network.architectures] == [2, 3, 4, 5]


BAD = [
    ({"network": {"widths": [3, -8, 3]}}, "network.widths[1]", "positive integer"),
    ({"network": {"widths": [3]}}, "network.widths", "depth h >= 1"),
    ({"network": {"widths": [[3, 8, 3], [3, 0, 3]]}}, "network.widths[1][1]", "positive integer"),
    ({"network": {"widths": [[3, 8, 3], [4, 8, 3]]}}, "network.widths[1]", "share d_0 and d_h"),
    ({"network": {"widths": "3x8x3"}}, "network.widths", "expected"),
    ({"network": {"scale": -0.1}}, "network.scale", "> 0"),
    ({"network": {"init": "xavier"}}, "network.init", "must be one of"),
    ({"network": {"init": "delta_balanced"}}, "network.delta", "required"),
    ({"network": {"delta": 1.0}}, "network.delta", "only allowed"),
    ({"flow": {"t1": 0.0}}, "flow.t1", "> 0"),
    ({"flow": {"t1": -1}}, "flow.t1", "> 0"),
    ({"flow": {"rtol": 0}}, "flow.rtol", "> 0"),
    ({"flow": {"t1": "long"}}, "flow.t1", "must be a number"),
    ({"flow": {"max_steps": 0}}, "flow.max_steps", "positive"),
    ({"flow": {"max_steps": 10.5}}, "flow.max_steps", "must be an integer"),
    ({"flow": {"saves": 1}}, "flow.saves", ">= 2"),
    ({"flow": {"solver": "euler"}}, "flow.solver", "must be one of"),
    ({"flow": {"dtype": "float16"}}, "flow.dtype", "must be one of"),
    ({"sweep": {"inits": 0}}, "sweep.inits", "positive"),
    ({"sweep": {"chunk": -4}}, "sweep.chunk", "positive"),
    ({"sweep": {"batch": 0}}, "sweep.batch", "positive"),
    ({"sweep": {"seed": -1}}, "sweep.seed", ">= 0"),
    ({"sweep": {"sort": "yes"}}, "sweep.sort", "must be a bool"),
    ({"task": {"singular_values": [1.0, -2.0]}}, "task.singular_values", ">= 0"),
    ({"task": {"singular_values": []}}, "task.singular_values", "at least one"),
    ({"task": {"singular_values": [3, 2, 1, 0.5]}}, "task.singular_values", "at most 3"),
    ({"flow": {"t1": 1.0, "tl": 2.0}}, "flow.tl", "unknown key"),
    ({"sweeps": {}}, "sweeps", "unknown key"),
    ({"flow": 3}, "flow", "must be a table"),
]


@pytest.mark.parametrize("table, key, words", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_bad_values_name_the_key(table, key, words):
    with pytest.raises(ConfigError) as e:
        parse(SweepConfig, table)
    message = str(e.value)
    assert f"'{key}'" in message and words in message, message
    assert "\n" not in message


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", SweepConfig)
    (tmp_path / "bad.toml").write_text("[flow\nt1 = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml", SweepConfig)


def test_frustration_models_list(tmp_path):
    from jaxflow.config import FrustrationConfig, FrustrationModel

    table = {
        "input_shape": [1, 3, 8, 8],
        "models": ["a.onnx", "/abs/b.npz", {"file": "c.onnx", "input_shape": [1, 3, 4, 4], "name": "C"}],
    }
    config = parse(FrustrationConfig, table)
    assert config.model_entries(tmp_path) == [
        FrustrationModel(str(tmp_path / "a.onnx"), (1, 3, 8, 8)),
        FrustrationModel("/abs/b.npz", None),  # an npz model's shapes are its arrays'; onnx only
        FrustrationModel(str(tmp_path / "c.onnx"), (1, 3, 4, 4), "C"),
    ]
    assert parse(FrustrationConfig, {}).models == ()
    assert [m.input_shape for m in config.model_entries(tmp_path, (1, 3, 2, 2))] == [
        (1, 3, 2, 2),
        None,
        (1, 3, 2, 2),
    ]


BAD_SHAPES = [
    ({"models": [{"file": "a.onnx", "shape": [1, 3]}]}, "models[0].shape", "unknown key"),
    ({"models": [{"input_shape": [1, 3]}]}, "models[0].file", "missing"),
    (
        {"models": [{"file": "a.onnx", "input_shape": [1, 0, 8]}]},
        "models[0].input_shape[1]",
        "must be a positive integer",
    ),
    ({"models": [3]}, "models[0]", "expected str or a table {file, input_shape, name}"),
    ({"models": [""]}, "models[0]", "must name a model file"),
    ({"input_shape": [3]}, "input_shape", "2 or more positive integers"),
    ({"input_shape": "1,3,8,8"}, "input_shape", "must be a list"),
    ({"tol": 1.5}, "tol", "must be in [0, 1)"),
    ({"tol": -1e-3}, "tol", "must be in [0, 1)"),
    ({"restarts": 0}, "restarts", "must be a positive integer"),
    ({"batch_size": 0}, "batch_size", "must be a positive integer"),
]


def test_search_defaults_are_the_librarys(tmp_path):
    """Unset `restarts`/`tol` reach `frustration` as None: its own defaults for the graph."""
    from jaxflow.config import FrustrationConfig
    from jaxflow.signed import Dense, Layer, SignedGraph
    from jaxflow.signed.estimators import default_restarts, default_tol
    from jaxflow.signed.frustration import frustration

    config = parse(FrustrationConfig, {})
    assert (config.restarts, config.tol) == (None, None)
    w = np.array([[1.0, -2.0], [3.0, 4.0]])
    g = SignedGraph.from_layers([Layer("x", shape=(2,)), Layer("y", {"x": Dense(w, (2,), (2,))})])
    key = jax.random.key(0)
    res = frustration(g, method=config.method, key=key, restarts=config.restarts, tol=config.tol)
    settings = res.settings
    assert (settings.restarts, settings.tol) == (default_restarts(g, config.method), default_tol(g))
    assert parse(FrustrationConfig, {"tol": 1e-5, "restarts": 3}).tol == 1e-5


def test_batch_size_reaches_the_network_and_its_nulls():
    """`batch_size` in the config: the network and its null samples search their restarts in
    chunks of it, as `frustration(..., batch_size=...)` does."""
    from jaxflow.config import FrustrationConfig
    from jaxflow.experiments.nulls import frustration_vs_null
    from jaxflow.signed import SignedGraph
    from jaxflow.signed.frustration import frustration

    rng = np.random.default_rng(4)
    g = SignedGraph.from_weights([rng.normal(size=(5, 4)), rng.normal(size=(3, 5))])
    config = parse(FrustrationConfig, {"method": "layerwise", "restarts": 6, "batch_size": 4})
    key = jax.random.key(2)
    nul, _ = frustration_vs_null(g, dataclasses.replace(config, robustness=False), key, samples=2)
    assert nul.observed.settings.batch_size == 4
    alone = frustration(g, method="layerwise", key=jax.random.split(key)[0], restarts=6, batch_size=4)
    np.testing.assert_array_equal(nul.observed.restart_values, alone.restart_values)


@pytest.mark.parametrize("table, key, words", BAD_SHAPES, ids=[b[1] + ":" + b[2] for b in BAD_SHAPES])
def test_bad_frustration_models_name_the_key(table, key, words):
    from jaxflow.config import FrustrationConfig

    with pytest.raises(ConfigError) as e:
        parse(FrustrationConfig, table)
    assert f"'{key}'" in str(e.value) and words in str(e.value), str(e.value)


def test_study_input_shape_and_the_option():
    from jaxflow.config import StudyConfig, parse_input_shape

    assert parse(StudyConfig, {"model_file": "m.onnx", "input_shape": [1, 3, 8, 8]}).input_shape == (
        1,
        3,
        8,
        8,
    )
    with pytest.raises(ConfigError, match="'input_shape': is only allowed with model_file"):
        parse(StudyConfig, {"dln": {}, "input_shape": [1, 3]})
    with pytest.raises(ConfigError, match="'input_shape': must be the full input shape"):
        parse(StudyConfig, {"model_file": "m.onnx", "input_shape": [1]})
    with pytest.raises(ConfigError, match=r"'input_shape\[1\]': must be a positive integer, got -3"):
        parse(StudyConfig, {"model_file": "m.onnx", "input_shape": [1, -3]})
    assert parse_input_shape("1,3,224,224") == parse_input_shape(" (1, 3, 224, 224) ") == (1, 3, 224, 224)
    for text in ("1,3,x", "224", "", "1,,3", "1.5,3", "1,3,0"):
        with pytest.raises(ConfigError, match="--input-shape must be the full input shape"):
            parse_input_shape(text)


def test_config_choices_are_the_librarys():
    """Each config choice list is the library's own (config cannot import the cores: it is below them)."""
    import typing

    from jaxflow.config import StudyDLNConfig, StudyFrustrationConfig
    from jaxflow.linear.network import SCHEMES
    from jaxflow.signed.estimators import METHODS
    from jaxflow.signed.nullmodels import MODELS

    def choices(cls, field):
        return set(typing.get_args(typing.get_type_hints(cls)[field]))

    def names(cls, field):  # a name, or a table of an estimator's fields
        (literal,) = [
            a
            for a in typing.get_args(typing.get_type_hints(cls)[field])
            if typing.get_origin(a) is typing.Literal
        ]
        return set(typing.get_args(literal))

    assert names(StudyFrustrationConfig, "method") == set(METHODS)
    assert choices(StudyFrustrationConfig, "null_model") == set(MODELS)
    assert choices(StudyDLNConfig, "scheme") <= set(SCHEMES)
