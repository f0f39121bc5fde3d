"""The `jaxflow` command: `sweep`, `landscape`, `frustration`, `study`.

Each subcommand is a module of `jaxflow.experiments` (`COMMANDS`): it loads its config, runs, and
writes JSON, CSV and plots to `--out`. This module alone sets JAX up (float64; for `sweep`, one CPU
device per core). Errors in the input (`InputError`) are printed as one line, without a traceback
(`--debug` shows it), and exit with status 2 (as does a study across models in which some model
failed); any other exception is a bug: one line saying so, then its traceback. Open progress bars
are cleared before any such line. Interrupted, a command says in one line what it saved and how to
resume, and exits with status 130 (`jaxflow._interrupt`). `--max-memory` (else `JAXFLOW_MAX_MEMORY`)
is the memory budget (`_memory.Budget`) a command passes to what it runs.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

from . import _interrupt, _progress
from ._checks import InputError
from ._memory import Budget, parse_size
from .experiments import frustration, landscape, study, sweep

COMMANDS = {"sweep": sweep, "landscape": landscape, "frustration": frustration, "study": study}
"""Command name → its experiment module (`main(args)` runs it)."""
CPU_DEVICES = {"sweep"}
"""Commands that shard over devices: on CPU they get one device per core."""

DEBUG_ENV = "JAXFLOW_DEBUG"
MEMORY_ENV = "JAXFLOW_MAX_MEMORY"
MEMORY_OPTION = "--max-memory"
BUG_REPORT = "this is a bug in jaxflow; please report it with the command and the traceback below"
SHAPE_HELP = "full input shape, batch axis first, for a model whose input has dynamic dimensions"
MEMORY_HELP = (
    f"memory budget, e.g. 8G or 512M: a run estimated to need more is refused before it starts "
    f"(default: ${MEMORY_ENV} if set, else the memory available)"
)
DRY_RUN_HELP = "print the graph's size, the estimator, memory per stage and a time range; run nothing"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxflow", description=__doc__.splitlines()[0])
    debug_help = f"show the traceback of an input error too (or set {DEBUG_ENV}=1)"
    p.add_argument("--debug", action="store_true", help=debug_help)
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="gradient flow of a deep linear network over many inits")
    s.add_argument("config", help="TOML config (see configs/quickstart.toml)")
    s.add_argument("--out", default=None, help="results folder (default results/<config name>)")
    s.add_argument(MEMORY_OPTION, default=None, metavar="SIZE", help=MEMORY_HELP)

    s = sub.add_parser("landscape", help="critical values, Hessians and saddles of a DLN task")
    s.add_argument("config", help="TOML config")
    s.add_argument("--out", default=None, help="results folder")

    s = sub.add_parser(
        "frustration",
        help="frustration of a model's signed graph vs null models (several models: a table and a figure)",
    )
    s.add_argument(
        "model",
        nargs="*",
        help="ONNX (.onnx) or npz (.npz) model files; none: the config's models list; two or more: "
        "a study across models (models.csv/.json/.md, models.png; exit status 2 if any failed)",
    )
    s.add_argument("--config", default=None, help="TOML config (method, samples, models, ...)")
    s.add_argument("--out", default=None, help="results folder")
    s.add_argument("--input-shape", default=None, metavar="1,3,H,W", help=SHAPE_HELP + " (every model)")
    s.add_argument(MEMORY_OPTION, default=None, metavar="SIZE", help=MEMORY_HELP)
    s.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)

    s = sub.add_parser("study", help="frustration and near-monotonicity study of a network")
    s.add_argument("config", help="TOML config")
    s.add_argument("--out", default=None, help="results folder")
    s.add_argument("--input-shape", default=None, metavar="1,3,H,W", help=SHAPE_HELP + " (the model_file)")
    s.add_argument(MEMORY_OPTION, default=None, metavar="SIZE", help=MEMORY_HELP)
    s.add_argument("--dry-run", action="store_true", help=DRY_RUN_HELP)
    return p


def _cores_as_devices() -> None:
    """On CPU, one device per core: `sweep` shards lanes over devices, and a solve of small matrices
    uses one core. Possible only before JAX's first computation (kept as is otherwise)."""
    try:
        jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)
    except RuntimeError:  # backends already initialized (e.g. called in-process after other JAX work)
        pass


def _budget(option: str | None) -> Budget | None:
    """The memory budget of `--max-memory`, else of `$JAXFLOW_MAX_MEMORY`; None: the memory
    available."""
    if option is not None:
        return Budget(parse_size(option, MEMORY_OPTION), f"{MEMORY_OPTION} {option}", MEMORY_OPTION)
    if env := os.environ.get(MEMORY_ENV, "").strip():
        return Budget(parse_size(env, MEMORY_ENV), f"{MEMORY_ENV}={env}", MEMORY_ENV)
    return None


def _report(line: str) -> None:
    """`line` on stderr, with nothing of a progress bar left before it."""
    _progress.clear()
    print(line, file=sys.stderr)


def _interrupted(args: argparse.Namespace) -> None:
    """The interrupt line of `args`' command: what it kept and how to go on."""
    command = COMMANDS[args.command]
    saved = command.saved(args) if hasattr(command, "saved") else "nothing is kept"
    _report(f"jaxflow {args.command}: interrupted; {saved}")


def main(argv: list[str] | None = None) -> int:
    """Run `jaxflow ARGV…`; the exit status (0; 2 for an input error; 130 when interrupted)."""
    args = _parser().parse_args(argv)
    if args.command in CPU_DEVICES:
        _cores_as_devices()
    jax.config.update("jax_enable_x64", True)  # float64 for analysis; configs may ask float32
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    command = COMMANDS[args.command]
    _interrupt.report_with(lambda: _interrupted(args))
    try:
        if hasattr(args, "max_memory"):
            args.max_memory = _budget(args.max_memory)
        status = command.main(args)
    except KeyboardInterrupt:  # Ctrl-C of a `main` called in-process (the command has `_interrupt`)
        _interrupted(args)
        return _interrupt.INTERRUPTED
    except (InputError, FileNotFoundError) as e:  # the input is wrong; anything else is a bug
        if debug:
            raise
        _report(f"jaxflow {args.command}: error: {e}")
        return 2
    except Exception as e:
        _report(f"jaxflow {args.command}: {type(e).__name__}: {e}\n{BUG_REPORT}")
        raise
    return status or 0
