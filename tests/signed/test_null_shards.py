"""Null batches: sharded over devices, resumable after a kill, refused in another run's folder."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from jaxflow._checks import InputError
from jaxflow.signed import SignedGraph
from jaxflow.signed.frustration import frustration
from jaxflow.signed.nullmodels import _null_blocks, null_model_frustration

SAMPLES, RESTARTS, WIDTHS = 4, 8, (5, 6, 7, 4)

# A fresh JAX (XLA_FLAGS set by the caller): "four" writes the null values (both drivers) and the
# collectives of the compiled sharded search; "slow" runs into `out`, each piece's write followed
# by a pause, so that it can be killed mid-way.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jaxflow import _store
    from jaxflow.signed import SignedGraph
    from jaxflow.signed.frustration import frustration
    from jaxflow.signed.nullmodels import _null_blocks, _null_program, null_model_frustration
    mode, out, dest = sys.argv[1:]
    rng = np.random.default_rng(0)
    w = {widths}
    g = SignedGraph.from_weights([rng.normal(size=(w[i + 1], w[i])) for i in range(len(w) - 1)])
    if mode == "slow":
        write = _store.Store.write
        _store.Store.write = lambda self, *a: (write(self, *a), time.sleep(0.5))
        null_model_frustration(g, jax.random.key(0), samples={samples}, restarts={restarts}, chunk_size=1,
                               out=out)
        sys.exit()
    nul = null_model_frustration(g, jax.random.key(0), samples={samples}, restarts={restarts}, chunk_size=1)
    settings = frustration(g, restarts={restarts}, key=jax.random.key(0)).settings
    keys = jax.random.split(jax.random.key(1), {samples})
    lanes = _null_blocks(g, keys, "block", True, settings, 1, "signatures")
    mesh = _store.lanes_mesh()
    sharded = jax.random.wrap_key_data(_store.put_lanes(np.asarray(jax.random.key_data(keys[:4])), mesh))
    text = _null_program.lower(g, sharded, "block", True, settings, mesh).compile().compiled.as_text()
    ops = ["all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter"]
    np.savez(dest, devices=jax.device_count(), values=nul.block_values, lanes=lanes,
             collectives=[op for op in ops if op in text] + [""])
    """
).format(widths=WIDTHS, samples=SAMPLES, restarts=RESTARTS)


def _graph(seed=0) -> SignedGraph:
    rng = np.random.default_rng(seed)
    w = WIDTHS
    return SignedGraph.from_weights([rng.normal(size=(w[i + 1], w[i])) for i in range(len(w) - 1)])


def _child(mode, out, dest, devices):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-c", SCRIPT, mode, str(out), str(dest)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def reference():
    return null_model_frustration(_graph(), jax.random.key(0), samples=SAMPLES, restarts=RESTARTS)


def test_four_devices_match_one_and_the_search_holds_no_collectives(reference, tmp_path):
    proc = _child("four", "", tmp_path / "four.npz", devices=4)
    g = _graph()
    settings = frustration(g, restarts=RESTARTS, key=jax.random.key(0)).settings
    keys = jax.random.split(jax.random.key(1), SAMPLES)
    lanes = _null_blocks(g, keys, "block", True, settings, 2, "signatures")  # one device, 2 lanes a piece
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()[-2000:]
    with np.load(tmp_path / "four.npz") as four:
        assert int(four["devices"]) == 4
        assert list(four["collectives"]) == [""], four["collectives"]
        np.testing.assert_array_equal(four["values"], reference.block_values)  # default chunk vs 1 per device
        np.testing.assert_array_equal(four["lanes"], lanes)  # the lanes driver, sharded: 4 lanes a piece


def test_killed_null_run_resumes_to_bitwise_the_same_values(reference, tmp_path):
    out = tmp_path / "nulls"
    proc = _child("slow", out, "", devices=1)
    deadline = time.monotonic() + 240
    while not any((out / "chunks").glob("*.npz")) if (out / "chunks").exists() else True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list((out / "chunks").glob("*.npz")))
    assert 1 <= written < SAMPLES, written  # really interrupted mid-run
    assert json.loads((out / ".lock").read_text())["pid"] == proc.pid  # left behind: stale
    resumed = null_model_frustration(
        _graph(), jax.random.key(0), samples=SAMPLES, restarts=RESTARTS, chunk_size=2, out=out
    )
    np.testing.assert_array_equal(resumed.block_values, reference.block_values)
    np.testing.assert_array_equal(resumed.values, reference.values)
    assert not (out / ".lock").exists()
    again = null_model_frustration(_graph(), jax.random.key(0), samples=SAMPLES, restarts=RESTARTS, out=out)
    np.testing.assert_array_equal(again.block_values, reference.block_values)  # only read back


def test_another_graph_or_setting_in_the_folder_is_refused(tmp_path):
    null_model_frustration(_graph(), jax.random.key(0), samples=2, restarts=RESTARTS, out=tmp_path)
    cases = [
        (dict(graph=_graph(1)), "graph"),
        (dict(samples=3), "samples"),
        (dict(restarts=16), "options, settings"),
        (dict(model="flip"), "model"),
        (dict(key=jax.random.key(1)), "key"),
    ]
    for change, what in cases:
        call = {**dict(graph=_graph(), key=jax.random.key(0), samples=2, restarts=RESTARTS), **change}
        graph, key = call.pop("graph"), call.pop("key")
        message = f"out folder {tmp_path} holds a different null batch (differs in: {what}); "
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            null_model_frustration(graph, key, out=tmp_path, **call)
