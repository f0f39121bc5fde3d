"""Does the cost preview (`jaxflow frustration --dry-run`) foresee a run's time? On three small
models (the digits MLP and CNN of `configs/`, untrained, and a ResNet-18-shaped graph of
`benchmarks/frustration.py`), the preview's `[least, most]` total against the measured time of
the run it previews (the network's ladder, its bound, the null models, the robustness run and the
per-layer table), with the default estimator; the check: the time lies within
`[least / 2, 2 · most]`. Also the total re-estimated from the rungs the network climbed.

    python benchmarks/dry_run.py            # null_samples 16
    python benchmarks/dry_run.py --quick    # 2 null samples, the MLP only

Writes `benchmarks/results/dry-run-YYYYMMDD.json`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402


def _graphs(quick: bool) -> dict:
    import jax
    from frustration import resnet18_graph

    from jaxflow.config import ModelConfig
    from jaxflow.signed.importers import from_equinox
    from jaxflow.train import input_shape, make_model

    def digits(config: ModelConfig):
        return from_equinox(make_model(config, jax.random.key(0)), input_shape(config))

    graphs = {"digits_mlp": lambda: digits(ModelConfig(kind="mlp", hidden=(64, 32)))}
    if not quick:
        graphs["digits_cnn"] = lambda: digits(ModelConfig(kind="cnn", channels=(8, 16)))
        graphs["resnet18_side16"] = lambda: resnet18_graph(16)
    return graphs


def one(graph, samples: int) -> dict:
    """The preview of the default run of `graph` against `samples` null models, then that run
    timed, and the total re-estimated from the rungs it climbed."""
    import jax

    from jaxflow.config import FrustrationConfig
    from jaxflow.experiments.nulls import config_estimator, frustration_vs_null, layer_frustration
    from jaxflow.experiments.preview import STAGE_COMPILES, preview, search_seconds

    config = FrustrationConfig(null_samples=samples)
    p = preview(graph, config)
    start = time.perf_counter()
    nul, _ = frustration_vs_null(graph, config, jax.random.key(0))
    layer_frustration(graph, nul)
    actual = time.perf_counter() - start
    t, cal = p["time"], p["time"]["calibration"]
    climbed = [list(r) for r in nul.observed.settings.rungs]
    network = search_seconds(graph, config_estimator(config), climbed, cal)
    known = STAGE_COMPILES * cal["compile_s"] + network * (1 + samples) + t["robustness"][0]
    least, most = t["total"]
    return {
        "graph": p["graph"],
        "calibration": cal,
        "rungs_climbed": climbed,
        "estimate_s": [least, most],
        "estimate_from_climbed_rungs_s": known,
        "actual_s": actual,
        "within_2x": least / 2 <= actual <= 2 * most,
        "actual_over_climbed_estimate": actual / known,
        "preview": p,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="2 null samples, the MLP only")
    args = p.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)  # as the command line
    samples = 2 if args.quick else 16
    record = {"machine": machine_info(), "null_samples": samples, "models": {}}
    for name, make in _graphs(args.quick).items():
        r = record["models"][name] = one(make(), samples)
        lo, hi = r["estimate_s"]
        print(f"{name}: estimate {lo:.1f} to {hi:.1f} s, actual {r['actual_s']:.1f} s, "
              f"from the climbed rungs {r['estimate_from_climbed_rungs_s']:.1f} s", flush=True)  # fmt: skip
    print(write_record("dry-run", record, args.quick))


if __name__ == "__main__":
    main()
