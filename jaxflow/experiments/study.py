"""`jaxflow study CONFIG [--out DIR] [--input-shape 1,3,H,W] [--dry-run]`: frustration and near-monotonicity
of a network against null models, followed along training (a digits classifier trained here), of
a model file, or of deep linear networks along the gradient flow (`dln`); `study.json` and the
figures in a folder."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from .. import plots
from .._checks import InputError, output_folder
from .._memory import Budget
from .._progress import progress_bar
from .._store import write_text
from .._types import Array, Float, Key
from ..config import (
    StudyConfig,
    StudyFrustrationConfig,
    StudyMonotonicityConfig,
    load_config,
    parse_input_shape,
)
from ..signed import SignedGraph
from ..signed.function import GraphFunction
from ..signed.importers import from_equinox, load_graph
from ..signed.monotonicity import (
    active_subnetworks,
    monotonicity_score,
    null_model_monotonicity,
    orthant_perturbation_test,
)
from ..train import input_shape, make_model, train_digits
from .dln import dln_study
from .nulls import frustration_line, frustration_vs_null, layer_frustration, saved_samples, write_layer_csv
from .preview import preview, preview_lines

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
"""The files of a study, by its source."""


def _floats(x) -> list[float]:
    return np.asarray(x, float).ravel().tolist()


def monotonicity_vs_null(
    model,
    graph: SignedGraph,
    gauge,
    inputs: Float[Array, "N ..."],
    frustration_config: StudyFrustrationConfig,
    config: StudyMonotonicityConfig,
    key: Key,
    *,
    perturbations: bool = True,
) -> dict:
    """The Jacobian score of `model` under `gauge` (the best one found for `graph`) against
    null-model networks and random orthants; with `perturbations`, also the orthant-perturbation
    test and the active subnetworks."""
    k_null, k_pert, k_active, k_lines = jax.random.split(key, 4)
    search = {
        "method": frustration_config.method,
        "restarts": frustration_config.restarts,
        "tol": frustration_config.tol,
    }
    budget = {"memory_budget": config.memory_mb * 2**20}
    score = monotonicity_score(model, gauge[0], gauge[-1], inputs, lines=config.lines, key=k_lines, **budget)
    null = null_model_monotonicity(
        model,
        graph,
        inputs,
        k_null,
        samples=config.null_samples,
        null_model=frustration_config.null_model,
        sizes=config.sizes if perturbations else None,
        perturbations=config.perturbations,
        lines=config.lines,
        **budget,
        **search,
    )
    out = {
        "score": float(score.mean),
        "score_error": float(score.mean_error),
        "per_input": _floats(score.per_input),
        "per_input_error": _floats(score.error),
        "null_scores": _floats(null.scores),
        "null_score_errors": _floats(null.scores_error),
        "null_mean": float(null.mean),
        "null_std": float(null.std),
        "zscore": float(null.zscore(score.mean)),
        "random_orthant_scores": _floats(null.random_orthants),
        "random_orthant_errors": _floats(null.random_orthants_error),
        "random_orthant_mean": float(np.mean(null.random_orthants)),
    }
    if not perturbations:
        return out
    pert = orthant_perturbation_test(
        model,
        gauge[0],
        gauge[-1],
        inputs,
        k_pert,
        sizes=config.sizes,
        samples=config.perturbations,
        **budget,
    )
    active = active_subnetworks(
        model, graph, inputs[: config.active_inputs], k_active, full_gauge=gauge, **search
    )
    n = active.agreement.shape[0]
    off_diagonal = np.asarray(active.agreement)[~np.eye(n, dtype=bool)]
    out["perturbation"] = {
        "sizes": _floats(pert.sizes),
        "coordinate": _floats(pert.coordinate),
        "vector": _floats(pert.vector),
        "reference_coordinate": _floats(pert.reference_coordinate),
        "reference_vector": _floats(pert.reference_vector),
        "null_coordinate": np.asarray(null.perturbation.coordinate, float).tolist(),
        "null_vector": np.asarray(null.perturbation.vector, float).tolist(),
    }
    out["active"] = {
        "normalized": _floats(active.normalized),
        "active_fraction": _floats(active.active),
        "agreement_full": _floats(active.agreement_full),
        "agreement": np.asarray(active.agreement, float).tolist(),
        "agreement_mean": float(off_diagonal.mean()) if off_diagonal.size else 1.0,
    }
    return out


def _nulls(out) -> Path | None:
    """Where the study's null samples are saved as they finish (a rerun resumes)."""
    return None if out is None else Path(out) / "nulls"


def _trained_model(config: StudyConfig, out, progress: bool, max_memory) -> dict:
    key = jax.random.key(config.seed)
    k_final, k_trace = jax.random.split(key)
    result, data = train_digits(config.model, config.train, progress=progress)
    model, in_shape = result.model, tuple(data.x_test.shape[1:])
    inputs = data.x_test[: config.monotonicity.inputs]
    checkpoints = result.checkpoints
    bar = progress_bar(total=2 + len(checkpoints), desc="study", enabled=progress)
    graph = from_equinox(model, in_shape)
    status = bar.set_description_str
    cost = preview(graph, config.frustration, max_memory)
    nul, fr = frustration_vs_null(
        graph, config.frustration, k_final, out=_nulls(out), status=status, max_memory=max_memory
    )
    layers = layer_frustration(graph, nul)
    bar.update()
    mono = monotonicity_vs_null(
        model, graph, nul.observed.gauge, inputs, config.frustration, config.monotonicity, k_final
    )
    bar.update()
    trace = []
    each = dataclasses.replace(config.frustration, robustness=False)  # the trace: one estimator
    for c, k in zip(checkpoints, jax.random.split(k_trace, len(checkpoints))):
        g = from_equinox(c.model, in_shape)
        nul_c, f = frustration_vs_null(g, each, k, config.monotonicity.null_samples, max_memory=max_memory)
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
    return {
        "preview": cost,
        "graph": {"layers": list(graph.names), "shapes": [list(s) for s in graph.shapes]},
        "num_edges": graph.num_edges(),
        "test_accuracy": checkpoints[-1].test_accuracy,
        "frustration": fr,
        "layers": layers,
        "monotonicity": mono,
        "training": trace,
    }


def _file_graph(config: StudyConfig, config_dir: Path, max_memory) -> SignedGraph:
    """The graph of the study's `model_file` (relative to `config_dir` unless absolute)."""
    path = Path(config.model_file)
    path = path if path.is_absolute() else config_dir / path
    return load_graph(path, input_shape=config.input_shape, max_memory=max_memory)


def _network(config: StudyConfig, config_dir: Path, max_memory) -> SignedGraph | None:
    """The graph whose frustration the study searches, before it runs: its `model_file`, or the
    untrained classifier of its `model` (training keeps the graph's shape); None for `dln`."""
    if config.model_file is not None:
        return _file_graph(config, config_dir, max_memory)
    if config.model is not None:
        model = make_model(config.model, jax.random.key(config.train.seed))
        return from_equinox(model, input_shape(config.model))
    return None


def _model_file(config: StudyConfig, config_dir: Path, out, progress: bool, max_memory) -> dict:
    graph = _file_graph(config, config_dir, max_memory)
    cost = preview(graph, config.frustration, max_memory)
    k_null, k_inputs, k_mono = jax.random.split(jax.random.key(config.seed), 3)
    with progress_bar(total=2, desc="study", enabled=progress) as bar:
        nul, fr = frustration_vs_null(
            graph,
            config.frustration,
            k_null,
            out=_nulls(out),
            status=bar.set_description_str,
            max_memory=max_memory,
        )
        layers = layer_frustration(graph, nul)
        result = {"preview": cost, "num_edges": graph.num_edges(), "frustration": fr, "layers": layers}
        bar.update()
        try:
            fn = GraphFunction(graph)
        except ValueError as e:  # an activation that cannot be evaluated: frustration only
            result["monotonicity"] = {"skipped": str(e)}
        else:
            shape = (config.monotonicity.inputs, *graph.shapes[0])
            inputs = jax.random.uniform(k_inputs, shape, graph.dtype)
            result["monotonicity"] = monotonicity_vs_null(
                fn, graph, nul.observed.gauge, inputs, config.frustration, config.monotonicity, k_mono
            )
        bar.update()
    return result


def run(
    config: StudyConfig,
    *,
    config_dir=".",
    out=None,
    progress: bool = False,
    max_memory: int | Budget | None = None,
) -> dict:
    """Run the study of `config` and return the content of `study.json`: the `preview` of the
    network's frustration run (`preview.preview`; not for `dln`), its `name`, `source`
    (`"model"`, `"model_file"` or `"dln"`), `seconds`, results and the `files` that `write` makes.
    `config_dir` anchors a relative `model_file`; with `out`, the network's null samples are
    saved in `out/nulls*/` as they finish, and a rerun resumes; `max_memory` is the memory
    budget (`_memory.budget`) of the import and of each run against null models."""
    start = time.perf_counter()
    if config.dln is not None:
        key = jax.random.key(config.seed)
        dln = dln_study(config.dln, config.frustration, key, progress=progress, max_memory=max_memory)
        result = {"dln": dln}
        source = "dln"
    elif config.model is not None:
        result = _trained_model(config, out, progress, max_memory)
        source = "model"
    else:
        result = _model_file(config, Path(config_dir), out, progress, max_memory)
        source = "model_file"
    first = {"preview": result.pop("preview")} if "preview" in result else {}
    seconds = time.perf_counter() - start
    result = {**first, "name": config.name, "source": source, "seconds": seconds, **result}
    skipped = "skipped" in result.get("monotonicity", {})
    result["files"] = [f for f in FILES[source] if not (skipped and f in MONOTONICITY_FILES)]
    return result


def summarize(result: dict) -> dict:
    """The printed numbers: the network's frustration and Jacobian score against their null models,
    or, for deep linear networks, the mean frustration per number of modes learnt."""
    out = {k: result[k] for k in ("name", "source", "seconds")}
    if "frustration" in result:
        fr = result["frustration"]
        keys = ("normalized", "lower_bound", "gap", "null_mean", "null_std", "zscore", "pvalue", "robustness")
        out["frustration"] = {k: fr[k] for k in keys if k in fr}
    if "score" in result.get("monotonicity", {}):
        m = result["monotonicity"]
        out["monotonicity"] = {k: m[k] for k in ("score", "null_mean", "null_std", "random_orthant_mean")}
    if "dln" in result:
        out["by_phase"] = result["dln"]["by_phase"]
    return out


def write(result: dict, out) -> list[Path]:
    """`study.json` and the figures and tables of `result` (its `files`) in the folder `out`
    (created)."""
    out = Path(out)
    output_folder(out)
    if "dln" in result:
        plots.plot_dln_frustration(result["dln"], out / "dln_frustration.png")
    else:
        fr, mono = result["frustration"], result["monotonicity"]
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
    if "training" in result:
        plots.plot_training(result["training"], out / "training.png")
    write_text(out / "study.json", json.dumps(result, indent=1, default=_json_default))
    return [out / name for name in result["files"]]


def _json_default(x):
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _out(args) -> Path:
    return Path(args.out) if args.out else Path("results") / Path(args.config).stem


def saved(args) -> str:
    """What an interrupted `jaxflow study` kept, and how to go on."""
    return saved_samples(_out(args))


def main(args) -> None:
    """`jaxflow study`: run, write and print (`--input-shape` overrides the config's
    `input_shape` of its `model_file`; `--dry-run` prints the network's `preview` and runs
    nothing)."""
    config = load_config(args.config, StudyConfig)
    if getattr(args, "input_shape", None) is not None:
        shape = parse_input_shape(args.input_shape)
        if config.model_file is None:
            raise InputError("--input-shape is the input shape of a model_file; this study has none")
        config = dataclasses.replace(config, input_shape=shape)
    if args.dry_run:
        graph = _network(config, Path(args.config).parent, args.max_memory)
        print(f"study {config.name!r}: what the network's frustration run will do (nothing is run)")
        if graph is None:
            print("  not estimated for a dln study")
            return
        cost = preview(graph, config.frustration, args.max_memory)
        print("\n".join(f"  {line}" for line in preview_lines(cost)))
        if config.model is not None:
            print("  (the untrained network; training and near-monotonicity are not estimated)")
        return
    out = output_folder(_out(args))
    config_dir = Path(args.config).parent
    result = run(config, config_dir=config_dir, out=out, progress=not args.quiet, max_memory=args.max_memory)
    files = write(result, out)
    s = summarize(result)
    print(f"study {s['name']!r} ({s['source']}) in {s['seconds']:.1f} s -> {out}")
    if "frustration" in s:
        print(f"  {frustration_line(s['frustration'])}")
    if "monotonicity" in s:
        m = s["monotonicity"]
        print(
            f"  Jacobian score {m['score']:.4f} vs null {m['null_mean']:.4f} ± {m['null_std']:.4f}, "
            f"random orthants {m['random_orthant_mean']:.4f}"
        )
    for phase, v in s.get("by_phase", {}).items():
        print(
            f"  {phase} modes learnt: frustration {v['frustration']:.4f} vs null {v['null_mean']:.4f} "
            f"({v['count']} saved states)"
        )
    for f in files:
        print(f"  {f}")
