"""Sweep configs: the shipped ones load; every kind of bad input fails with one message naming the key."""

from pathlib import Path

import pytest

from jaxflow.config import ConfigError, SweepConfig, load_config, parse

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
