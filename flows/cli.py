"""The `cotforge` command: validate a recipe and print its plan, build a recipe (optionally pushing it to the Hub),
push a finished version, check an output folder against its manifests, pull a published view, export a version for other
trainers, schedule builds and serve the schedules."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

# Exit codes (README, "Exit codes"): every refusal and failure prints one message on stderr and exits with its code.
EXIT_OK = 0  # done, or nothing to do
EXIT_PROBLEMS = 1  # `check` found a damaged version or file
EXIT_REFUSED = 2  # nothing was done: a bad recipe or argument, a version that exists or is older, a locked or
#                   unusable output folder, a damaged version in it
EXIT_FAILED = 3  # the build ran and stopped before publishing (a source gave no question, too many generation
#                  errors); its shards are kept for the rerun
EXIT_ERROR = 4  # an unexpected error (a bug, or the machine): `--debug` shows its traceback
EXIT_SIGINT = 130  # stopped by Ctrl-C (128 + SIGINT); finished samples are kept, the same command resumes
EXIT_SIGTERM = 143  # stopped by SIGTERM (128 + SIGTERM), the same


class Refused(Exception):
    """A command that refuses to start: its message is the whole story (exit code 2)."""


def _quiet_prefect(verbose: bool) -> None:
    # A first flow run starts Prefect's embedded server; on a busy 2-core machine it needs more than the default.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


_PREFECT_CODE = f"{os.sep}prefect{os.sep}"


class _NoTracebacks(logging.Filter):
    """Without --debug: Prefect's records of a failed or crashed flow or task run (ERROR and above, each with its
    traceback) are dropped, since the command prints the failure as one line of its own, and so is Prefect's own
    chatter at shutdown (its services' warnings) unless --verbose; the build's own records (flow and task run logs)
    keep their message but never a traceback."""

    RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        # (Prefect's services log under their class names, e.g. "EventsWorker": known by the file that logs)
        if record.name.split(".")[0] in ("prefect", "uvicorn", "fastapi") or _PREFECT_CODE in record.pathname:
            if record.levelno >= logging.ERROR:
                return False
            if not self.verbose and not record.name.startswith(self.RUN_LOGGERS):
                return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _hide_tracebacks(verbose: bool, process: bool, debug: bool = False) -> None:
    """Put `_NoTracebacks` on every logging handler there is once Prefect has configured its logging (importing
    prefect.main does); `process` (the command owns the interpreter): keep threads from printing theirs too (a
    stopped build's helper threads, at exit). `debug`: only take off the filters an earlier call put there."""
    import prefect.main  # noqa: F401  (configures Prefect's loggers and handlers)

    quiet = _NoTracebacks(verbose)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        # Streams only: the handler that ships run logs to the Prefect server (the UI) keeps every record.
        for handler in [h for h in getattr(logger, "handlers", []) if isinstance(h, logging.StreamHandler)]:
            for old in [f for f in handler.filters if isinstance(f, _NoTracebacks)]:
                handler.removeFilter(old)
            if not debug:
                handler.addFilter(quiet)
    if process and not debug:
        threading.excepthook = lambda args: None
        sys.unraisablehook = lambda unraisable: None


def _load(path: str):
    """The recipe at `path` (a RecipeError names each bad field and why)."""
    from cotforge.schemas.recipe import load_recipe

    return load_recipe(path)


def _cmd_build(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    recipe = _load(args.recipe)
    from cotforge.flows.build import run_build
    from cotforge.tasks.core.progress import stop_progress
    from cotforge.tasks.publish.versions import VersionExistsError, parse_semver, published_versions

    push = args.push or recipe.publish.repo
    out = args.out or recipe.publish.out.format(name=recipe.name)
    if os.path.exists(out) and not os.path.isdir(out):
        raise Refused(f"--out {out} is a file, not an output folder: name a folder (new or one cotforge wrote)")
    if args.version is not None:
        parse_semver(args.version)
        if push and args.version in published_versions(push):
            raise VersionExistsError(f"{push} already has version {args.version}; published versions are never "
                                     "moved or overwritten: pass a new --version (or none for the next patch "
                                     "version)")
    start = time.perf_counter()
    try:
        result = run_build(recipe, out=out, version=args.version, push=push, private=True if args.private else None)
    finally:
        stop_progress()
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
    recipe = _load(args.recipe)
    try:
        plan = plan_recipe(recipe)
    except (ValueError, KeyError, OSError, RuntimeError) as error:  # a source that cannot be resolved
        raise Refused(f"cannot resolve the sources of {args.recipe}: {type(error).__name__}: {error}") from error
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
    parser.add_argument("--debug", action="store_true",
                        help="show Prefect's logs and the traceback of a failure (without it: one line on stderr)")
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
    _quiet_prefect(args.verbose or args.debug)
    if args.command in ("build", "schedule", "serve"):  # the commands that run Prefect (the others never import it)
        _hide_tracebacks(args.verbose, process=argv is None, debug=args.debug)
    # SIGTERM stops a command like Ctrl-C: a build's sampler writes every finished completion before the process ends.
    previous_term = signal.signal(signal.SIGTERM, _interrupt) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        return args.func(args)
    except BaseException as error:  # the one error path: a message and an exit code, never a traceback
        code, message = _failure(args.command, error)
        if code is None:
            raise
        if args.debug:
            import traceback

            traceback.print_exception(error)
        print(message, file=sys.stderr, flush=True)
        return code
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _failure(command: str, error: BaseException) -> tuple[int | None, str]:
    """(exit code, the one line to print) for an error that ended `command`; (None, "") for one to re-raise
    (SystemExit, from argparse or a command)."""
    from cotforge.schemas.recipe import RecipeError

    if isinstance(error, SystemExit):
        return None, ""
    if isinstance(error, KeyboardInterrupt):
        term = str(error) == f"signal {signal.SIGTERM}"
        saved = " every finished sample is saved; run the same command again to continue from there" \
            if command == "build" else ""
        return (EXIT_SIGTERM if term else EXIT_SIGINT), \
            f"cotforge {command}: interrupted ({'SIGTERM' if term else 'Ctrl-C'}):{saved or ' stopped'}"
    if isinstance(error, RecipeError):
        return EXIT_REFUSED, f"cotforge {command}: bad recipe: {error}"
    if isinstance(error, Refused):
        return EXIT_REFUSED, f"cotforge {command}: {error}"
    refused, failed = _refusals(), _failures()
    if isinstance(error, refused):
        return EXIT_REFUSED, f"cotforge {command}: not built: {error}" if command == "build" else \
            f"cotforge {command}: {error}"
    if isinstance(error, failed):
        return EXIT_FAILED, f"cotforge {command}: build failed: {error}"
    return EXIT_ERROR, (f"cotforge {command}: unexpected error: {type(error).__name__}: {error} (run again with "
                        "--debug for the traceback)")


def _refusals() -> tuple[type, ...]:
    from cotforge.tasks.core.lock import OutputLocked
    from cotforge.tasks.publish.manifest import CorruptVersionError
    from cotforge.tasks.publish.versions import VersionExistsError

    # ValueError: a version that is not MAJOR.MINOR.PATCH, a seed column the data lacks; FileNotFoundError: a seed file
    return OutputLocked, VersionExistsError, CorruptVersionError, ValueError, FileNotFoundError


def _failures() -> tuple[type, ...]:
    from cotforge.tasks.core.context import BuildFailed

    return (BuildFailed,)


if __name__ == "__main__":
    sys.exit(main())
