"""The `redline` command line, built on the SDK only (see docs/cli.md)."""
