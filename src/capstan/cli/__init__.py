"""The `capstan` command line (Typer + Rich)."""
