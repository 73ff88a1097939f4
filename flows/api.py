"""The public Python API (re-exported by `cotforge`): build a recipe, pull a published view."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cotforge.schemas.recipe import Recipe, load_recipe


def build(recipe: Recipe | str | Path, out: str | None = None, version: str | None = None, push: str | None = None,
          private: bool | None = None):
    """Build a recipe (a `Recipe` or the path of its YAML) into `out/<version>/`, a complete snapshot (the previous
    version's rows plus the new ones); with `push` (ORG/NAME), publish it to the Hub too. `version` None: the next
    Hub version when pushing, else the latest version in `out`, else 0.1.0. Returns the build's `BuildResult`
    (counts per stage, rows per view new and carried, timings, status)."""
    from cotforge.flows.build import run_build  # Prefect loads here, not on `import cotforge`

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    return run_build(recipe, out=out, version=version, push=push, private=private)


def pull(source: str, view: str, version: str | None = None, token: str | None = None) -> pl.DataFrame:
    """One published view as a Polars frame, from a local output folder (or one of its version folders) or a Hub
    repo (ORG/NAME), at `version` (the latest when omitted); refuses a view whose major schema version this cotforge
    does not read."""
    from cotforge.tasks.publish.pull import cotforge_pull

    return cotforge_pull(source, view, version=version, token=token)


def export(out: str, to: str, version: str | None = None, dest: str | None = None):
    """Write a published version of the local output folder `out` (the latest unless `version`) as files for
    another trainer, `to` in verl / llamafactory / axolotl / openrlhf, into `dest` (default
    `out/_exports/<version>/<to>/`; never inside a version folder). The version is checked against its manifest
    first. Returns the `ExportResult` (files with their rows, and the command that trains on each)."""
    from cotforge.tasks.export.stage import export_version

    return export_version(out, to, version=version, dest=dest)
