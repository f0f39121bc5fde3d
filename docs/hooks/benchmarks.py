"""MkDocs hook: the benchmarks page's tables, generated from `benchmarks/results/*.json` at build time.

`benchmarks.md` holds the marker `<!-- benchmark records -->`; each record under
`benchmarks/results/` becomes a section there, headed by its file name and the machine and date
it names (`benchmarks/_machine.py`), with its numbers as tables: a table of rows for a list of
records or a table of like records, a two-column table for the rest. Nothing is copied by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "<!-- benchmark records -->"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
MAX_ROWS = 40  # rows per table; the file holds the rest
MAX_DEPTH = 3  # nested tables shown below a record


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Replace the marker of the benchmarks page with one section per record."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, "\n\n".join(record_section(p) for p in sorted(RESULTS.glob("*.json"))))


def record_section(path: Path) -> str:
    """`### name`, the machine and date, then the record's tables."""
    record = json.loads(path.read_text())
    machines = {k: v for k, v in record.items() if k == "machine" or k.endswith("_machine")}
    body = {k: v for k, v in record.items() if k not in machines}
    lines = [f"### {path.stem}", "", f"`benchmarks/results/{path.name}`", ""]
    lines += [f"- {_machine(k, m)}" for k, m in machines.items() if isinstance(m, dict)] or ["- machine not recorded"]
    lines += ["", *_tables(body, depth=0)]
    return "\n".join(lines)


def _machine(key: str, m: dict) -> str:
    what = "Machine" if key == "machine" else f"Machine of `{key.removesuffix('machine').rstrip('._')}`"
    devices = ", ".join(m.get("devices") or []) or "?"
    cores = m.get("cores_available") or m.get("cores") or "?"
    return (
        f"{what}: {m.get('cpu', '?')}, {cores} cores, devices {devices}; jax {m.get('jax', '?')}, "
        f"Python {m.get('python', '?')}; date {m.get('date', '?')}"
    )


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _cell(v) -> str:
    if isinstance(v, float):
        text = f"{v:.4g}"
    elif isinstance(v, list) and all(_scalar(x) for x in v):
        text = ", ".join(_cell(x) for x in v[:8]) + (f", … ({len(v)} values)" if len(v) > 8 else "")
        text = f"[{text}]"
    elif isinstance(v, (dict, list)):
        text = f"({len(v)} entries)"
    else:
        text = "" if v is None else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def _flat(v) -> bool:
    """A scalar or a short list of scalars: one cell."""
    return _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))


def _rows_table(rows: list[dict]) -> list[str]:
    columns = [c for c in dict.fromkeys(k for r in rows for k in r) if all(_flat(r.get(c)) for r in rows)]
    if not columns:
        return []
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows[:MAX_ROWS]]
    if len(rows) > MAX_ROWS:
        out.append(f"\n({len(rows) - MAX_ROWS} more rows in the file)")
    return out + [""]


def _like_records(value: dict) -> bool:
    """A table of records: two or more dicts holding mostly one-cell values."""
    return len(value) >= 2 and all(
        isinstance(v, dict) and v and sum(_flat(x) for x in v.values()) * 2 >= len(v) for v in value.values()
    )


def _tables(value: dict, depth: int, label: str = "") -> list[str]:
    out = []
    if label:
        out += [f"**{label}**", ""]
    scalars = {k: v for k, v in value.items() if _flat(v)}
    if scalars:
        out += ["| key | value |", "|---|---|"]
        out += [f"| {k} | {_cell(v)} |" for k, v in list(scalars.items())[:MAX_ROWS]]
        out.append("")
    for key, v in value.items():
        name = f"{label}.{key}" if label else str(key)
        if (key == "machine" or str(key).endswith("_machine")) and isinstance(v, dict):
            out += [f"- {_machine(name, v)}", ""]
        elif isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            out += [f"**{name}**", "", *_rows_table(v)]
        elif isinstance(v, dict) and _like_records(v):
            out += [f"**{name}**", "", *_rows_table([{"": k, **r} for k, r in v.items()])]
        elif isinstance(v, dict) and v and depth < MAX_DEPTH:
            out += _tables(v, depth + 1, name)
    return out
