"""Gradient flows from many initializations: chunks of lanes, vmapped on each device and sharded
over all devices with `shard_map`, written chunk by chunk and resumed after an interruption.

Initialization `i` of architecture `a` uses the key `fold_in(key(seed), i)`, and each lane runs its
own adaptive solve, so a trajectory's numbers depend neither on the chunk it lands in nor on the
number of devices. Devices never synchronize inside a solve: each runs its lanes to completion
(`shard_map` with `check_vma=False`; no collectives in the loop). Multi-host: call
`jax.distributed.initialize()` first; every process computes its share, process 0 writes. On CPU,
a solve of small matrices uses one core: expose the cores as devices
(`jax.config.update("jax_num_cpu_devices", os.cpu_count())` right after `import jax`; the
`jaxflow sweep` command does) to run lanes on all of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P
from jaxtyping import Bool

from .._checks import (
    InputError,
    check_choice,
    check_count,
    check_positive,
    check_task_widths,
    check_widths,
    named_error,
)
from .._lanes import lanes_mesh, put_lanes, to_host
from .._progress import progress_bar
from .._store import Store, tree_digest
from .._types import Array, Float, Int, Key
from .flow import hold_after_stop, solve
from .landscape import critical_levels, level_index
from .network import SCHEMES, DeepLinearNetwork
from .objective import conservation_drift, end_to_end_loss
from .task import Task, mode_strengths, modes_learnt
from .theory import learning_time

SOLVERS = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8, "bosh3": diffrax.Bosh3}
SOLVER_STAGES = {"tsit5": 7, "dopri5": 7, "dopri8": 13, "bosh3": 4}
"""Field evaluations a step of each solver keeps (its Runge–Kutta stages)."""
DTYPES = ("float64", "float32")
STATUS = ("converged", "t1", "max_steps", "diverged")
"""Status names, indexed by the codes below: `‖∇L‖ < gtol` reached; `t1` reached first;
`max_steps` reached first; a non-finite state or a solver failure."""
CONVERGED, T1, MAX_STEPS, DIVERGED = (STATUS.index(s) for s in STATUS)
PLATEAU_TOL = 0.1
"""A saved loss is on a critical level when within this fraction of the smallest gap between levels."""
FIELDS = (
    "index", "losses", "final_loss", "critical_value", "learnt", "learning_times",
    "visited", "drift", "t_final", "num_steps", "status",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Networks:
    """The networks of a sweep: `widths` `(d_0, …, d_h)`, or a list of such to sweep architectures
    (e.g. depths) sharing `d_0` and `d_h`, each initialized by `DeepLinearNetwork.init(widths,
    key, init, scale, delta=delta)` (`"aligned"`: every mode at strength `scale`)."""

    widths: tuple[int, ...] | tuple[tuple[int, ...], ...] = (3, 8, 8, 3)
    init: str = "gaussian"
    scale: float = 0.1
    delta: float | None = None

    def __post_init__(self):
        many = np.iterable(self.widths) and any(np.iterable(w) for w in self.widths)
        archs = (
            tuple(check_widths(w, f"widths[{a}]") for a, w in enumerate(self.widths))
            if many
            else (check_widths(self.widths),)
        )
        for a, w in enumerate(archs):
            if (w[0], w[-1]) != (archs[0][0], archs[0][-1]):
                raise named_error(f"widths[{a}]", f"must share d_0 and d_h with widths[0], got {list(w)}")
        object.__setattr__(self, "widths", archs if many else archs[0])
        check_choice(self.init, "init", SCHEMES)
        check_positive(self.scale, "scale")
        if (self.delta is None) == (self.init == "delta_balanced"):
            raise named_error("delta", 'is required with init = "delta_balanced" and only allowed there')

    @property
    def architectures(self) -> tuple[tuple[int, ...], ...]:
        """The widths of each architecture swept (one entry when `widths` is one architecture)."""
        return self.widths if isinstance(self.widths[0], tuple) else (self.widths,)


@dataclasses.dataclass(frozen=True)
class Flow:
    """Each lane's gradient flow: the Diffrax `solver` (`SOLVERS`) with tolerances `rtol`, `atol`
    on `[0, t1]`, stopped once `‖∇L‖ < gtol` or after `max_steps`; the loss and mode strengths
    saved at `saves` equally spaced times; in `dtype` (`DTYPES`)."""

    t1: float = 20.0
    rtol: float = 1e-6
    atol: float = 1e-8
    gtol: float = 1e-5
    solver: str = "tsit5"
    max_steps: int = 4096
    saves: int = 201
    dtype: str = "float64"

    def __post_init__(self):
        for name in ("t1", "rtol", "atol", "gtol"):
            check_positive(getattr(self, name), name)
        check_choice(self.solver, "solver", SOLVERS)
        check_count(self.max_steps, "max_steps")
        check_count(self.saves, "saves", minimum=2)  # times 0 and t1 at least
        check_choice(self.dtype, "dtype", DTYPES)


@dataclasses.dataclass(frozen=True)
class Lanes:
    """`inits` initializations from `seed` (key `fold_in(key(seed), i)` for init `i`), run in
    chunks of `chunk` (one results file each), `batch` lanes vmapped together per device
    (default: a device's whole share of a chunk), ordered by a difficulty proxy when `sort`."""

    inits: int = 64
    seed: int = 0
    chunk: int = 64
    batch: int | None = None
    sort: bool = True

    def __post_init__(self):
        check_count(self.inits, "inits")
        check_count(self.seed, "seed", minimum=0)
        check_count(self.chunk, "chunk")
        if self.batch is not None:
            check_count(self.batch, "batch")


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Per-trajectory results of `sweep`, rows ordered by architecture `arch`, then init `index`.

    `losses[n]` is `L` at times `ts` (held at its last value after a stop); `learning_times[n, k]`
    is when the mode strength `u_kᵀ W v_k` first reached `μ_k / 2` (linear interpolation between
    saves, NaN if never); `learnt[n, k]` says it ends above `μ_k / 2`; `critical_value` is the
    critical level nearest the final loss; `visited[n]` the levels whose plateaus the loss curve
    passed, in order (NaN-padded); `drift` is `conservation_drift` at the end; `status` indexes
    `STATUS`.
    """

    widths: tuple[tuple[int, ...], ...]
    ts: Float[np.ndarray, " T"]
    sigma: Float[np.ndarray, " m"]
    levels: tuple[Float[np.ndarray, " k"], ...]
    arch: Int[np.ndarray, " N"]
    index: Int[np.ndarray, " N"]
    losses: Float[np.ndarray, "N T"]
    final_loss: Float[np.ndarray, " N"]
    critical_value: Float[np.ndarray, " N"]
    learnt: Bool[np.ndarray, "N m"]
    learning_times: Float[np.ndarray, "N m"]
    visited: Float[np.ndarray, "N m+1"]
    drift: Float[np.ndarray, " N"]
    t_final: Float[np.ndarray, " N"]
    num_steps: Int[np.ndarray, " N"]
    status: Int[np.ndarray, " N"]

    @property
    def depth(self) -> Int[np.ndarray, " N"]:
        """Depth `h` of each row's network."""
        return np.array([len(w) - 1 for w in self.widths])[self.arch]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What a lane's compiled program depends on (hashable, static under `jit`)."""

    widths: tuple[int, ...]
    init: str
    scale: float
    delta: float | None
    solver: str
    max_steps: int
    dtype: str


def _initial(spec: _Spec, task: Task, key: Key, i: Int[Array, ""]) -> DeepLinearNetwork:
    return DeepLinearNetwork.init(
        spec.widths, jax.random.fold_in(key, i), spec.init, spec.scale, task=task, delta=spec.delta,
        dtype=jnp.dtype(spec.dtype),
    )  # fmt: skip


def _saved(t, weights, task: Task):
    W = DeepLinearNetwork(weights).end_to_end()
    return end_to_end_loss(W, task), W


def _lane(i, key, task: Task, ts, tols, spec: _Spec) -> dict:
    """One initialization's run, reduced to the saved loss/mode curves and end statistics."""
    net = _initial(spec, task, key, i)
    t1, rtol, atol, gtol = tols
    saveat = diffrax.SaveAt(subs=(diffrax.SubSaveAt(ts=ts, fn=_saved), diffrax.SubSaveAt(t1=True)))
    sol = solve(
        net, task, t1, solver=SOLVERS[spec.solver](), rtol=rtol, atol=atol, saveat=saveat, gtol=gtol,
        max_steps=spec.max_steps, throw=False,
    )  # fmt: skip
    (saved_ts, t_end), ((losses, Ws), y_end) = sol.ts, sol.ys
    final = DeepLinearNetwork(tuple(w[0] for w in y_end))
    W_end = final.end_to_end()
    _, (losses, Ws) = hold_after_stop(saved_ts, (losses, Ws), (end_to_end_loss(W_end, task), W_end))
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(w)) for w in final.weights]))
    status = jnp.select(
        [~finite | ~diffrax.is_okay(sol.result), sol.result == diffrax.RESULTS.max_steps_reached,
         sol.result == diffrax.RESULTS.event_occurred],
        [DIVERGED, MAX_STEPS, CONVERGED], T1,
    )  # fmt: skip
    return dict(
        losses=losses,
        strengths=jax.vmap(mode_strengths, (0, None))(Ws, task),
        final_loss=losses[-1],
        drift=conservation_drift(final, net),
        t_final=t_end[0],
        num_steps=sol.stats["num_steps"],
        status=status,
    )


@functools.partial(jax.jit, static_argnames=("spec", "mesh", "batch"))
def _run_chunk(indices, key, task, ts, tols, *, spec: _Spec, mesh: Mesh, batch: int | None) -> dict:
    def local(idx, key, task, ts, tols):
        return jax.lax.map(lambda i: _lane(i, key, task, ts, tols, spec), idx, batch_size=batch)

    specs = (P("lanes"), P(), P(), P(), P())
    run = jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P("lanes"), check_vma=False)
    return run(indices, key, task, ts, tols)


@functools.partial(jax.jit, static_argnames="spec")
def _initial_strengths(indices, key, task, *, spec: _Spec) -> Float[Array, "C m"]:
    return jax.vmap(lambda i: mode_strengths(_initial(spec, task, key, i).end_to_end(), task))(indices)


def _learning_times(ts, strengths, sigma) -> Float[np.ndarray, "C m"]:
    """First time each `s_k` reaches `σ_k / 2`, linearly interpolated between saves (NaN if never)."""
    target = sigma / 2
    above = strengths >= target[None, None, :]
    first = np.argmax(above, axis=1)  # (C, m)
    j = np.maximum(first, 1)
    take = lambda k: np.take_along_axis(strengths, k[:, None, :], axis=1)[:, 0, :]
    s_a, s_b = take(j - 1), take(j)
    t = ts[j - 1] + (target - s_a) / (s_b - s_a) * (ts[j] - ts[j - 1])
    t = np.where(first == 0, ts[0], t)
    return np.where(above.any(axis=1) & (sigma > 0), t, np.nan)


def _visited(ts, losses, levels, slots: int, dwell: float) -> Float[np.ndarray, "C slots"]:
    """Critical levels the loss stays on (within `PLATEAU_TOL` of the smallest level gap) for at
    least `dwell = 1/μ_1`, in order of visit, NaN-padded. `1/μ_1` is the flow's fastest time scale (the
    largest escape rate from a two-layer saddle): passing through a level is quicker, a plateau
    lasts `~ log(1/s0)/μ` longer."""
    gap = np.diff(levels).min() if levels.size > 1 else max(abs(levels[0]), 1.0)
    idx = np.asarray(level_index(losses, levels))
    label = np.where(np.abs(losses - levels[idx]) <= PLATEAU_TOL * gap, idx, -1)
    out = np.full((losses.shape[0], slots), np.nan)
    for n, row in enumerate(label):
        starts = np.flatnonzero(np.diff(row, prepend=-2) != 0)
        ends = np.append(starts[1:], row.size) - 1
        seq = row[starts[(row[starts] >= 0) & (ts[ends] - ts[starts] >= dwell)]]
        seq = seq[np.diff(seq, prepend=-1) != 0][:slots]
        out[n, : seq.size] = levels[seq]
    return out


class _Architecture:
    """One architecture's runs: its static spec, arrays, critical levels and chunk order."""

    def __init__(
        self, widths: tuple[int, ...], task: Task, networks: Networks, f: Flow, r: Lanes, mesh: Mesh
    ):
        self.spec = _Spec(
            widths, networks.init, networks.scale, networks.delta, f.solver, f.max_steps, f.dtype
        )
        self.mesh = mesh
        lanes = -(-r.chunk // mesh.size) * mesh.size  # a multiple of the device count
        self.lanes = lanes
        self.batch = None if r.batch is None else min(r.batch, lanes // mesh.size)
        dtype = jnp.dtype(f.dtype)
        self.task = jax.tree.map(np.asarray, task)
        self.sigma = np.asarray(task.singular_values, float)
        self.levels = critical_levels(task, widths)
        self.key = jax.random.key_data(jax.random.key(r.seed))
        self.ts = np.linspace(0.0, f.t1, f.saves).astype(dtype)
        self.tols = tuple(np.asarray(v, dtype) for v in (f.t1, f.rtol, f.atol, f.gtol))
        self.order = self._order(r.inits) if r.sort else np.arange(r.inits)

    def _padded(self, indices: np.ndarray) -> np.ndarray:
        return np.concatenate([indices, np.full(self.lanes - indices.size, indices[-1])]).astype(np.int32)

    def _order(self, n: int) -> Int[np.ndarray, " N"]:
        """Inits sorted by the escape time of their slowest mode (theory, from `|s_k(0)|`), so a chunk's
        lanes finish together."""
        s0 = np.concatenate([
            np.asarray(_initial_strengths(self._padded(c), jax.random.wrap_key_data(self.key),
                                          self.task, spec=self.spec))[: c.size]
            for c in np.array_split(np.arange(n), -(-n // self.lanes))
        ])  # fmt: skip
        live = self.sigma > 0
        sigma = self.sigma[live]
        s0 = np.clip(np.abs(s0[:, live]), 1e-12 * sigma, 0.25 * sigma)
        return np.argsort(learning_time(s0, sigma, len(self.spec.widths) - 1).max(axis=1), kind="stable")

    def chunks(self) -> list[np.ndarray]:
        return [self.order[s : s + self.lanes] for s in range(0, self.order.size, self.lanes)]

    def run(self, indices: np.ndarray) -> dict:
        """Run the inits `indices`, reduced to the per-trajectory `FIELDS`."""
        # Deal the (difficulty-sorted) lanes round-robin, so every device gets easy and hard ones.
        deal = np.arange(self.lanes).reshape(-1, self.mesh.size).T.ravel()
        padded = self._padded(indices)[deal]
        lanes = put_lanes(padded, self.mesh)
        with jax.default_matmul_precision("highest"):
            out = _run_chunk(lanes, jax.random.wrap_key_data(self.key), self.task, self.ts, self.tols,
                             spec=self.spec, mesh=self.mesh, batch=self.batch)  # fmt: skip
        undeal = np.argsort(deal)
        out = {k: np.asarray(v)[undeal][: indices.size] for k, v in to_host(out).items()}
        strengths = out.pop("strengths").astype(float)
        final = strengths[:, -1, :]
        out["index"] = indices
        out["critical_value"] = self.levels[np.asarray(level_index(out["final_loss"], self.levels))]
        out["learnt"] = np.asarray(modes_learnt(final, self.sigma))
        out["learning_times"] = _learning_times(self.ts.astype(float), strengths, self.sigma)
        out["visited"] = _visited(
            self.ts.astype(float),
            out["losses"].astype(float),
            self.levels,
            self.sigma.size + 1,
            1 / self.sigma[0],
        )
        return out


def sweep(
    task: Task,
    networks: Networks,
    flow: Flow = Flow(),
    lanes: Lanes = Lanes(),
    *,
    out: str | Path | None = None,
    progress: bool = False,
) -> SweepResult:
    """Integrate the gradient flow on `task` of every architecture of `networks` from
    `lanes.inits` initializations; see `SweepResult` for what each trajectory records.

    Lanes run in chunks of `lanes.chunk` (padded to a multiple of the device count) over all of
    `jax.devices()`. With `out`, each chunk is saved to `out/chunks/` as it finishes, with
    `out/manifest.json` naming the inputs' hash (see `jaxflow._store.Store`: a lock refuses a
    second live run into `out`); rerunning the same inputs into the same `out` skips the saved
    chunks and returns identical numbers.

    Args:
        task: the `Task` (in `flow.dtype` for the run); every architecture maps its `d_0 → d_h`.
        networks: the architectures and their initialization (`Networks`).
        flow: the solver, its tolerances and stops, the saved times and the dtype (`Flow`).
        lanes: the number of inits, the seed, the chunk and batch sizes (`Lanes`).
        out: a folder for the chunk files and manifest (resumable); None keeps everything in memory.
        progress: show a progress bar over chunks.
    """
    given = {
        "task": (task, Task),
        "networks": (networks, Networks),
        "flow": (flow, Flow),
        "lanes": (lanes, Lanes),
    }
    for name, (value, cls) in given.items():
        if not isinstance(value, cls):
            raise InputError(f"{name} must be a {cls.__module__}.{cls.__name__}, got {type(value).__name__}")
    if flow.dtype == "float64" and not jax.config.read("jax_enable_x64"):
        raise InputError(
            'flow.dtype = "float64" needs 64-bit JAX: call jax.config.update("jax_enable_x64", True) '
            'first, or use flow.dtype = "float32"'
        )
    archs = networks.architectures
    for a, widths in enumerate(archs):
        check_task_widths(task, widths, f"networks.architectures[{a}]")
    task = jax.tree.map(lambda x: jnp.asarray(x, flow.dtype), task)
    inputs = {k: tree_digest(task) if k == "task" else dataclasses.asdict(v) for k, (v, _) in given.items()}
    mesh = lanes_mesh()
    writer = jax.process_index() == 0
    store = None if out is None else Store(out, inputs, kind="sweep", writer=writer)
    with store or contextlib.nullcontext():
        runs = [_Architecture(w, task, networks, flow, lanes, mesh) for w in archs]
        todo = [
            (f"a{a:02d}-c{c:05d}", a, idx) for a, r in enumerate(runs) for c, idx in enumerate(r.chunks())
        ]
        # Decided once, before any writing, so that all processes run the same chunks together.
        done = set() if store is None else set(store.pieces())
        rows = []
        bar = progress_bar(
            total=len(todo), initial=len(done), desc="sweep chunks", unit="chunk", enabled=progress
        )
        with bar:
            for name, a, idx in todo:
                if name in done:
                    rows.append((a, store.read(name)))
                    continue
                chunk = runs[a].run(idx)
                if store is not None:
                    store.write(name, {k: chunk[k] for k in FIELDS})
                rows.append((a, chunk))
                bar.update()
    return _assemble(runs, archs, rows)


def sweep_bytes(networks: Networks, flow: Flow, lanes: Lanes, devices: int) -> int:
    """Peak memory of `sweep(task, networks, flow, lanes)` on `devices` devices.

    `in_flight × (stages + 1) × P × b + chunk × saves × (1 + d_0·d_h) × b × 3`, for the largest
    architecture: `P = Σ d_i·d_{i−1}` weights per lane, `b` bytes per number (`flow.dtype`), the
    solver's stages and the state per lane in flight (`min(batch, chunk / devices)` per device), and
    the saved losses and end-to-end maps of the chunk's lanes (`chunk` rounded up to a multiple
    of `devices`) on the device, on the host and reduced.
    """
    f, r = flow, lanes
    b = np.dtype(f.dtype).itemsize
    lanes = -(-r.chunk // devices) * devices
    in_flight = min(r.batch or lanes, lanes // devices) * devices
    worst = 0
    for w in networks.architectures:
        params = sum(a * c for a, c in zip(w[1:], w[:-1]))
        state = in_flight * (SOLVER_STAGES[f.solver] + 1) * params * b
        saves = lanes * f.saves * (1 + w[0] * w[-1]) * b * 3
        worst = max(worst, state + saves)
    return worst


def _assemble(runs, archs, rows) -> SweepResult:
    arch = np.concatenate([np.full(chunk["index"].size, a) for a, chunk in rows])
    cols = {k: np.concatenate([chunk[k] for _, chunk in rows]) for k in FIELDS}
    order = np.lexsort((cols["index"], arch))
    cols = {k: v[order] for k, v in cols.items()}
    r0 = runs[0]
    return SweepResult(
        widths=archs, ts=r0.ts.astype(float), sigma=r0.sigma, levels=tuple(r.levels for r in runs),
        arch=arch[order], **cols,
    )  # fmt: skip
