"""`jaxflow frustration MODEL_FILE [--config C] [--out DIR]`: the frustration of a model's signed graph
against sign-shuffled null models, overall and per trained layer, as JSON and plots."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
from tqdm.auto import tqdm

from .. import plots
from ..config import FrustrationConfig, load_config
from ..signed.importers import load_graph
from ..study.network import frustration_vs_null, layer_frustration


def _line(name: str, s: dict) -> str:
    p = f"   p = {s['pvalue']:.3g}" if "pvalue" in s else ""
    return (
        f"{name:<32} {s['normalized']:9.4f}   {s['null_mean']:.4f} ± {s['null_std']:.4f}"
        f"   z = {s['zscore']:7.2f}{p}"
    )


def main(args) -> None:
    jax.config.update("jax_enable_x64", True)  # float64 for analysis (DESIGN)
    config = load_config(args.config, FrustrationConfig) if args.config else FrustrationConfig()
    model = Path(args.model)
    out = Path(args.out) if args.out else Path("results") / f"frustration-{model.stem}"
    start = time.perf_counter()
    with tqdm(total=3, desc="reading the model") as bar:
        graph = load_graph(model)
        edges = graph.num_edges()
        bar.write(f"{model}: {graph.num_layers} layers, {graph.num_nodes} nodes, {edges} edges")
        bar.update()
        bar.set_description(f"network and {config.null_samples} null models")
        nul, overall = frustration_vs_null(graph, config, jax.random.key(config.seed))
        bar.update()
        bar.set_description("per layer")
        layers = layer_frustration(graph, nul) if config.per_layer else []
        for lay in layers:
            spread = lay["null_std"]
            lay["zscore"] = (lay["normalized"] - lay["null_mean"]) / spread if spread > 0 else float("nan")
        bar.update()
    seconds = time.perf_counter() - start

    c = config
    print(f"method {c.method!r}, {c.restarts} restarts, {c.null_samples} {c.null_model!r} null models")
    print(f"{'':<32} {'frustration':>9}   null mean ± std")
    print(_line("overall (normalized)", overall))
    for lay in layers:
        print(_line(f"  {lay['source']} -> {lay['destination']}"[:32], lay))
    if layers:
        print("(per layer: a trained block's frustrated share δ_b / Σ_b|a| under the best gauges)")

    out.mkdir(parents=True, exist_ok=True)
    result = {
        "model": str(model),
        "num_layers": graph.num_layers,
        "num_nodes": graph.num_nodes,
        "num_edges": edges,
        "config": dataclasses.asdict(config),
        "frustration": overall,
        "layers": layers,
        "seconds": seconds,
    }
    files = [out / "frustration.json", out / "frustration_null.png"]
    files[0].write_text(json.dumps(result, indent=2))
    plots.plot_null_histogram(
        overall["null_normalized"],
        overall["normalized"],
        files[1],
        title=f"{model.name}: frustration vs null models (z = {overall['zscore']:.2f})",
        xlabel="normalized frustration",
    )
    if layers:
        files.append(plots.plot_layer_frustration(layers, out / "frustration_layers.png"))
    for f in files:
        print(f"  {f}")
