"""One module per command: `run(config) -> result`, `summarize(result) -> dict`,
`write(result, out)`, and `main(args)`, the command-line glue called by `jaxflow.cli`."""
