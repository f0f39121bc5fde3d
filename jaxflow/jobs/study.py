"""`jaxflow study CONFIG [--out DIR] [--input-shape 1,3,H,W]`: frustration and near-monotonicity
study of a network (`--input-shape` overrides the config's `input_shape` of its `model_file`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax

from ..config import StudyConfig, load_config, parse_input_shape
from ..study import run_study


def main(args) -> None:
    jax.config.update("jax_enable_x64", True)  # float64 for analysis (DESIGN)
    config = load_config(args.config, StudyConfig)
    if getattr(args, "input_shape", None) is not None:
        shape = parse_input_shape(args.input_shape)
        if config.model_file is None:
            raise ValueError("--input-shape is the input shape of a model_file; this study has none")
        config = dataclasses.replace(config, input_shape=shape)
    out = Path(args.out) if args.out else Path("results") / Path(args.config).stem
    result = run_study(config, out, config_dir=Path(args.config).parent, progress=True)
    print(f"study {config.name!r} ({result['source']}) in {result['seconds']:.1f} s -> {out}")
    if "frustration" in result:
        fr = result["frustration"]
        print(
            f"  frustration {fr['normalized']:.4f} vs null {fr['null_mean']:.4f} ± {fr['null_std']:.4f} "
            f"(z = {fr['zscore']:.2f}, p = {fr['pvalue']:.3g})"
        )
    if "monotonicity" in result:
        m = result["monotonicity"]
        print(
            f"  Jacobian score {m['score']:.4f} vs null {m['null_mean']:.4f} ± {m['null_std']:.4f}, "
            f"random orthants {m['random_orthant_mean']:.4f}"
        )
    if "dln" in result:
        for phase, v in result["dln"]["by_phase"].items():
            print(
                f"  {phase} modes learnt: frustration {v['frustration']:.4f} vs null {v['null_mean']:.4f} "
                f"({v['count']} saved states)"
            )
    for name in result["files"]:
        print(f"  {out / name}")
