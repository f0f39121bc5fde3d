"""`jaxflow …` and `python -m jaxflow …`: the command (`jaxflow.cli.main`) behind the interrupt
guard (`jaxflow._interrupt`), which is up before JAX or any command module is imported."""

import gc

from . import _interrupt


def main() -> None:
    """Run the command and end the process with its exit status; SIGINT or SIGTERM at any moment
    ends it with 130.

    The objects of the modules imported by then are frozen (`gc.freeze`): a full garbage
    collection holds the GIL throughout, so the interrupt's thread waits for it, and walking the
    ~2e5 objects of JAX, SciPy and the command modules made it take up to 0.18 s of CPU (0.06 s
    frozen; `benchmarks/interrupts.py`), more in wall time on a loaded machine. The run's own
    objects are collected as before."""
    _interrupt.guard()
    from .cli import main as command

    gc.freeze()
    _interrupt.finish(command())


if __name__ == "__main__":
    main()
