"""The Jacobian scores of `jaxflow study` on resnet18 at 224²: every Jacobian row (before) against
`lines` random rows (now), same process.

    .venv/bin/python benchmarks/study.py            # resnet18 at 224², the zoo's study goal settings
    .venv/bin/python benchmarks/study.py --quick    # resnet18 at 64²: checks the script runs

Needs the ONNX export of benchmarks/zoo.py (`python benchmarks/zoo.py --export-only --models
resnet18 --exporters dynamo --sizes 224`). The stage timed is the study's Jacobian scores with the
zoo's study goal settings (2 inputs, 2 null networks): the network's score and
`null_model_monotonicity` (the null networks' scores and the random orthants), without orthant
perturbations. The frustration search that gives each null network its gauge is replaced by a
random gauge (not timed: it does not depend on how the Jacobian is read, and another benchmark
times it). Before, every score took all 1000 rows and the random orthants one at a time: that
stage is timed on one network and one input (cold, then warm) and scaled to its number of
(network or gauge) × input passes. Now: the stage itself, cold and warm. Writes
benchmarks/results/study-<YYYYMMDD>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

HERE = Path(__file__).resolve().parent
INPUTS, NULLS = 2, 2  # the zoo's study goal: [monotonicity] inputs and null_samples


def _random_gauge(graph, key) -> tuple:
    keys = jax.random.split(key, graph.num_layers)
    return tuple(jax.random.rademacher(k, s, graph.dtype) for k, s in zip(keys, graph.shapes))


def _timed(f):
    start = time.perf_counter()
    out = jax.block_until_ready(f())
    return out, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="resnet18 at 64²: check that the script runs")
    p.add_argument("--cache", default=str(HERE / ".zoo-cache"), help="benchmarks/zoo.py's ONNX folder")
    args = p.parse_args()
    jax.config.update("jax_enable_x64", True)  # as the CLI

    import jaxflow.signed.monotonicity as mono
    from jaxflow.config import StudyMonotonicityConfig
    from jaxflow.signed.function import GraphFunction
    from jaxflow.signed.importers import load_graph

    side = 64 if args.quick else 224
    config = StudyMonotonicityConfig(inputs=INPUTS, null_samples=NULLS)
    budget = config.memory_mb * 2**20
    graph = load_graph(Path(args.cache) / f"resnet18-dynamo-{side}.onnx")
    fn = GraphFunction(graph)
    k_x, k_gauge, k_lines, k_null = jax.random.split(jax.random.key(0), 4)
    inputs = jax.random.uniform(k_x, (INPUTS, *graph.shapes[0]), graph.dtype)
    gauge = _random_gauge(graph, k_gauge)

    class Found:  # stands for the frustration search of each null network (not timed)
        def __init__(self, g, key, **_):
            self.gauge = _random_gauge(g, key)

    mono.frustration = Found

    def stage():
        score = mono.monotonicity_score(
            fn, gauge[0], gauge[-1], inputs, lines=config.lines, key=k_lines, memory_budget=budget
        )
        null = mono.null_model_monotonicity(
            fn, graph, inputs, k_null, samples=NULLS, lines=config.lines, memory_budget=budget
        )
        return score, null

    (score, null), new_cold = _timed(stage)
    _, new_warm = _timed(stage)
    print(f"now ({config.lines} rows): stage cold {new_cold:.1f} s, warm {new_warm:.1f} s")

    one = lambda: mono.monotonicity_score(fn, gauge[0], gauge[-1], inputs[:1], memory_budget=budget)
    exact, old_cold = _timed(one)
    _, old_warm = _timed(one)
    passes = (1 + 2 * NULLS) * INPUTS  # the network, each null network, each random orthant; per input
    old_stage_cold = old_cold + (passes - 1) * old_warm
    old_stage_warm = passes * old_warm
    print(
        f"before (every row): one network and input cold {old_cold:.1f} s, warm {old_warm:.1f} s; "
        f"stage ({passes} passes) cold {old_stage_cold:.0f} s, warm {old_stage_warm:.0f} s"
    )
    deviation = abs(float(score.per_input[0]) - float(exact.per_input[0]))
    stated = float(score.error[0])
    print(
        f"ratio before/now: cold {old_stage_cold / new_cold:.1f}x, warm {old_stage_warm / new_warm:.1f}x; "
        f"first input: exact {float(exact.per_input[0]):.6f}, sampled {float(score.per_input[0]):.6f} "
        f"(|difference| {deviation:.2e} <= stated error {stated:.2e}: {deviation <= stated})"
    )
    record = {
        "machine": machine_info(),
        "quick": args.quick,
        "model": f"resnet18 (torchvision, random weights, dynamo ONNX export) at {side}²",
        "graph_dtype": str(np.dtype(graph.dtype)),
        "outputs": int(graph.sizes[-1]),
        "inputs": INPUTS,
        "null_networks": NULLS,
        "lines": config.lines,
        "memory_mb": config.memory_mb,
        "now": {"stage_cold_s": new_cold, "stage_warm_s": new_warm},
        "before": {
            "one_network_one_input_cold_s": old_cold,
            "one_network_one_input_warm_s": old_warm,
            "passes": passes,
            "stage_cold_s": old_stage_cold,
            "stage_warm_s": old_stage_warm,
            "scaled": "stage = cold + (passes - 1) * warm; warm stage = passes * warm",
        },
        "ratio_cold": old_stage_cold / new_cold,
        "ratio_warm": old_stage_warm / new_warm,
        "first_input": {
            "exact": float(exact.per_input[0]),
            "sampled": float(score.per_input[0]),
            "stated_error": stated,
            "within": deviation <= stated,
        },
        "scores_now": {
            "score": float(score.mean),
            "score_error": float(score.mean_error),
            "null_scores": np.asarray(null.scores).tolist(),
            "random_orthants": np.asarray(null.random_orthants).tolist(),
        },
    }
    print(f"wrote {write_record('study', record, args.quick)}")


if __name__ == "__main__":
    main()
