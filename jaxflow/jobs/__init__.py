"""The CLI's jobs, one module per subcommand; each exposes `main(args)` (argparse namespace)."""
