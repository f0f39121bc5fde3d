"""Benchmark: one sweep of gradient flows timed four ways (issue 2).

Widths (16, 32, 32, 32, 16), Σ_yx = diag(linspace(2, 1, 16)), Gaussian init of scale 0.1 (the same
keys `fold_in(key(0), i)` everywhere), rtol = atol = 1e-6, run until ‖∇L‖ < 1e-3 (the gradient's
noise floor at these tolerances is ~1e-4; the loss is then ~1e-8 from the minimum 0):

1. `jaxflow.sweep` (sorted by difficulty, chunked, vmapped per device, shard_map over devices; on
   CPU one device per core, as the `jaxflow sweep` command sets up);
2. a loop of `scipy.integrate.solve_ivp` (RK45, NumPy right-hand side, terminal event);
3. a Python loop over one jitted `diffrax.diffeqsolve` written plainly (the tuple of weights as
   the state, Tsit5, Diffrax's default PID controller; the same right-hand side and stop event);
4. a plain `jax.jit(jax.vmap(diffeqsolve))` over all initializations.

Compile time is excluded (each JAX method is warmed up on the same shapes). Prints trajectories/s
and ratios, checks that all methods reach the same final losses (to 1e-6), reports float32 beside
float64, and writes benchmarks/results/flow_sweep-<date>.json.

    python benchmarks/flow_sweep.py            # full: 1024 trajectories (scipy on 64)
    python benchmarks/flow_sweep.py --quick    # 32 trajectories, a check that it all runs
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import diffrax
import jax

# jaxflow's sweep runs lanes on every device; on CPU those are the cores (as `jaxflow sweep` sets up).
# The baselines are the plain calls, on the default device.
jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.integrate  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

from jaxflow import DeepLinearNetwork, Task  # noqa: E402
from jaxflow.linear.objective import gradient_norm, loss, weights_field  # noqa: E402
from jaxflow.linear.sweep import Flow, Lanes, Networks, sweep  # noqa: E402

WIDTHS = (16, 32, 32, 32, 16)
SIGMA = np.linspace(2.0, 1.0, 16)
SCALE, RTOL, ATOL, GTOL, T1, MAX_STEPS, SEED = 0.1, 1e-6, 1e-6, 1e-3, 1000.0, 4096, 0


def arguments(n: int, dtype: str, chunk: int, batch: int | None, solver: str) -> tuple:
    """The task and the settings `sweep` takes, for `n` inits."""
    flow = Flow(
        t1=T1, rtol=RTOL, atol=ATOL, gtol=GTOL, solver=solver, max_steps=MAX_STEPS, saves=2, dtype=dtype
    )
    lanes = Lanes(inits=n, seed=SEED, chunk=chunk, batch=batch)
    return Task.from_spectrum(SIGMA, WIDTHS[0], WIDTHS[-1]), Networks(WIDTHS, "gaussian", SCALE), flow, lanes


def inits(n: int) -> list[DeepLinearNetwork]:
    key = jax.random.key(SEED)
    return [DeepLinearNetwork.init(WIDTHS, jax.random.fold_in(key, i), "gaussian", SCALE) for i in range(n)]


def timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def run_jaxflow(n, dtype, chunk, batch, solver):
    sweep(*arguments(chunk, dtype, chunk, batch, solver))  # compile on the same chunk shape
    result, seconds = timed(lambda: sweep(*arguments(n, dtype, chunk, batch, solver)))
    return result.final_loss, result.num_steps, seconds


TASK = Task.from_spectrum(SIGMA, WIDTHS[0], WIDTHS[-1])
TOLS = tuple(jnp.asarray(v) for v in (T1, RTOL, ATOL, GTOL))


def one(weights, tols):
    """The plain baseline: one `diffrax.diffeqsolve` as a user writes it (weights as the state,
    Tsit5, a default PID controller, the same right-hand side and stop event as jaxflow)."""
    t1, rtol, atol, gtol = tols
    field = lambda t, ws, task: weights_field(ws, task)
    stop = lambda t, ws, task, **kw: gradient_norm(ws, task) < gtol
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, t1, None, weights, TASK,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        event=diffrax.Event(stop), max_steps=MAX_STEPS, throw=False,
    )  # fmt: skip
    return loss(DeepLinearNetwork(tuple(w[-1] for w in sol.ys)), TASK)


def run_jit_loop(nets):
    f = jax.jit(one)
    f(nets[0].weights, TOLS).block_until_ready()
    out, seconds = timed(lambda: [f(net.weights, TOLS) for net in nets])
    return np.array(out), seconds


def run_vmap(nets):
    stacked = jax.tree.map(lambda *w: jnp.stack(w), *[net.weights for net in nets])
    f = jax.jit(jax.vmap(one, in_axes=(0, None)))
    f(stacked, TOLS).block_until_ready()
    out, seconds = timed(lambda: f(stacked, TOLS))
    return np.asarray(out), seconds


def numpy_field(widths):
    shapes = [(widths[i + 1], widths[i]) for i in range(len(widths) - 1)]
    sizes = np.cumsum([0] + [a * b for a, b in shapes])
    syx = np.asarray(TASK.sigma_yx)

    def field(t, y):
        ws = [y[sizes[i] : sizes[i + 1]].reshape(s) for i, s in enumerate(shapes)]
        prefix = [ws[0]]
        for w in ws[1:]:
            prefix.append(w @ prefix[-1])
        R = syx - prefix[-1]
        out, suffix = [], None
        for i in range(len(ws) - 1, -1, -1):
            g = R if suffix is None else suffix.T @ R
            out.append((g if i == 0 else g @ prefix[i - 1].T).ravel())
            suffix = ws[i] if suffix is None else suffix @ ws[i]
        return np.concatenate(out[::-1])

    return field, sizes, shapes


def run_scipy(nets):
    field, sizes, shapes = numpy_field(WIDTHS)
    event = lambda t, y: np.linalg.norm(field(t, y)) - GTOL
    event.terminal = True
    losses = []
    start = time.perf_counter()
    for net in nets:
        y0 = np.concatenate([np.asarray(w).ravel() for w in net.weights])
        sol = scipy.integrate.solve_ivp(field, (0, T1), y0, method="RK45", rtol=RTOL, atol=ATOL, events=event)
        ws = [sol.y[sizes[i] : sizes[i + 1], -1].reshape(s) for i, s in enumerate(shapes)]
        losses.append(float(loss(DeepLinearNetwork(tuple(map(jnp.asarray, ws))), TASK)))
    return np.array(losses), time.perf_counter() - start


def profile(nets, batch: int) -> dict:
    """Where the time goes: one right-hand side alone and batched (per lane), one loop step."""

    def per_call(f, *a, reps=50):
        jax.block_until_ready(f(*a))
        start = time.perf_counter()
        for _ in range(reps):
            jax.block_until_ready(f(*a))
        return (time.perf_counter() - start) / reps

    single = per_call(jax.jit(lambda w: weights_field(w, TASK)), nets[0].weights)
    stacked = jax.tree.map(lambda *w: jnp.stack(w), *[net.weights for net in nets[:batch]])
    batched = per_call(jax.jit(jax.vmap(lambda w: weights_field(w, TASK))), stacked) / batch
    return {"rhs_us_single": 1e6 * single, "rhs_us_per_lane_batched": 1e6 * batched, "rhs_batch": batch}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="32 trajectories (scipy on 4): a check that it runs")
    p.add_argument("-n", type=int, default=None, help="trajectories (default 1024, quick 32)")
    p.add_argument("--scipy-n", type=int, default=None, help="trajectories for the scipy loop (default n/16)")
    p.add_argument("--chunk", type=int, default=256, help="jaxflow chunk size")
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help="lanes vmapped per device, each timed (default 1 8 32; quick 1 8)")  # fmt: skip
    p.add_argument("--solver", default="tsit5", help="jaxflow solver")
    args = p.parse_args()
    n = args.n or (32 if args.quick else 1024)
    n_scipy = args.scipy_n or max(4, n // 16)
    chunk = min(args.chunk, n)
    batches = args.batches or ([1, 8] if args.quick else [1, 8, 32])
    print(f"{n} trajectories of widths {WIDTHS} on {jax.devices()}")

    nets = inits(n)
    variants = {}
    for b in batches:
        L_b, steps, s_b = run_jaxflow(n, "float64", chunk, b, args.solver)
        variants[b] = (L_b, steps, s_b)
        print(f"  jaxflow batch {b:<4} {n / s_b:9.1f} trajectories/s")
    best = min(variants, key=lambda b: variants[b][2])
    L_jf, steps, s_jf = variants[best]
    L_jf32, _, s_jf32 = run_jaxflow(n, "float32", chunk, best, args.solver)
    L_loop, s_loop = run_jit_loop(nets)
    L_vmap, s_vmap = run_vmap(nets)
    L_sp, s_sp = run_scipy(nets[:n_scipy])
    rate = {
        "jaxflow_sweep": n / s_jf,
        "jaxflow_sweep_float32": n / s_jf32,
        "scipy_solve_ivp_loop": n_scipy / s_sp,
        "jit_diffeqsolve_loop": n / s_loop,
        "vmap_diffeqsolve": n / s_vmap,
    }
    prof = profile(nets, max(batches))
    prof["loop_us_per_step"] = 1e6 * s_loop / float(np.sum(steps))
    prof["steps_mean"] = float(np.mean(steps))
    prof["steps_max"] = int(np.max(steps))
    prof["useful_lane_steps_plain_vmap"] = float(np.mean(steps) / np.max(steps))  # all wait for the slowest
    diffs = {
        "jit_loop": float(np.max(np.abs(L_jf - L_loop))),
        "vmap": float(np.max(np.abs(L_jf - L_vmap))),
        "scipy": float(np.max(np.abs(L_jf[:n_scipy] - L_sp))),
        "float32": float(np.max(np.abs(L_jf - L_jf32))),
    }
    best_jax = max(rate["jit_diffeqsolve_loop"], rate["vmap_diffeqsolve"])
    record = {
        "n": n,
        "n_scipy": n_scipy,
        "widths": WIDTHS,
        "singular_values": SIGMA.tolist(),
        "init_scale": SCALE,
        "rtol": RTOL,
        "atol": ATOL,
        "gtol": GTOL,
        "chunk": chunk,
        "devices": [str(d) for d in jax.devices()],
        "batch": best,
        "solver": args.solver,
        "jaxflow_sweep_by_batch": {str(b): n / v[2] for b, v in variants.items()},
        "profile": prof,
        "trajectories_per_second": rate,
        "speedup_vs_scipy": rate["jaxflow_sweep"] / rate["scipy_solve_ivp_loop"],
        "speedup_vs_best_jax_baseline": rate["jaxflow_sweep"] / best_jax,
        "max_final_loss_difference": diffs,
        "same_final_losses_1e-6": all(diffs[k] <= 1e-6 for k in ("jit_loop", "vmap", "scipy")),
        "machine": machine_info(),
    }
    for k, v in rate.items():
        print(f"  {k:<24} {v:9.1f} trajectories/s")
    print(f"  profile: {prof}")
    print(f"  speedup vs scipy {record['speedup_vs_scipy']:.1f}x, vs best JAX baseline "
          f"{record['speedup_vs_best_jax_baseline']:.1f}x; max final-loss differences {diffs}")  # fmt: skip
    print(f"  {write_record('flow_sweep', record, args.quick)}")


if __name__ == "__main__":
    main()
