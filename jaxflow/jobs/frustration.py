"""`jaxflow frustration MODEL_FILE... [--config C] [--out DIR] [--input-shape 1,3,H,W]`: the
frustration of a model's signed graph against sign-shuffled null models, overall and per trained
layer, as JSON, CSV and plots; with several models (or a config's `models` list), a study across
models: one table and one figure comparing them, each model's own results in `out/<name>/`."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
from tqdm.auto import tqdm

from ..config import FrustrationConfig, FrustrationModel, load_config, onnx_shape, parse_input_shape
from ..study.models import compare_models, markdown_table, model_frustration, write_model_result


def _line(name: str, s: dict) -> str:
    p = f"   p = {s['pvalue']:.3g}" if "pvalue" in s else ""
    return (
        f"{name:<32} {s['normalized']:9.4f}   {s['null_mean']:.4f} ± {s['null_std']:.4f}"
        f"   z = {s['zscore']:7.2f}{p}"
    )


def _entries(args, config: FrustrationConfig, input_shape) -> tuple[list[FrustrationModel], bool]:
    """The models to run and whether this is a study across models (two or more models on the
    command line, or the config's `models` list); `--input-shape` overrides every other shape of
    an ONNX model (an npz model's shapes are fixed by its arrays)."""
    if args.model:
        shape = input_shape or config.input_shape
        return [FrustrationModel(m, onnx_shape(m, shape)) for m in args.model], len(args.model) > 1
    if not config.models:
        raise ValueError(
            "no model given: name one or more model files, or list them as models = [...] in --config"
        )
    return config.model_entries(Path(args.config).parent, input_shape), True


def main(args) -> int:
    jax.config.update("jax_enable_x64", True)  # float64 for analysis (DESIGN)
    config = load_config(args.config, FrustrationConfig) if args.config else FrustrationConfig()
    input_shape = parse_input_shape(args.input_shape) if args.input_shape is not None else None
    entries, across = _entries(args, config, input_shape)
    if across:
        return _across(args, config, entries)
    _single(args, config, entries[0])
    return 0


def _single(args, config: FrustrationConfig, entry: FrustrationModel) -> None:
    model = Path(entry.file)
    out = Path(args.out) if args.out else Path("results") / f"frustration-{model.stem}"
    with tqdm(total=3, desc="reading the model") as bar:
        stages = iter(range(3))

        def status(stage: str) -> None:
            if next(stages):
                bar.update()
            bar.set_description(stage)

        result = model_frustration(model, config, input_shape=entry.input_shape, status=status)
        bar.update()
    overall, layers = result["frustration"], result["layers"]
    print(f"{model}: {result['num_layers']} layers, {result['num_nodes']} nodes, {result['num_edges']} edges")
    c = config
    print(
        f"method {c.method!r}, {result['restarts']} restarts, {c.null_samples} {c.null_model!r} null models"
    )
    print(f"{'':<32} {'frustration':>9}   null mean ± std")
    print(_line("overall (normalized)", overall))
    for lay in layers:
        print(_line(f"  {lay['index']:>3} {lay['source']} -> {lay['destination']}"[:32], lay))
    if layers:
        print("(per layer: a trained block's frustrated share δ_b / Σ_b|a| under the best gauges)")
    for f in write_model_result(result, out):
        print(f"  {f}")


def _across(args, config: FrustrationConfig, entries: list[FrustrationModel]) -> int:
    if args.out:
        out = Path(args.out)
    elif args.model:
        out = Path("results") / "frustration-models"
    else:
        out = Path("results") / f"frustration-{Path(args.config).stem}"
    table = compare_models(entries, config, out, progress=True, log=print)
    print()
    print(markdown_table(table["models"]), end="")
    for f in table["files"]:
        print(f"  {f}")
    failed = table["failed"]
    if failed:
        print(
            f"jaxflow frustration: {failed} of {len(entries)} models failed (see the error column)",
            file=sys.stderr,
        )
        return 2
    return 0
