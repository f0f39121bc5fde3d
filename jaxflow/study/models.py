"""A study across models (`jaxflow frustration a.onnx b.onnx …`): each model's frustration against
its own null models, per model as `jaxflow frustration MODEL` writes it, and one table (CSV, JSON,
Markdown) and one figure comparing them. A model that fails is a row with its error; the others
still run."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
from tqdm.auto import tqdm

from .. import plots
from ..config import FrustrationConfig, FrustrationModel
from ..signed.importers import load_graph
from .network import frustration_vs_null, layer_frustration, write_layer_csv

COLUMNS = (
    "model",
    "file",
    "layers",
    "nodes",
    "edges",
    "normalized",
    "null_mean",
    "null_std",
    "zscore",
    "pvalue",
    "restarts",
    "null_samples",
    "seconds",
    "error",
)
"""Columns of `models.csv` (and keys of each row of `models.json`, which adds `null_normalized`,
the null samples, and `input_shape`)."""

TABLE_FILES = ("models.csv", "models.json", "models.md", "models.png")
EXPECTED_ERRORS = (ValueError, FileNotFoundError, ImportError, OSError)


def read_graph(path, input_shape: Sequence[int] | None = None):
    """`load_graph(path)`, with the full `input_shape` when one is given."""
    if input_shape is None:
        return load_graph(path)
    return load_graph(path, input_shape=tuple(input_shape))


def model_frustration(
    path,
    config: FrustrationConfig,
    *,
    input_shape: Sequence[int] | None = None,
    status: Callable[[str], None] | None = None,
) -> dict:
    """The frustration of the model file `path` against `config.null_samples` null models
    (key `jax.random.key(config.seed)`, the same for every model), overall and per trained layer
    with `config.per_layer`: the content of `frustration.json`. `status` hears each stage."""
    status = status or (lambda _: None)
    start = time.perf_counter()
    status("reading the model")
    graph = read_graph(path, input_shape)
    edges = graph.num_edges()
    status(f"network and {config.null_samples} null models")
    nul, overall = frustration_vs_null(graph, config, jax.random.key(config.seed))
    status("per layer")
    layers = layer_frustration(graph, nul) if config.per_layer else []
    return {
        "model": str(path),
        "input_shape": list(input_shape) if input_shape is not None else None,
        "num_layers": graph.num_layers,
        "num_nodes": graph.num_nodes,
        "num_edges": edges,
        "dtype": str(graph.dtype),
        "config": dataclasses.asdict(config),
        "restarts": int(nul.observed.settings.restarts),
        "frustration": overall,
        "layers": layers,
        "seconds": time.perf_counter() - start,
    }


def write_model_result(result: dict, out) -> list[Path]:
    """`frustration.json`, `frustration_null.png` and, with layers, `frustration_layers.png` and
    `frustration_layers.csv` in the folder `out` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overall, layers = result["frustration"], result["layers"]
    files = [out / "frustration.json", out / "frustration_null.png"]
    files[0].write_text(json.dumps(result, indent=2))
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


def _names(entries: Sequence[FrustrationModel]) -> list[str]:
    """Each entry's name (default: its file's stem), made unique with `-2`, `-3`, …"""
    names, seen = [], {}
    for e in entries:
        base = e.name or Path(e.file).stem
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def _folder(name: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", name).strip("._") or "model"


def _row(name: str, entry: FrustrationModel, result: dict | None, error: str, seconds: float) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(model=name, file=str(entry.file), seconds=seconds, error=error)
    row["input_shape"] = list(entry.input_shape) if entry.input_shape else None
    row["null_normalized"] = []
    if result is not None:
        fr = result["frustration"]
        row.update(
            layers=result["num_layers"],
            nodes=result["num_nodes"],
            edges=result["num_edges"],
            normalized=fr["normalized"],
            null_mean=fr["null_mean"],
            null_std=fr["null_std"],
            zscore=fr["zscore"],
            pvalue=fr["pvalue"],
            restarts=result["restarts"],
            null_samples=len(fr["null_normalized"]),
            null_normalized=fr["null_normalized"],
        )
    return row


def _error(e: BaseException) -> str:
    message = " ".join(str(e).split()) or type(e).__name__
    return message if isinstance(e, EXPECTED_ERRORS) else f"{type(e).__name__}: {message}"


def compare_models(
    entries: Sequence[FrustrationModel],
    config: FrustrationConfig,
    out,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run `model_frustration` on every entry (in turn, one graph in memory at a time), write its
    results to `out/<name>/`, then the table (`models.csv`, `models.json`, `models.md`) and the
    figure `models.png` to `out`; return the content of `models.json` with `files` added.

    A model that raises is recorded with its error (one line; the traceback goes to stderr unless
    it is an input error: `ValueError`, `FileNotFoundError`, `ImportError`, `OSError`) and the
    others still run. `progress` shows a bar across models on stderr; `log` hears one line per
    model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = _names(entries)
    rows = []
    bar = tqdm(total=len(entries), desc="models", unit="model", disable=not progress, file=sys.stderr)
    with bar:
        for name, entry in zip(names, entries):
            start = time.perf_counter()
            status = lambda stage, name=name: bar.set_postfix_str(f"{name}: {stage}", refresh=True)
            try:
                result = model_frustration(entry.file, config, input_shape=entry.input_shape, status=status)
                write_model_result(result, out / _folder(name))
            except Exception as e:  # noqa: BLE001 - any failure is this model's row, the rest run on
                if not isinstance(e, EXPECTED_ERRORS):
                    traceback.print_exc(file=sys.stderr)
                row = _row(name, entry, None, _error(e), time.perf_counter() - start)
                line = f"{name}: failed: {row['error']}"
            else:
                row = _row(name, entry, result, "", result["seconds"])
                fr = result["frustration"]
                line = (
                    f"{name}: {fr['normalized']:.4f} vs null {fr['null_mean']:.4f} ± {fr['null_std']:.4f}"
                    f" (z = {fr['zscore']:.2f}, p = {fr['pvalue']:.3g}) in {row['seconds']:.1f} s"
                )
            rows.append(row)
            if log is not None:
                with bar.external_write_mode():
                    log(line)
            bar.update()
    table = {
        "config": dataclasses.asdict(config),
        "columns": list(COLUMNS),
        "models": rows,
        "failed": sum(1 for r in rows if r["error"]),
    }
    files = write_table(table, out)
    files.append(plots.plot_models(rows, out / "models.png", title=_figure_title(config)))
    table["files"] = [str(f) for f in files]
    return table


def _figure_title(config: FrustrationConfig) -> str:
    return (
        f"frustration vs {config.null_model}-shuffled null models "
        f"({config.method}, {config.null_samples} null samples per model)"
    )


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_table(table: dict, out) -> list[Path]:
    """`models.csv` (`COLUMNS`, floats written exactly), `models.json` (the whole `table`) and
    `models.md` (rounded for reading) in the folder `out`."""
    out = Path(out)
    rows = table["models"]
    paths = [out / "models.csv", out / "models.json", out / "models.md"]
    with paths[0].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([_cell(r[c]) for c in COLUMNS])
    paths[1].write_text(json.dumps(table, indent=1))
    paths[2].write_text(markdown_table(rows))
    return paths


def _fmt(v, spec: str) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    return format(v, spec)


def markdown_table(rows: Sequence[dict]) -> str:
    """The table as Markdown: normalized frustration and null mean ± std to 4 decimals, z to 2,
    p to 3 significant digits, seconds to 1 decimal, and the error of a failed model."""
    head = (
        "| model | layers | nodes | edges | frustration | null mean ± std | z | p | restarts "
        "| null samples | seconds | error |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        null = (
            "" if r["null_mean"] is None else f"{_fmt(r['null_mean'], '.4f')} ± {_fmt(r['null_std'], '.4f')}"
        )
        cells = [
            r["model"],
            _fmt(r["layers"], "d"),
            _fmt(r["nodes"], ",d"),
            _fmt(r["edges"], ",d"),
            _fmt(r["normalized"], ".4f"),
            null,
            _fmt(r["zscore"], ".2f"),
            _fmt(r["pvalue"], ".3g"),
            _fmt(r["restarts"], "d"),
            _fmt(r["null_samples"], "d"),
            _fmt(r["seconds"], ".1f"),
            (r["error"] or "").replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
