"""The study of `jaxflow study CONFIG`: frustration and near-monotonicity of a network against
null models, followed along training (a digits classifier trained here) or along the gradient
flow (deep linear networks). `run_study` writes `study.json` and the plots into a folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from .. import plots
from ..config import StudyConfig
from ..signed.importers import from_equinox
from ..signed.monotonicity import GraphFunction
from ..train import train_digits
from .dln import dln_study as dln_study
from .models import compare_models as compare_models, model_frustration as model_frustration, read_graph
from .network import (
    frustration_vs_null as frustration_vs_null,
    layer_frustration as layer_frustration,
    monotonicity_vs_null as monotonicity_vs_null,
    write_layer_csv,
)

MONOTONICITY_FILES = ("monotonicity.png", "active_subnetworks.png")
NETWORK_FILES = (
    "study.json",
    "frustration_null.png",
    "frustration_layers.png",
    "frustration_layers.csv",
    *MONOTONICITY_FILES,
)
FILES = {
    "model": (*NETWORK_FILES, "training.png"),
    "model_file": NETWORK_FILES,  # without MONOTONICITY_FILES when an activation cannot be evaluated
    "dln": ("study.json", "dln_frustration.png"),
}


def _network_figures(result: dict, out: Path) -> None:
    fr, mono = result["frustration"], result.get("monotonicity", {})
    plots.plot_null_histogram(
        fr["null_normalized"],
        fr["normalized"],
        out / "frustration_null.png",
        title=f"frustration vs null models (z = {fr['zscore']:.2f})",
        xlabel="normalized frustration",
    )
    plots.plot_layer_frustration(result["layers"], out / "frustration_layers.png")
    write_layer_csv(result["layers"], out / "frustration_layers.csv")
    if "score" in mono:
        plots.plot_monotonicity(mono, out / "monotonicity.png")
        plots.plot_active_subnetworks(mono["active"], fr["normalized"], out / "active_subnetworks.png")


def _trained_model(config: StudyConfig, out: Path, progress: bool) -> dict:
    key = jax.random.key(config.seed)
    k_final, k_trace = jax.random.split(key)
    result, data = train_digits(config.model, config.train, progress=progress)
    model, in_shape = result.model, tuple(data.x_test.shape[1:])
    inputs = data.x_test[: config.monotonicity.inputs]
    checkpoints = result.checkpoints
    bar = tqdm(total=2 + len(checkpoints), desc="study", disable=not progress)
    graph = from_equinox(model, in_shape)
    nul, fr = frustration_vs_null(graph, config.frustration, k_final)
    layers = layer_frustration(graph, nul)
    bar.update()
    mono = monotonicity_vs_null(
        model, graph, nul.observed.gauge, inputs, config.frustration, config.monotonicity, k_final
    )
    bar.update()
    trace = []
    for c, k in zip(checkpoints, jax.random.split(k_trace, len(checkpoints))):
        g = from_equinox(c.model, in_shape)
        nul_c, f = frustration_vs_null(g, config.frustration, k, config.monotonicity.null_samples)
        m = monotonicity_vs_null(
            c.model,
            g,
            nul_c.observed.gauge,
            inputs,
            config.frustration,
            config.monotonicity,
            k,
            perturbations=False,
        )
        trace.append(
            {
                "epoch": c.epoch,
                "train_loss": c.train_loss,
                "test_accuracy": c.test_accuracy,
                "frustration": f,
                "monotonicity": m,
            }
        )
        bar.update()
    bar.close()
    out_json = {
        "graph": {"layers": list(graph.names), "shapes": [list(s) for s in graph.shapes]},
        "num_edges": graph.num_edges(),
        "test_accuracy": checkpoints[-1].test_accuracy,
        "frustration": fr,
        "layers": layers,
        "monotonicity": mono,
        "training": trace,
    }
    _network_figures(out_json, out)
    plots.plot_training(trace, out / "training.png")
    return out_json


def _model_file(config: StudyConfig, out: Path, config_dir: Path, progress: bool) -> dict:
    path = Path(config.model_file)
    graph = read_graph(path if path.is_absolute() else config_dir / path, config.input_shape)
    k_null, k_inputs, k_mono = jax.random.split(jax.random.key(config.seed), 3)
    with tqdm(total=2, desc="study", disable=not progress) as bar:
        nul, fr = frustration_vs_null(graph, config.frustration, k_null)
        layers = layer_frustration(graph, nul)
        out_json = {"num_edges": graph.num_edges(), "frustration": fr, "layers": layers}
        bar.update()
        try:
            fn = GraphFunction(graph)
        except ValueError as e:  # an activation that cannot be evaluated: frustration only
            out_json["monotonicity"] = {"skipped": str(e)}
        else:
            shape = (config.monotonicity.inputs, *graph.shapes[0])
            inputs = jax.random.uniform(k_inputs, shape, graph.dtype)
            out_json["monotonicity"] = monotonicity_vs_null(
                fn, graph, nul.observed.gauge, inputs, config.frustration, config.monotonicity, k_mono
            )
        bar.update()
    _network_figures(out_json, out)
    return out_json


def run_study(config: StudyConfig, out, *, config_dir=".", progress: bool = False) -> dict:
    """Run the study of `config`, write `study.json` and the figures into the folder `out`
    (created), and return the JSON content. `config_dir` anchors a relative `model_file`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if config.dln is not None:
        key = jax.random.key(config.seed)
        result = {"dln": dln_study(config.dln, config.frustration, key, progress=progress)}
        plots.plot_dln_frustration(result["dln"], out / "dln_frustration.png")
        source = "dln"
    elif config.model is not None:
        result = _trained_model(config, out, progress)
        source = "model"
    else:
        result = _model_file(config, out, Path(config_dir), progress)
        source = "model_file"
    result = {"name": config.name, "source": source, "seconds": time.perf_counter() - start, **result}
    skipped = "skipped" in result.get("monotonicity", {})
    result["files"] = [f for f in FILES[source] if not (skipped and f in MONOTONICITY_FILES)]
    (out / "study.json").write_text(json.dumps(result, indent=1, default=_json_default))
    return result


def _json_default(x):
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")
