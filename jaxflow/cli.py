"""The `jaxflow` command: `sweep`, `landscape`, `frustration`, `study`.

Each subcommand loads its config, runs a job from `jaxflow.jobs`, and writes JSON, CSV and
plots to `--out`. Errors in the input are printed as one line, without a traceback, and exit with
status 2 (as does a study across models in which some model failed).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

SHAPE_HELP = "full input shape, batch axis first, for a model whose input has dynamic dimensions"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jaxflow", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sweep", help="gradient flow of a deep linear network over many inits")
    s.add_argument("config", help="TOML config (see configs/quickstart.toml)")
    s.add_argument("--out", default=None, help="results folder (default results/<config name>)")

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

    s = sub.add_parser("study", help="frustration and near-monotonicity study of a network")
    s.add_argument("config", help="TOML config")
    s.add_argument("--out", default=None, help="results folder")
    s.add_argument("--input-shape", default=None, metavar="1,3,H,W", help=SHAPE_HELP + " (the model_file)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    job = importlib.import_module(f"jaxflow.jobs.{args.command}")
    try:
        status = job.main(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"jaxflow {args.command}: error: {e}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
