"""The `cotforge` command: validate a recipe and print its plan, build a recipe (optionally pushing it to the Hub),
push a finished version, check an output folder against its manifests, pull a published view, export a version for other
trainers, schedule builds and serve the schedules."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time


def _quiet_prefect(verbose: bool) -> None:
    # A first flow run starts Prefect's embedded server; on a busy 2-core machine it needs more than the default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _load_or_say(console, path: str):
    """The recipe at `path`, or None after printing which field is wrong and why."""
    from cotforge.schemas.recipe import RecipeError, load_recipe

    try:
        return load_recipe(path)
    except RecipeError as error:
        console.print(f"[red]bad recipe[/red] {error}")
        return None


def _cmd_build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    recipe = _load_or_say(console, args.recipe)
    if recipe is None:
        return 2
    from cotforge.flows.build import run_build
    from cotforge.tasks.core.context import BuildFailed
    from cotforge.tasks.core.lock import OutputLocked
    from cotforge.tasks.core.progress import stop_progress
    from cotforge.tasks.publish.versions import VersionExistsError, parse_semver, published_versions

    push = args.push or recipe.publish.repo
    try:
        if args.version is not None:
            parse_semver(args.version)
            if push and args.version in published_versions(push):
                raise VersionExistsError(f"{push} already has version {args.version}; published versions are never "
                                         "moved or overwritten: pass a new --version (or none for the next patch "
                                         "version)")
    except (ValueError, VersionExistsError) as error:
        console.print(f"[red]cannot build[/red] {error}")
        return 2
    start = time.perf_counter()
    # SIGTERM stops a build like Ctrl-C: the sampler writes every finished completion before the process ends.
    previous_term = signal.signal(signal.SIGTERM, _interrupt) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        result = run_build(recipe, out=args.out, version=args.version, push=push,
                           private=True if args.private else None)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: every finished sample is saved; run the same command again to "
                      "continue from there")
        return 130
    except (VersionExistsError, OutputLocked) as error:
        console.print(f"[red]not published[/red] {error}")
        return 2
    except BuildFailed as error:
        console.print(f"[red]build failed[/red] {error}")
        return 3
    finally:
        stop_progress()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
    if result.status == "unchanged":
        console.print(f"version {result.version} is already published in {os.path.abspath(result.folder)} with "
                      "these rows: nothing to do")
    else:
        table = Table(title=f"{recipe.name} {result.version} (build {result.build_id})")
        table.add_column("stage")
        table.add_column("count", justify="right")
        for stage, count in result.counts.items():
            table.add_row(stage, str(count))
        console.print(table)
        carried = f"{sum(result.carried_rows.values())} carried from {result.previous}" if result.previous \
            else "first version"
        console.print(f"data: [bold]{os.path.abspath(result.folder)}[/bold]  ({sum(result.new_rows.values())} new "
                      f"rows, {carried}; card: README.md, report: report/report.md)  "
                      f"wall time {time.perf_counter() - start:.0f}s")
    if result.pushed:
        console.print(f"pushed: [bold]{result.pushed['repo_id']}[/bold] version {result.pushed['version']} "
                      f"(commit {result.pushed['commit'][:12]})")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from cotforge.flows.plan import CHARS_PER_TOKEN, plan_recipe

    console = Console()
    recipe = _load_or_say(console, args.recipe)
    if recipe is None:
        return 2
    try:
        plan = plan_recipe(recipe)
    except (ValueError, KeyError, OSError, RuntimeError) as error:  # a source that cannot be resolved
        console.print(f"[red]cannot resolve the sources[/red] of {args.recipe}: {type(error).__name__}: {error}")
        return 2
    table = Table(title=f"{recipe.name}: questions per source (resolved, nothing sampled)")
    for column in ("source", "asked", "questions", "rejected", "note"):
        table.add_column(column, justify="left" if column in ("source", "note") else "right")
    for s in plan.sources:
        table.add_row(s.source, "all" if s.asked is None else str(s.asked),
                      "?" if s.questions is None else str(s.questions), str(s.rejected), s.note)
    console.print(table)
    generation = recipe.generation
    console.print(f"questions: {plan.questions}   requests: {plan.requests} (backend {generation.backend})   "
                  f"samples: {plan.samples}" + (f" (up to {plan.max_samples})" if plan.max_samples != plan.samples
                                                else ""))
    console.print(f"token budget: prompts about {plan.prompt_tokens} (characters / {CHARS_PER_TOKEN}, once per "
                  f"request), completions at most {plan.max_completion_tokens} ({plan.max_samples} samples x "
                  f"max_tokens {generation.sampling.max_tokens})"
                  + (f", PRM rollouts at most {plan.prm_rollout_tokens}" if plan.prm_rollout_tokens else ""))
    for note in plan.notes:
        console.print(f"note: {note}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from cotforge.tasks.publish.hub import push_versions
    from cotforge.tasks.publish.manifest import CorruptVersionError
    from cotforge.tasks.publish.versions import VersionExistsError

    try:
        pushed = push_versions(args.out, args.repo, args.version, private=args.private)
    except (CorruptVersionError, VersionExistsError, FileNotFoundError, ValueError) as error:
        print(f"cannot push {args.out} to {args.repo}: {error}", file=sys.stderr)
        return 2
    for result in pushed:
        print(f"pushed {result.repo_id} version {result.version} (commit {result.commit[:12]}, {result.files} files)")
    if not pushed:
        print(f"nothing to push: {args.repo} already has every version of {args.out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from cotforge.tasks.publish.manifest import check_output

    report = check_output(args.out)
    for version, problems in report.versions.items():
        print(f"{version}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(f"  {problem}")
    for problem in report.problems:
        print(f"problem: {problem}")
    for note in report.notes:
        print(f"note: {note}")
    return 0 if report.ok else 1


def _cmd_pull(args: argparse.Namespace) -> int:
    from cotforge.schemas.views import SchemaMismatch
    from cotforge.tasks.publish.pull import cotforge_pull

    try:
        frame = cotforge_pull(args.source, args.config, version=args.version)
    except (SchemaMismatch, FileNotFoundError, ValueError, OSError) as error:
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


def _cmd_export(args: argparse.Namespace) -> int:
    from cotforge.tasks.export.stage import export_version
    from cotforge.tasks.publish.manifest import CorruptVersionError

    try:
        result = export_version(args.out, args.to, version=args.version, dest=args.dest)
    except (CorruptVersionError, FileNotFoundError, ValueError, OSError) as error:
        print(f"cannot export {args.out} for {args.to}: {error}", file=sys.stderr)
        return 2
    print(f"{result.trainer} export of version {result.version} -> {result.dest}")
    for name, rows in result.files.items():
        source = f" (from {result.views[name]})" if name in result.views else ""
        print(f"  {name}: {'text' if rows is None else f'{rows} rows'}{source}")
    for note in result.notes:
        print(f"note: {note}")
    for name, command in result.commands.items():
        print(f"train on {name}:\n  {command}")
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from cotforge.flows.schedule import create_schedule
    from cotforge.schemas.recipe import RecipeError

    try:
        deployment_id = create_schedule(args.recipe, cron=args.cron, interval=args.interval, push=args.push,
                                        out=args.out, reseed=args.reseed, private=True if args.private else None,
                                        name=args.name)
    except (RecipeError, ValueError) as error:
        print(f"cannot schedule {args.recipe}: {error}", file=sys.stderr)
        return 2
    every = f"cron {args.cron!r}" if args.cron else f"every {args.interval:g}s"
    print(f"scheduled {args.recipe} ({every}) as Prefect deployment {deployment_id}; run `cotforge serve` to execute "
          "the scheduled builds")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from cotforge.flows.schedule import serve_schedules

    try:
        serve_schedules(limit=args.limit)
    except RuntimeError as error:
        print(f"cannot serve: {error}", file=sys.stderr)
        return 2
    return 0


def _version() -> str:
    import cotforge

    return cotforge.__version__


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cotforge", description="Build reasoning datasets from recipes.")
    parser.add_argument("--verbose", action="store_true", help="show Prefect's logs")
    parser.add_argument("--version", action="version", version=f"cotforge {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("validate", help="check a recipe, resolve its sources and print the plan (nothing sampled)")
    a.add_argument("recipe")
    a.set_defaults(func=_cmd_validate)
    b = sub.add_parser("build", help="run a one-off build of a recipe")
    b.add_argument("recipe")
    b.add_argument("--out", help="output folder (default: the recipe's publish.out)")
    b.add_argument("--version", default=None,
                   help="dataset version X.Y.Z, written to OUT/X.Y.Z/ (default: with --push, the next patch version "
                        "of the repo; else OUT's latest version, resumed or nothing to do; else 0.1.0)")
    b.add_argument("--push", metavar="ORG/NAME", help="publish to this Hub dataset repo (HF_ENDPOINT / HF_TOKEN)")
    b.add_argument("--private", action="store_true", help="create the Hub repo private")
    b.set_defaults(func=_cmd_build)
    u = sub.add_parser("push", help="publish a finished local version to the Hub without rebuilding")
    u.add_argument("out", help="the output folder (or one of its X.Y.Z/ version folders)")
    u.add_argument("repo", metavar="ORG/NAME", help="Hub dataset repo (HF_ENDPOINT / HF_TOKEN)")
    u.add_argument("--version", help="the version to push (default: every local version newer than the Hub's latest)")
    u.add_argument("--private", action="store_true", help="create the Hub repo private")
    u.set_defaults(func=_cmd_push)
    c = sub.add_parser("check", help="verify every version of an output folder against its manifest")
    c.add_argument("out", help="the output folder (or one of its X.Y.Z/ version folders)")
    c.set_defaults(func=_cmd_check)
    p = sub.add_parser("pull", help="read a published view as a Polars frame, with a schema check")
    p.add_argument("source", help="a Hub dataset repo ORG/NAME, a local output folder, or one of its version folders")
    p.add_argument("--version", help="version X.Y.Z to pull (default: the latest)")
    p.add_argument("--config", required=True, help="view name: sft, preference, prm ...")
    p.add_argument("--out", help="write the view to OUT/<config>.parquet instead of printing it")
    p.set_defaults(func=_cmd_pull)
    e = sub.add_parser("export", help="write a published version as files for verl, LLaMA-Factory, axolotl or "
                                      "OpenRLHF (never into the version) and print the command to train")
    e.add_argument("out", help="a local output folder, or one of its X.Y.Z/ version folders")
    e.add_argument("--to", required=True, choices=["verl", "llamafactory", "axolotl", "openrlhf"])
    e.add_argument("--version", help="version X.Y.Z to export (default: the latest)")
    e.add_argument("--dest", help="folder to write (default: OUT/_exports/<version>/<trainer>/); never inside a "
                                  "version folder")
    e.set_defaults(func=_cmd_export)
    s = sub.add_parser("schedule", help="create a Prefect deployment that builds a recipe on a schedule")
    s.add_argument("recipe")
    when = s.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="cron expression, e.g. '0 3 * * *'")
    when.add_argument("--interval", type=float, help="seconds between builds")
    s.add_argument("--push", metavar="ORG/NAME", help="publish each new version to this Hub dataset repo")
    s.add_argument("--private", action="store_true", help="create the Hub repo private")
    s.add_argument("--out", help="local folder of the versions (X.Y.Z/ subfolders); default: the recipe's")
    s.add_argument("--reseed", action="store_true", help="derive each version's seed from the version")
    s.add_argument("--name", help="deployment name (default: from the recipe and target)")
    s.set_defaults(func=_cmd_schedule)
    v = sub.add_parser("serve", help="run the scheduled builds (Prefect serve) until interrupted")
    v.add_argument("--limit", type=int, default=1,
                   help="at most this many builds at once (default 1: a build that is still running when the next "
                        "one is due makes it wait, so versions are numbered in order and runs never pile up)")
    v.set_defaults(func=_cmd_serve)
    args = parser.parse_args(argv)
    _quiet_prefect(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
