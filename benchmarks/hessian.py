"""Hessian benchmark: dense Hessian + full eigendecomposition, and matrix-free Lanczos.

1. Dense: a random network of widths (25, 50, 50, 25) (P = 5,000 weights) on a random teacher
   task: `jaxflow.linear.hessian` (forward mode over the blockwise gradient) against a plain
   `jax.jit(jax.hessian(loss))` of the flattened loss, then the full eigendecomposition
   (`jnp.linalg.eigh`, values and vectors; `eigvalsh`, values only, is timed beside it).
   Goal: Hessian + eigh <= 30 s on a 2-core CPU.
2. Lanczos: widths (1000, 500, 1000) (P = 1,000,000), 64 iterations with full
   reorthogonalization, HVPs only: the extreme Ritz values and their residual bounds.
   Goal: <= 60 s on a 2-core CPU.

Compile time is reported apart from run time (each function is run once untimed first). Float64.

    python benchmarks/hessian.py            # full run (coordinator)
    python benchmarks/hessian.py --quick    # a tiny check that the script works
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.flatten_util import ravel_pytree  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

from jaxflow import DeepLinearNetwork, Task, loss  # noqa: E402
from jaxflow.linear import lanczos  # noqa: E402
from jaxflow.linear.hessian import hessian  # noqa: E402


def _timed(f, *args):
    """(compile + first run seconds, warm run seconds, result)."""
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    return first, time.perf_counter() - t, out


def _problem(widths, seed=0):
    key = jax.random.key(seed)
    net = DeepLinearNetwork.init(widths, key, "gaussian", scale=1.0)
    task = Task.teacher(jax.random.fold_in(key, 1), widths[0], widths[-1])
    return net, task


def dense(widths) -> dict:
    net, task = _problem(widths)
    theta, unravel = ravel_pytree(list(net.weights))
    plain = jax.jit(jax.hessian(lambda x: loss(DeepLinearNetwork(tuple(unravel(x))), task)))
    c_ours, t_ours, H = _timed(hessian, net, task)
    c_plain, t_plain, H_plain = _timed(plain, theta)
    c_eigh, t_eigh, (lam, _) = _timed(jax.jit(jnp.linalg.eigh), H)
    _, t_values, _ = _timed(jax.jit(jnp.linalg.eigvalsh), H)
    return {
        "widths": list(widths),
        "P": net.num_parameters,
        "hessian_seconds": t_ours,
        "hessian_first_call_seconds": c_ours,
        "jax_hessian_seconds": t_plain,
        "jax_hessian_first_call_seconds": c_plain,
        "speedup_vs_jax_hessian": t_plain / t_ours,
        "max_abs_difference_vs_jax_hessian": float(jnp.abs(H - H_plain).max()),
        "max_abs_entry": float(jnp.abs(H).max()),
        "eigh_seconds": t_eigh,
        "eigh_first_call_seconds": c_eigh,
        "eigvalsh_seconds": t_values,
        "hessian_plus_eigh_seconds": t_ours + t_eigh,
        "eigenvalue_range": [float(lam[0]), float(lam[-1])],
    }


def krylov(widths, iterations: int, check_dense: bool) -> dict:
    net, task = _problem(widths)
    key = jax.random.key(2)
    first, warm, res = _timed(lambda: lanczos(net, task, key, iterations))
    out = {
        "widths": list(widths),
        "P": net.num_parameters,
        "iterations": iterations,
        "seconds": warm,
        "first_call_seconds": first,
        "smallest": float(res.smallest),
        "largest": float(res.largest),
        "residual_smallest": float(res.residuals[0]),
        "residual_largest": float(res.residuals[-1]),
    }
    if check_dense:  # only where the dense spectrum fits
        lam = np.linalg.eigvalsh(np.asarray(hessian(net, task)))
        out["dense_extremes"] = [float(lam[0]), float(lam[-1])]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = p.parse_args()
    dense_widths = (5, 10, 10, 5) if args.quick else (25, 50, 50, 25)
    lanczos_widths = (40, 20, 40) if args.quick else (1000, 500, 1000)
    iterations = 16 if args.quick else 64

    d = dense(dense_widths)
    print(
        f"dense   P = {d['P']:>9,}: hessian {d['hessian_seconds']:.2f} s "
        f"(jax.hessian {d['jax_hessian_seconds']:.2f} s, x{d['speedup_vs_jax_hessian']:.1f}), "
        f"eigh {d['eigh_seconds']:.2f} s (values only {d['eigvalsh_seconds']:.2f} s), "
        f"total {d['hessian_plus_eigh_seconds']:.2f} s (goal <= 30 s); "
        f"max |H - jax.hessian| = {d['max_abs_difference_vs_jax_hessian']:.1e}"
    )
    k = krylov(lanczos_widths, iterations, check_dense=args.quick)
    print(
        f"lanczos P = {k['P']:>9,}: {k['iterations']} iterations {k['seconds']:.2f} s (goal <= 60 s), "
        f"extremes [{k['smallest']:.6g}, {k['largest']:.6g}] "
        f"± [{k['residual_smallest']:.1e}, {k['residual_largest']:.1e}]"
        + (f", dense [{k['dense_extremes'][0]:.6g}, {k['dense_extremes'][1]:.6g}]" if args.quick else "")
    )
    record = {
        "benchmark": "hessian",
        "quick": args.quick,
        "machine": machine_info(),
        "dtype": "float64",
        "dense": d,
        "lanczos": k,
        "goals": {"dense_seconds": 30.0, "lanczos_seconds": 60.0},
        "goals_met": {
            "dense": d["hessian_plus_eigh_seconds"] <= 30.0,
            "lanczos": k["seconds"] <= 60.0,
        },
    }
    print(f"-> {write_record('hessian', record, args.quick)}")


if __name__ == "__main__":
    main()
