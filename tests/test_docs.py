"""The public API is documented: every name exported by `jaxflow`, `jaxflow.signed` and
`jaxflow.linear` has a docstring whose first line is a summary (the API reference of the
documentation site is built from them, `mkdocs.yml`)."""

import importlib
import inspect
from pathlib import Path

import pytest

PUBLIC = ("jaxflow", "jaxflow.signed", "jaxflow.linear")


def _exports(package: str) -> list[tuple[str, object]]:
    """The public names a package binds from its own modules (`from .x import y as y`)."""
    module = importlib.import_module(package)
    names = [n for n in dir(module) if not n.startswith("_")]  # `dir`: jaxflow binds its names lazily
    return [
        (n, v)
        for n, v in ((n, getattr(module, n)) for n in names)
        if (inspect.isclass(v) or inspect.isfunction(v)) and v.__module__.startswith("jaxflow")
    ]


EXPORTS = [(f"{p}.{n}", v) for p in PUBLIC for n, v in _exports(p)]


def test_every_package_exports_something():
    assert {name.rpartition(".")[0] for name, _ in EXPORTS} == set(PUBLIC)


@pytest.mark.parametrize("name, value", EXPORTS, ids=[name for name, _ in EXPORTS])
def test_public_name_has_a_summary_line(name, value):
    doc = inspect.getdoc(value)
    assert doc, f"{name} has no docstring"
    summary = doc.strip().splitlines()[0].strip()
    assert len(summary) >= 10, f"{name}: the docstring's first line is not a summary: {summary!r}"
    if inspect.isclass(value):  # its own, not inherited nor generated (NamedTuple, dataclass: "Name(…)")
        own = vars(value).get("__doc__") or ""
        assert own and not own.startswith(f"{value.__name__}("), f"{name} has no docstring of its own"


def test_api_reference_lists_every_public_name():
    """Each exported name has its `::: package.name` block in `docs/api/` (the reference is complete)."""
    pages = "\n".join(p.read_text() for p in (Path(__file__).parents[1] / "docs" / "api").glob("*.md"))
    missing = [name for name, _ in EXPORTS if f"::: {name}\n" not in pages]
    assert not missing, f"not in the API reference (docs/api/*.md): {missing}"
