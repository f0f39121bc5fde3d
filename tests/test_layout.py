"""The layout's one-way data flow, read from the source: __main__ → cli → experiments → cores (`linear`,
`signed`, `train`) → `config`, `_checks`, `_types`; figures (`plots`) are imported by experiments
only; the two cores never import each other; no module imports itself through others. And the
public boundary: no function hides its module, `__version__` comes from the package metadata."""

import ast
import importlib
import importlib.metadata
import pkgutil
import types
from pathlib import Path

import pytest

import jaxflow

PACKAGE = Path(jaxflow.__file__).parent
CORE = 3
TIER = {"__main__": -1, "cli": 0, "experiments": 1, "plots": 2, "linear": CORE, "signed": CORE, "train": CORE}
BOTTOM = 4  # config, _checks, _types


def _tier(module: str) -> int:
    """The tier of `jaxflow.<module>` (the first name after `jaxflow.`)."""
    return TIER.get(module.split(".")[0], BOTTOM)


def _imports(path: Path) -> set[str]:
    """The `jaxflow` modules `path` imports (relative imports resolved), as dotted names below
    `jaxflow` (`from . import x` and `from jaxflow import x` count `x`)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    package = list(parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("jaxflow.") for a in node.names if a.name.startswith("jaxflow.")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
            elif node.module == "jaxflow" or (node.module or "").startswith("jaxflow."):
                base = []
            else:
                continue
            module = node.module if node.level else node.module.removeprefix("jaxflow").lstrip(".")
            prefix = base + ([module] if module else [])
            for a in node.names:  # `from x import y`: the module x.y where there is one, else x
                found.add(".".join([*prefix, a.name] if _is_module([*prefix, a.name]) else prefix))
    return found - {""}


def _is_module(parts: list[str]) -> bool:
    """Whether `jaxflow.<parts>` is a module or a package."""
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _name(path: Path) -> str:
    """The module of `path` below `jaxflow` (a package by its `__init__.py`)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_flow_one_way(path):
    own = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    for target in _imports(path):
        same_core = target.split(".")[0] == own.split(".")[0]
        if same_core:
            continue
        down = _tier(target) > _tier(own) or _tier(target) == _tier(own) == BOTTOM
        assert down, f"jaxflow.{own} imports jaxflow.{target}: a climb up the layers"
        assert not _tier(own) == _tier(target) == CORE, f"jaxflow.{own} imports the core jaxflow.{target}"


def test_no_import_cycles():
    """No module reaches itself through its imports (imports inside functions count too)."""
    graph = {_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        for target in sorted(graph.get(module, set()) - done):
            if target in path:
                cycle = " → ".join(f"jaxflow.{m}" for m in (*path[path.index(target) :], target))
                pytest.fail(f"an import cycle: {cycle}")
            visit(target, (*path, target))
        done.add(module)

    for module in graph:
        visit(module, (module,))


def test_no_function_hides_its_module():
    for info in pkgutil.walk_packages(jaxflow.__path__, "jaxflow."):
        parent, _, name = info.name.rpartition(".")
        value = getattr(importlib.import_module(parent), name, None)
        assert not isinstance(value, types.FunctionType | type), f"{info.name} is hidden by {value!r}"


IMPORT_NAMES = {"scikit-learn": "sklearn", "jaxlib": None}  # distribution → module (None: not imported)


def test_every_import_is_declared():
    """Every third-party package imported by `jaxflow` is a dependency (or an extra) of pyproject.toml."""
    import sys
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    specs = project["dependencies"] + [d for extra in extras for d in extra]
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in specs}
    declared = {IMPORT_NAMES.get(n, n.replace("-", "_")) for n in names}
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"jaxflow"}
    assert third_party <= declared, f"imported but not declared: {sorted(third_party - declared)}"


def test_import_jaxflow_imports_no_jax():
    """The command's interrupt guard is up before JAX loads: `import jaxflow` binds its public
    names on first use."""
    import subprocess
    import sys

    code = "import sys, jaxflow; assert 'jax' not in sys.modules; jaxflow.sweep; assert 'jax' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_version_from_metadata():
    assert jaxflow.__version__ == importlib.metadata.version("jaxflow")


def test_every_public_name_is_documented():
    import inspect

    import jaxflow.linear
    import jaxflow.signed

    for package in (jaxflow, jaxflow.linear, jaxflow.signed):
        for name in dir(package):
            value = getattr(package, name)
            if name.startswith("_") or isinstance(value, types.ModuleType) or not callable(value):
                continue
            assert (inspect.getdoc(value) or "").strip(), f"{package.__name__}.{name} has no docstring"
