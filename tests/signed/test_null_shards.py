"""Null batches and restart chunks: sharded over devices and processes, resumable after a kill,
refused in another run's folder."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxflow._checks import InputError
from jaxflow.signed import Anneal, Layerwise, SignedGraph, frustration as fr
from jaxflow.signed.frustration import frustration
from jaxflow.signed.nullmodels import _null_blocks, null_model_frustration

SAMPLES, RESTARTS, WIDTHS = 4, 8, (5, 6, 7, 4)
# Restarts in chunks: 12 in 3 chunks of 5 (the last padded), each screened to 2 (`"layerwise"`) or
# annealed (`"anneal"`), by each driver.
CHUNKED = [(driver, method) for driver in ("program", "signatures") for method in ("layerwise", "anneal")]
COLLECTIVES = re.compile(r"\b(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)\b")

# A fresh JAX (XLA_FLAGS set by the caller): "four" writes the null values (both drivers) and the
# collectives of the compiled sharded search; "slow" runs into `out`, each piece's write followed
# by a pause, so that it can be killed mid-way.
SCRIPT = textwrap.dedent(
    """
    import sys, time
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jaxflow import _lanes, _store
    from jaxflow.signed import SignedGraph
    from jaxflow.signed.frustration import frustration
    from jaxflow.signed.nullmodels import _null_blocks, _null_program, null_model_frustration
    mode, out, dest = sys.argv[1:]
    if mode == "hosts":  # one of two processes: `out` is the coordinator's port and the process id
        port, pid = out.split(":")
        jax.distributed.initialize(f"localhost:{{port}}", num_processes=2, process_id=int(pid))
        out = dest + ".nulls"
    rng = np.random.default_rng(0)
    w = {widths}
    g = SignedGraph.from_weights([rng.normal(size=(w[i + 1], w[i])) for i in range(len(w) - 1)])
    if mode == "slow":
        write = _store.Store.write
        _store.Store.write = lambda self, *a: (write(self, *a), time.sleep(0.5))
        null_model_frustration(g, jax.random.key(0), samples={samples}, restarts={restarts}, chunk_size=1,
                               out=out)
        sys.exit()
    sys.path.insert(0, {here!r})
    from test_null_shards import CHUNKED, chunked_estimates
    # across processes: each driver, one method
    chunked = chunked_estimates(g, [c for c in CHUNKED if mode != "hosts" or c[1] == "layerwise"])
    if mode == "hosts":
        nul = null_model_frustration(
            g, jax.random.key(0), samples={samples}, restarts={restarts}, chunk_size=1, out=out
        )
        np.savez(dest + f".{{pid}}.npz", processes=jax.process_count(), values=nul.block_values, **chunked)
        sys.exit()
    nul = null_model_frustration(g, jax.random.key(0), samples={samples}, restarts={restarts}, chunk_size=1)
    settings = frustration(g, restarts={restarts}, key=jax.random.key(0)).settings
    keys = jax.random.split(jax.random.key(1), {samples})
    lanes = _null_blocks(g, keys, "block", True, settings, 1, "signatures")
    mesh = _lanes.lanes_mesh()
    sharded = _lanes.put_lane_keys(keys, np.arange(4), mesh)
    text = _null_program.lower(g, sharded, "block", True, settings, mesh).compile().compiled.as_text()
    ops = ["all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter"]
    np.savez(dest, devices=jax.device_count(), values=nul.block_values, lanes=lanes,
             collectives=[op for op in ops if op in text] + [""], **chunked)
    """
).format(widths=WIDTHS, samples=SAMPLES, restarts=RESTARTS, here=str(Path(__file__).parent))


def _graph(seed=0) -> SignedGraph:
    rng = np.random.default_rng(seed)
    w = WIDTHS
    return SignedGraph.from_weights([rng.normal(size=(w[i + 1], w[i])) for i in range(len(w) - 1)])


def _child(mode, out, dest, devices, dump=None):
    flags = f"--xla_force_host_platform_device_count={devices}"
    flags += "" if dump is None else f" --xla_dump_to={dump} --xla_dump_hlo_as_text"
    env = dict(os.environ, XLA_FLAGS=flags)
    cmd = [sys.executable, "-c", SCRIPT, mode, str(out), str(dest)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def reference():
    return null_model_frustration(_graph(), jax.random.key(0), samples=SAMPLES, restarts=RESTARTS)


def chunked_estimates(g: SignedGraph, cases) -> dict:
    """`{"driver-method": gauge, δ, restart values, sweeps, convergence}` (flattened) of each
    `(driver, method)` of `cases` (`CHUNKED`), searched in restart chunks; run here and in the child."""
    out = {}
    for driver, method in cases:
        estimator = (
            Layerwise(restarts=12, survivors=2, tol=0.0, batch_size=5)
            if method == "layerwise"
            else Anneal(restarts=12, sweeps=12, tol=0.0, batch_size=5)
        )
        s = estimator.settings(g)
        gauge, value, _, values, its, ok = fr._estimate(g, jax.random.key(3), s, driver)
        out[f"{driver}-{method}"] = np.concatenate([np.ravel(x) for x in (*gauge, value, values, its, ok)])
    return out


@pytest.fixture(scope="module")
def chunked():
    """The chunked-restart estimates on one device."""
    return chunked_estimates(_graph(), CHUNKED)


def _collectives(dump) -> tuple[dict, dict]:
    """`{(program, computation): {collective ops}}` over the optimized HLO dumped in `dump`, with the
    number of devices each program was partitioned over."""
    found, partitions = {}, {}
    for path in dump.glob("*after_optimizations.txt"):
        program = path.name.split(".")[1].removeprefix("jit_")
        computation = None
        for line in path.read_text().splitlines():
            if line.startswith("HloModule"):
                partitions.setdefault(program, set()).add(
                    int(re.search(r"num_partitions=(\d+)", line + " num_partitions=1")[1])
                )
            if line and not line.startswith(" ") and line.endswith("{"):
                computation = "ENTRY" if line.startswith("ENTRY") else line.split()[0]
            for op in COLLECTIVES.findall(line):
                found.setdefault((program, computation), set()).add(op)
    return found, partitions


def test_four_devices_match_one_and_the_search_holds_no_collectives(reference, chunked, tmp_path):
    proc = _child("four", "", tmp_path / "four.npz", devices=4, dump=tmp_path / "hlo")
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
        for name, values in chunked.items():  # restart chunks spread over 4 devices: the same gauges
            np.testing.assert_array_equal(four[name], values, err_msg=name)
    found, partitions = _collectives(tmp_path / "hlo")
    assert 4 in partitions["_dispatch"] and 4 in partitions["estimate"], partitions  # really sharded
    # Every compiled piece of the per-signature driver and every loop of a search program is free of
    # collectives: the one-program search gathers the chunks' results once, after them (its entry
    # computation), and the per-signature driver's host sync asks whether any lane goes on.
    allowed = {("estimate", "ENTRY"): {"all-gather"}, ("_reduce_any", "ENTRY"): {"all-reduce"}}
    for where, ops in found.items():
        assert ops <= allowed.get(where, set()), (where, ops)


def test_two_processes_match_one(reference, chunked, tmp_path):
    """`jax.distributed.initialize` over two local processes (one CPU device each): null samples and
    restart chunks split between them give bitwise the values of one process, and the folder process
    0 wrote resumes in this one without recomputing."""
    with socket.socket() as sock:  # a free port for the coordinator
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    dest = tmp_path / "hosts"
    procs = [_child("hosts", f"{port}:{pid}", dest, devices=1) for pid in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-2000:]
    for pid in range(2):
        with np.load(f"{dest}.{pid}.npz") as got:
            assert int(got["processes"]) == 2
            np.testing.assert_array_equal(got["values"], reference.block_values)
            assert {"program-layerwise", "signatures-layerwise"} <= set(got.files)
            for name in set(got.files) & set(chunked):
                np.testing.assert_array_equal(got[name], chunked[name], err_msg=name)
    written = sorted(p.name for p in (tmp_path / "hosts.nulls" / "chunks").glob("*.npz"))
    assert written == ["s0000000-0000001.npz", "s0000002-0000003.npz"], written  # 1 sample per device
    again = null_model_frustration(
        _graph(), jax.random.key(0), samples=SAMPLES, restarts=RESTARTS, out=tmp_path / "hosts.nulls"
    )
    np.testing.assert_array_equal(again.block_values, reference.block_values)


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
        (dict(restarts=16), "estimator, settings"),
        (dict(model="flip"), "model"),
        (dict(key=jax.random.key(1)), "key"),
    ]
    for change, what in cases:
        call = {**dict(graph=_graph(), key=jax.random.key(0), samples=2, restarts=RESTARTS), **change}
        graph, key = call.pop("graph"), call.pop("key")
        message = f"out folder {tmp_path} holds a different null batch (differs in: {what}); "
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            null_model_frustration(graph, key, out=tmp_path, **call)
