"""The table of a study across models (`jaxflow frustration a.onnx b.onnx …`): one row per model
(its frustration against its own null models, or its error) as CSV, JSON, Markdown and a figure."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

from .. import plots
from .._checks import InputError, output_folder
from .._store import write_csv_rows, write_text
from ..config import FrustrationModel

COLUMNS = (
    "model",
    "file",
    "layers",
    "nodes",
    "edges",
    "normalized",
    "lower_bound",
    "gap",
    "null_mean",
    "null_std",
    "zscore",
    "pvalue",
    "z_agree",
    "restarts",
    "null_samples",
    "seconds",
    "error",
)
"""Columns of `models.csv` (and keys of each row of `models.json`, which adds `null_normalized`,
the null samples, and `input_shape`)."""

TABLE_FILES = ("models.csv", "models.json", "models.md", "models.png")
EXPECTED_ERRORS = (InputError, ImportError, OSError)
"""A model's input errors: its row gets the message alone, without a traceback."""


def model_names(entries: Sequence[FrustrationModel]) -> list[str]:
    """Each entry's name (default: its file's stem), made unique with `-2`, `-3`, …"""
    names, seen = [], {}
    for e in entries:
        base = e.name or Path(e.file).stem
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def folder(name: str) -> str:
    """A model's name as the name of its results folder."""
    return re.sub(r"[^\w.+-]+", "_", name).strip("._") or "model"


def row(name: str, entry: FrustrationModel, result: dict | None, error: str, seconds: float) -> dict:
    """The table row of the model `entry` named `name`: from its `frustration.json` content
    `result`, or None with its `error`."""
    out = dict.fromkeys(COLUMNS)
    out.update(model=name, file=str(entry.file), seconds=seconds, error=error)
    out["input_shape"] = list(entry.input_shape) if entry.input_shape else None
    out["null_normalized"] = []
    if result is not None:
        fr = result["frustration"]
        out.update(
            layers=result["num_layers"],
            nodes=result["num_nodes"],
            edges=result["num_edges"],
            normalized=fr["normalized"],
            lower_bound=fr["lower_bound"],
            gap=fr["gap"],
            null_mean=fr["null_mean"],
            null_std=fr["null_std"],
            zscore=fr["zscore"],
            pvalue=fr["pvalue"],
            z_agree=fr["robustness"]["agree"] if "robustness" in fr else None,
            restarts=result["restarts"],
            null_samples=len(fr["null_normalized"]),
            null_normalized=fr["null_normalized"],
        )
    return out


def error_message(e: BaseException) -> str:
    """`e` on one line, its type named unless it is one of `EXPECTED_ERRORS`."""
    message = " ".join(str(e).split()) or type(e).__name__
    return message if isinstance(e, EXPECTED_ERRORS) else f"{type(e).__name__}: {message}"


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def write_table(table: dict, out) -> list[Path]:
    """`TABLE_FILES` in the folder `out`: `models.csv` (`COLUMNS`, floats written exactly),
    `models.json` (the whole `table`), `models.md` (rounded for reading) and the figure."""
    out = Path(out)
    output_folder(out)
    rows = table["models"]
    paths = [out / name for name in TABLE_FILES]
    cells = [COLUMNS, *([_cell(r[c]) for c in COLUMNS] for r in rows)]
    write_csv_rows(paths[0], cells)
    write_text(paths[1], json.dumps(table, indent=1))
    write_text(paths[2], markdown_table(rows))
    c = table["config"]
    title = (
        f"frustration vs {c['null_model']}-shuffled null models "
        f"({c['method']}, {c['null_samples']} null samples per model)"
    )
    plots.plot_models(rows, paths[3], title=title)
    return paths


def _fmt(v, spec: str) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and not math.isfinite(v):
        return "n/a"
    return format(v, spec)


def markdown_table(rows: Sequence[dict]) -> str:
    """The table as Markdown: normalized frustration with its proven lower bound and null mean ±
    std to 4 decimals, the gap to 1 %, z to 2, p to 3 significant digits, whether z agrees across
    estimators and efforts, seconds to 1 decimal, and the error of a failed model."""
    head = (
        "| model | layers | nodes | edges | frustration [bound, value] | gap | null mean ± std | z | p "
        "| z agrees | restarts | null samples | seconds | error |"
    )
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        null = (
            "" if r["null_mean"] is None else f"{_fmt(r['null_mean'], '.4f')} ± {_fmt(r['null_std'], '.4f')}"
        )
        interval = "" if r["normalized"] is None else f"[{r['lower_bound']:.4f}, {r['normalized']:.4f}]"
        cells = [
            r["model"],
            _fmt(r["layers"], "d"),
            _fmt(r["nodes"], ",d"),
            _fmt(r["edges"], ",d"),
            interval,
            _fmt(r["gap"], ".1%"),
            null,
            _fmt(r["zscore"], ".2f"),
            _fmt(r["pvalue"], ".3g"),
            {True: "yes", False: "no", None: ""}[r["z_agree"]],
            _fmt(r["restarts"], "d"),
            _fmt(r["null_samples"], "d"),
            _fmt(r["seconds"], ".1f"),
            (r["error"] or "").replace("|", "\\|"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
