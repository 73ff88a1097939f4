"""The `cotforge` command: build a recipe, pull a published view."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _quiet_prefect(verbose: bool) -> None:
    # A first flow run starts Prefect's embedded server; on a busy 2-core machine it needs more than the default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _cmd_build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from schemas.recipe import RecipeError, load_recipe

    console = Console()
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as error:
        console.print(f"[red]bad recipe[/red] {error}")
        return 2
    from flows.build import build
    from tasks.progress import stop_progress

    start = time.perf_counter()
    try:
        result = build(recipe, out=args.out, version=args.version)
    finally:
        stop_progress()
    table = Table(title=f"{recipe.name} {result.version} (build {result.build_id})")
    table.add_column("stage")
    table.add_column("count", justify="right")
    for stage, count in result.counts.items():
        table.add_row(stage, str(count))
    console.print(table)
    console.print(f"data: [bold]{os.path.abspath(result.out)}[/bold]  "
                  f"(card: README.md, report: report/report.md)  wall time {time.perf_counter() - start:.0f}s")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from schemas.views import SchemaMismatch
    from tasks.publish import read_view

    try:
        frame = read_view(args.source, args.config)
    except (SchemaMismatch, FileNotFoundError, ValueError) as error:
        print(f"cannot pull {args.config!r} from {args.source}: {error}", file=sys.stderr)
        return 2
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{args.config}.parquet")
        frame.write_parquet(path)
        print(f"{frame.height} rows -> {path}")
    else:
        print(frame)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotforge", description="Build reasoning datasets from recipes.")
    parser.add_argument("--verbose", action="store_true", help="show Prefect's logs")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="run a one-off build of a recipe")
    b.add_argument("recipe")
    b.add_argument("--out", help="output folder (default: the recipe's publish.out)")
    b.add_argument("--version", default="0.1.0", help="dataset version X.Y.Z")
    b.set_defaults(func=_cmd_build)
    p = sub.add_parser("pull", help="read a published view as a Polars frame, with a schema check")
    p.add_argument("source", help="a local output folder")
    p.add_argument("--config", required=True, help="view name: sft, preference, prm ...")
    p.add_argument("--out", help="write the view to OUT/<config>.parquet instead of printing it")
    p.set_defaults(func=_cmd_pull)
    args = parser.parse_args(argv)
    _quiet_prefect(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
