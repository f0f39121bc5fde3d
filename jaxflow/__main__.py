"""`jaxflow …` and `python -m jaxflow …`: the command (`jaxflow.cli.main`) behind the interrupt
guard (`jaxflow._interrupt`), which is up before JAX or any command module is imported."""

from . import _interrupt


def main() -> None:
    """Run the command and end the process with its exit status; SIGINT or SIGTERM at any moment
    ends it with 130."""
    _interrupt.guard()
    from .cli import main as command

    _interrupt.finish(command())


if __name__ == "__main__":
    main()
