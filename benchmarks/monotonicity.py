"""Near-monotonicity benchmark: Jacobian scores per second for a digits CNN, and the run time of
the full `jaxflow study` for the digits configs (training included).

    .venv/bin/python benchmarks/monotonicity.py            # full: 10^4 inputs, both digits studies
    .venv/bin/python benchmarks/monotonicity.py --quick    # seconds: checks the script runs

Baseline for the scores: the same Jacobian score computed one input at a time (a jitted
`jax.jacfwd` per input in a Python loop). Goal: the digits CNN study in under 5 minutes on 2 cores.
Writes benchmarks/results/monotonicity-<YYYYMMDD>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def scores_per_second(n_inputs: int, n_baseline: int) -> dict:
    from jaxflow.config import ModelConfig
    from jaxflow.signed.monotonicity import monotonicity_score
    from jaxflow.train import load_digits, make_model

    model = make_model(ModelConfig(kind="cnn", channels=(8,)), jax.random.key(0))
    data = load_digits((1, 8, 8))
    x = jnp.tile(data.x_train, (n_inputs // data.x_train.shape[0] + 1, 1, 1, 1))[:n_inputs]
    s_in = jnp.where(jax.random.bernoulli(jax.random.key(1), 0.5, (64,)), 1.0, -1.0)
    s_out = jnp.where(jax.random.bernoulli(jax.random.key(2), 0.5, (10,)), 1.0, -1.0)
    monotonicity_score(model, s_in, s_out, x).per_input.block_until_ready()  # compile
    t = time.perf_counter()
    score = monotonicity_score(model, s_in, s_out, x)
    score.per_input.block_until_ready()
    fast = time.perf_counter() - t

    @jax.jit
    def one(x):
        J = jax.jacfwd(model)(x).reshape(10, 64)
        return jnp.sum(jnp.maximum(0, s_out[:, None] * J * s_in[None, :])) / jnp.sum(jnp.abs(J))

    one(x[0]).block_until_ready()
    xs = np.asarray(x[:n_baseline])  # host inputs: the loop pays dispatch, not slicing
    t = time.perf_counter()
    base = [float(one(xi)) for xi in xs]
    slow = time.perf_counter() - t
    np.testing.assert_allclose(base, score.per_input[:n_baseline], rtol=1e-10)  # same numbers
    rate, base_rate = n_inputs / fast, n_baseline / slow
    print(
        f"Jacobian score, digits CNN: {rate:,.0f} inputs/s (jaxflow, {n_inputs} inputs, {fast:.2f} s); "
        f"per-input loop {base_rate:,.0f} inputs/s; ratio {rate / base_rate:.1f}x"
    )
    return {
        "inputs": n_inputs,
        "seconds": fast,
        "scores_per_second": rate,
        "baseline_scores_per_second": base_rate,
        "speedup": rate / base_rate,
    }


def study_seconds(config_name: str, quick: bool) -> dict:
    from jaxflow.config import StudyConfig, load_config
    from jaxflow.experiments import study

    config = load_config(ROOT / "configs" / config_name, StudyConfig)
    if quick:
        config = dataclasses.replace(
            config,
            train=dataclasses.replace(config.train, epochs=2, checkpoint_every=2),
            frustration=dataclasses.replace(config.frustration, restarts=4, null_samples=3),
            monotonicity=dataclasses.replace(
                config.monotonicity, inputs=32, perturbations=2, null_samples=3, active_inputs=3
            ),
        )
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        result = study.run(config)
        study.write(result, out)
        seconds = time.perf_counter() - t
    print(
        f"study {config_name}: {seconds:.1f} s (training included); frustration "
        f"{result['frustration']['normalized']:.4f} vs null {result['frustration']['null_mean']:.4f}, "
        f"score {result['monotonicity']['score']:.4f} vs null {result['monotonicity']['null_mean']:.4f}"
    )
    return {
        "seconds": seconds,
        "frustration": result["frustration"]["normalized"],
        "frustration_null_mean": result["frustration"]["null_mean"],
        "score": result["monotonicity"]["score"],
        "score_null_mean": result["monotonicity"]["null_mean"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    args = p.parse_args()
    jax.config.update("jax_enable_x64", True)
    record = {"machine": machine_info(), "quick": args.quick}
    record["scores"] = scores_per_second(1_000 if args.quick else 10_000, 100 if args.quick else 1_000)
    record["study"] = {
        name: study_seconds(name, args.quick) for name in ("study_digits_cnn.toml", "study_digits_mlp.toml")
    }
    cnn = record["study"]["study_digits_cnn.toml"]["seconds"]
    record["goal_cnn_study_under_300s"] = cnn < 300
    print(f"goal: digits CNN study < 300 s: {'met' if cnn < 300 else 'NOT met'} ({cnn:.0f} s)")
    print(f"wrote {write_record('monotonicity', record, args.quick)}")


if __name__ == "__main__":
    main()
