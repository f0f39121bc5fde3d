"""`jaxflow frustration MODEL_FILE... [--config C] [--out DIR] [--input-shape 1,3,H,W] [--dry-run]`: the
frustration of a model's signed graph against sign-shuffled null models, overall and per trained
layer, as JSON, CSV and plots; with several models (or a config's `models` list), a study across
models: one table and one figure comparing them, each model's own results in `out/<name>/`."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from .. import plots
from .._checks import InputError, output_folder
from .._memory import Budget
from .._progress import progress_bar
from .._store import write_text
from ..config import FrustrationConfig, FrustrationModel, load_config, onnx_shape, parse_input_shape
from ..signed.importers import load_graph
from . import models as table
from .nulls import frustration_line, frustration_vs_null, layer_frustration, saved_samples, write_layer_csv
from .preview import preview, preview_lines


def model_frustration(
    path,
    config: FrustrationConfig,
    *,
    input_shape: Sequence[int] | None = None,
    status: Callable[[str], None] | None = None,
    out=None,
    max_memory: int | Budget | None = None,
) -> dict:
    """The frustration of the model file `path` against `config.null_samples` null models
    (key `jax.random.key(config.seed)`, the same for every model), overall and per trained layer
    with `config.per_layer`: the content of `frustration.json`. `status` hears each stage; with
    `out`, null samples are saved in `out/nulls*/` as they finish, and a rerun resumes. The
    `preview` of the run (`preview.preview`) comes first. The import and the run are refused
    when they cannot fit `max_memory` (`_memory.budget`)."""
    status = status or (lambda _: None)
    start = time.perf_counter()
    shape = None if input_shape is None else tuple(input_shape)
    status("reading the model")
    graph = load_graph(path, input_shape=shape, max_memory=max_memory)
    status("calibrating the cost preview")
    cost = preview(graph, config, max_memory)
    edges = graph.num_edges()
    status(f"{edges:,} edges: network and {config.null_samples} null models")
    nulls = None if out is None else Path(out) / "nulls"
    key = jax.random.key(config.seed)
    nul, overall = frustration_vs_null(graph, config, key, out=nulls, status=status, max_memory=max_memory)
    status("per layer")
    layers = layer_frustration(graph, nul) if config.per_layer else []
    return {
        "preview": cost,
        "model": str(path),
        "input_shape": list(shape) if shape is not None else None,
        "num_layers": graph.num_layers,
        "num_nodes": graph.num_nodes,
        "num_edges": edges,
        "dtype": str(graph.dtype),
        "output_head": dict(graph.metadata).get("output_head"),
        "config": dataclasses.asdict(config),
        "estimator": nul.observed.method,
        "restarts": int(nul.observed.settings.restarts),
        "rungs": [list(r) for r in nul.observed.settings.rungs],
        "frustration": overall,
        "layers": layers,
        "seconds": time.perf_counter() - start,
    }


def write_model(result: dict, out) -> list[Path]:
    """`frustration.json`, `frustration_null.png` and, with layers, `frustration_layers.png` and
    `frustration_layers.csv` of one model's `result` in the folder `out` (created)."""
    out = Path(out)
    output_folder(out)
    overall, layers = result["frustration"], result["layers"]
    files = [out / "frustration.json", out / "frustration_null.png"]
    write_text(files[0], json.dumps(result, indent=2))
    plots.plot_null_histogram(
        overall["null_normalized"],
        overall["normalized"],
        files[1],
        title=f"{Path(result['model']).name}: frustration vs null models (z = {overall['zscore']:.2f})",
        xlabel="normalized frustration",
    )
    if layers:
        files.append(plots.plot_layer_frustration(layers, out / "frustration_layers.png"))
        files.append(write_layer_csv(layers, out / "frustration_layers.csv"))
    return files


def _one(config: FrustrationConfig, entry: FrustrationModel, out, progress: bool, max_memory) -> dict:
    """`model_frustration` of `entry`, each stage in words on a progress bar (in a log: a line at
    least every `_progress.LOG_INTERVAL` seconds)."""
    with progress_bar(desc="frustration", bar_format="{desc} [{elapsed}]", enabled=progress) as bar:
        return model_frustration(
            entry.file,
            config,
            input_shape=entry.input_shape,
            status=bar.set_description_str,
            out=out,
            max_memory=max_memory,
        )


def _across(
    config: FrustrationConfig,
    entries: Sequence[FrustrationModel],
    out,
    progress: bool,
    log: Callable[[str], None] | None,
    max_memory,
) -> dict:
    """Every entry in turn (one graph in memory at a time), its results written to
    `out/<name>/` when `out` is given; a model that raises is a row with its error."""
    rows = []
    bar = progress_bar(total=len(entries), desc="models", unit="model", enabled=progress, file=sys.stderr)
    with bar:
        for name, entry in zip(table.model_names(entries), entries):
            start = time.perf_counter()
            status = lambda stage, name=name: bar.set_postfix_str(f"{name}: {stage}", refresh=True)
            try:
                own = None if out is None else Path(out) / table.folder(name)
                result = model_frustration(
                    entry.file,
                    config,
                    input_shape=entry.input_shape,
                    status=status,
                    out=own,
                    max_memory=max_memory,
                )
                if own is not None:
                    write_model(result, own)
            except Exception as e:  # noqa: BLE001 - any failure is this model's row, the rest run on
                if not isinstance(e, table.EXPECTED_ERRORS):
                    traceback.print_exc(file=sys.stderr)
                row = table.row(name, entry, None, table.error_message(e), time.perf_counter() - start)
                line = f"{name}: failed: {row['error']}"
            else:
                row = table.row(name, entry, result, "", result["seconds"])
                fr = result["frustration"]
                line = f"{name}: {frustration_line(fr)} in {row['seconds']:.1f} s"
            rows.append(row)
            if log is not None:
                with bar.external_write_mode():
                    log(line)
            bar.update()
    return {
        "config": dataclasses.asdict(config),
        "columns": list(table.COLUMNS),
        "models": rows,
        "failed": sum(1 for r in rows if r["error"]),
    }


def run(
    config: FrustrationConfig,
    entries: Sequence[FrustrationModel],
    *,
    across: bool = False,
    out=None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    max_memory: int | Budget | None = None,
) -> dict:
    """One model (the single entry, `across` False): `model_frustration`. A study across models:
    the table (`config`, `columns`, one row per model in `models`, the count `failed`), each
    model's own results written to `out/<name>/` as it is done when `out` is given. `progress`
    shows a bar on stderr; `log` hears one line per model of a study across models; `max_memory`
    is each model's memory budget (`_memory.budget`)."""
    if across:
        return _across(config, entries, out, progress, log, max_memory)
    (entry,) = entries
    return _one(config, entry, out, progress, max_memory)


def summarize(result: dict) -> dict:
    """The printed numbers: one model's size, search and statistics (overall with its p-value, and
    per layer), or the rows of a study across models (`models.COLUMNS`) and the count `failed`."""
    if "models" in result:
        return {
            "models": [{c: r[c] for c in table.COLUMNS} for r in result["models"]],
            "failed": result["failed"],
        }
    stats = ("normalized", "null_mean", "null_std", "zscore")
    sizes = ("model", "num_layers", "num_nodes", "num_edges", "output_head", "estimator", "restarts", "rungs")
    c = result["config"]
    overall = ("lower_bound", "gap", "pvalue", "robustness")
    return {
        **{k: result[k] for k in sizes},
        **{k: c[k] for k in ("method", "null_samples", "null_model")},
        "frustration": {k: v for k, v in result["frustration"].items() if k in (*stats, *overall)},
        "layers": [
            {k: lay[k] for k in ("index", "source", "destination", *stats)} for lay in result["layers"]
        ],
    }


def effort_line(summary: dict) -> str:
    """The estimator and its effort in words: a ladder's rungs (restarts × sweeps), else restarts."""
    rungs = summary["rungs"]
    if rungs:
        climbed = " → ".join(f"{r}×{t}" for r, t in rungs)
        return f"estimator {summary['estimator']!r} ({len(rungs)} rungs, restarts × sweeps: {climbed})"
    return f"estimator {summary['estimator']!r}, {summary['restarts']} restarts"


def write(result: dict, out) -> list[Path]:
    """The files of `run`'s `result` in the folder `out`: `write_model`'s for one model, the
    table's (`models.write_table`) for a study across models."""
    return table.write_table(result, out) if "models" in result else write_model(result, out)


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
        raise InputError(
            "no model given: name one or more model files, or list them as models = [...] in --config"
        )
    return config.model_entries(Path(args.config).parent, input_shape), True


def _out(args, entries: Sequence[FrustrationModel], across: bool) -> Path:
    if args.out:
        return Path(args.out)
    if not across:
        return Path("results") / f"frustration-{Path(entries[0].file).stem}"
    if args.model:
        return Path("results") / "frustration-models"
    return Path("results") / f"frustration-{Path(args.config).stem}"


def saved(args) -> str:
    """What an interrupted `jaxflow frustration` kept, and how to go on."""
    if not (args.model or args.config or args.out):
        return "nothing is kept"
    entries = [FrustrationModel(m) for m in args.model]
    return saved_samples(_out(args, entries, len(entries) != 1))


def main(args) -> int:
    """`jaxflow frustration`: run, write and print (with `--dry-run`: print each model's
    `preview` and run nothing); exit status 2 when a model of a study across models failed."""
    config = load_config(args.config, FrustrationConfig) if args.config else FrustrationConfig()
    input_shape = parse_input_shape(args.input_shape) if args.input_shape is not None else None
    entries, across = _entries(args, config, input_shape)
    if args.dry_run:
        for entry in entries:
            print(f"{entry.file}: what the run will do (nothing is run)")
            graph = load_graph(entry.file, input_shape=entry.input_shape, max_memory=args.max_memory)
            cost = preview(graph, config, args.max_memory)
            print("\n".join(f"  {line}" for line in preview_lines(cost)))
        return 0
    out = output_folder(_out(args, entries, across))
    result = run(
        config,
        entries,
        across=across,
        out=out,
        progress=not args.quiet,
        log=print,
        max_memory=args.max_memory,
    )
    files = write(result, out)
    summary = summarize(result)
    if across:
        print()
        print(table.markdown_table(summary["models"]), end="")
    else:
        print(
            f"{summary['model']}: {summary['num_layers']} layers, {summary['num_nodes']} nodes, "
            f"{summary['num_edges']} edges"
        )
        if summary["output_head"]:
            print(f"output head set aside: {summary['output_head']} (the graph ends at its input)")
        print(f"{effort_line(summary)}, {summary['null_samples']} {summary['null_model']!r} null models")
        print(frustration_line(summary["frustration"]))
        print(f"{'':<32} {'frustration':>9}   null mean ± std")
        print(_line("overall (normalized)", summary["frustration"]))
        for lay in summary["layers"]:
            print(_line(f"  {lay['index']:>3} {lay['source']} -> {lay['destination']}"[:32], lay))
        if summary["layers"]:
            print("(per layer: a trained block's frustrated share δ_b / Σ_b|a| under the best gauges)")
    for f in files:
        print(f"  {f}")
    if across and summary["failed"]:
        print(
            f"jaxflow frustration: {summary['failed']} of {len(entries)} models failed"
            " (see the error column)",
            file=sys.stderr,
        )
        return 2
    return 0
