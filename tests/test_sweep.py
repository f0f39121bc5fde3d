"""Sweeps: independent of devices and of interruptions; learning times from the h = 2 closed form."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from jaxflow import Flow, Lanes, Networks, Task
from jaxflow.config import parse
from jaxflow.experiments.sweep import SweepConfig
from jaxflow.linear.sweep import FIELDS, STATUS, sweep

# Tiny shapes keep compiles short; 12 inits in chunks of 2 give 6 chunk files.
TABLE = {
    "task": {"singular_values": [2.0, 1.0]},
    "network": {"widths": [2, 3, 3, 2], "scale": 0.2},
    "flow": {"t1": 20.0, "saves": 41, "gtol": 1e-6},
    "sweep": {"inits": 12, "chunk": 2, "seed": 3},
}
CONFIG = parse(SweepConfig, TABLE)
ARGS = (CONFIG.whitened_task(), CONFIG.network, CONFIG.flow, CONFIG.sweep)  # the objects `sweep` takes

# Runs `sweep` on a fresh JAX with the given XLA_FLAGS and writes the per-trajectory fields.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from jaxflow.config import parse
    from jaxflow.experiments.sweep import SweepConfig
    from jaxflow.linear.sweep import FIELDS, sweep
    table, out, dest = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
    config = parse(SweepConfig, table)
    task = config.whitened_task()
    r = sweep(task, config.network, config.flow, config.sweep, out=out or None)
    # The compiled chunk program: which collectives does it hold (none: devices never wait)?
    from jax.sharding import Mesh
    from jaxflow.linear.sweep import _Architecture, _run_chunk
    arch = _Architecture(config.network.architectures[0], task, config.network, config.flow, config.sweep,
                         Mesh(np.array(jax.devices()), ("lanes",)))
    lowered = _run_chunk.lower(np.zeros(arch.lanes, np.int32), jax.random.wrap_key_data(arch.key),
                               arch.task, arch.ts, arch.tols, spec=arch.spec, mesh=arch.mesh,
                               batch=arch.batch)
    text = lowered.compile().as_text()
    ops = ["all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter"]
    np.savez(dest, devices=jax.device_count(), collectives=[op for op in ops if op in text] + [""],
             **{k: getattr(r, k) for k in FIELDS})
    """
)


def _subprocess(table, out, dest, devices: int):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    cmd = [sys.executable, "-c", SCRIPT, json.dumps(table), str(out), str(dest)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_a_chunk(proc, chunks, timeout=240.0):
    """Return once `proc` has saved its first chunk file into `chunks` (it must still be running)."""
    deadline = time.monotonic() + timeout
    while not (chunks.exists() and any(chunks.glob("*.npz"))):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.002)


def _assert_same(a, b):
    for k in FIELDS:
        np.testing.assert_array_equal(getattr(a, k) if hasattr(a, k) else a[k], getattr(b, k), err_msg=k)


@pytest.fixture(scope="module")
def reference():
    return sweep(*ARGS)


def test_reference_is_sane(reference):
    # Every run ends at the global minimum L = 0 with both modes learnt, the loss never rises and
    # the conserved blocks barely move (rtol = 1e-6 on an O(1) state).
    assert set(STATUS[s] for s in reference.status) <= {"converged", "t1"}
    np.testing.assert_array_equal(reference.critical_value, 0.0)
    assert reference.learnt.all()
    assert np.all(np.diff(reference.losses, axis=1) <= 1e-9)
    assert reference.drift.max() < 1e-5
    np.testing.assert_array_equal(reference.index, np.arange(12))


def test_four_devices_match_one(reference, tmp_path):
    proc = _subprocess(TABLE, "", tmp_path / "four.npz", devices=4)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    with np.load(tmp_path / "four.npz") as four:
        assert int(four["devices"]) == 4
        assert list(four["collectives"]) == [""], four["collectives"]  # no collective in the loop
        for k in FIELDS:
            np.testing.assert_array_equal(four[k], getattr(reference, k), err_msg=k)


def test_killed_sweep_resumes_to_same_numbers(reference, tmp_path):
    out = tmp_path / "run"
    proc = _subprocess(TABLE, out, tmp_path / "unused.npz", devices=1)
    chunks = out / "chunks"
    _wait_for_a_chunk(proc, chunks)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(chunks.glob("a*-c*.npz")))
    assert 1 <= written < 6, written  # really interrupted mid-run
    resumed = sweep(*ARGS, out=out)
    assert len(list(chunks.glob("a*-c*.npz"))) == 6
    _assert_same(resumed, reference)
    _assert_same(sweep(*ARGS, out=out), reference)  # a finished folder is only read back


def test_resume_rejects_other_inputs(tmp_path):
    other = dataclasses.replace(CONFIG.sweep, seed=4)
    (tmp_path / "manifest.json").write_text(json.dumps({"config_hash": "0"}))
    with pytest.raises(ValueError, match="different sweep"):
        sweep(*ARGS[:3], other, out=tmp_path)


def test_learning_times_match_two_layer_closed_form():
    # Aligned 0-balanced two-layer modes follow ds/dt = 2 s (σ − s), so
    # s(t) = σ / (1 + (σ/s0 − 1) e^{−2σt}) and s = σ/2 at t* = ln((σ − s0)/s0) / (2σ).
    sigma, s0, dt = np.array([3.0, 1.0]), 1e-3, 0.01
    r = sweep(
        Task.from_spectrum(sigma, 2, 2),
        Networks((2, 2, 2), init="aligned", scale=s0),
        Flow(t1=8.0, saves=801, rtol=1e-10, atol=1e-12, gtol=1e-9, max_steps=8192),
        Lanes(inits=2, chunk=2, sort=False),
    )
    expected = np.log((sigma - s0) / s0) / (2 * sigma)
    # Linear interpolation between saves at the logistic's inflection point s = σ/2 errs in time
    # by at most σ² dt³ / 6 (the cubic term of s over s'); the solver adds ~rtol relative.
    for row in r.learning_times:
        np.testing.assert_allclose(row, expected, rtol=1e-8, atol=sigma.max() ** 2 * dt**3 / 6)
    # Saddle to saddle: from the origin (L = ½(σ₁² + σ₂²)) over mode 1 (L = ½σ₂²) to L = 0.
    np.testing.assert_array_equal(r.visited, [[5.0, 0.5, 0.0]] * 2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_command_says_how_to_resume(reference, tmp_path, sig):
    """Ctrl-C or SIGTERM mid-sweep: one line naming what is saved, exit 130; rerunning resumes to
    the uninterrupted numbers."""
    config = tmp_path / "sweep.toml"
    config.write_text(  # TABLE as TOML (JSON numbers and lists are TOML values)
        "".join(
            f"[{part}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in t.items())
            for part, t in TABLE.items()
        )
    )
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "jaxflow", "sweep", str(config), "--out", str(out)]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    chunks = out / "chunks"
    _wait_for_a_chunk(proc, chunks)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    last = err.decode().strip().splitlines()[-1]
    written = len(list(chunks.glob("a*-c*.npz")))
    if proc.returncode == 0:  # finished before the signal landed: nothing to check
        pytest.skip("the sweep finished before the signal")
    assert proc.returncode == 130, err.decode()[-2000:]
    resume = "run the same command again to resume"
    assert last == f"jaxflow sweep: interrupted; {written} chunks saved in {out}; {resume}"
    _assert_same(sweep(*ARGS, out=out), reference)
