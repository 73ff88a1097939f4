"""Prefect flows and the `cotforge` command line."""
