"""Scheduled builds: a Prefect deployment per recipe (cron or interval), served by `cotforge serve`.

Each scheduled run takes the next version number (a patch bump of the latest Hub tag or local version folder) and
builds it like a one-off build, in the same layout (`OUT/<version>/`, a complete snapshot: the previous version's
rows carried, only questions no earlier version holds sampled); it publishes (and pushes) only when the build has new
rows. The Prefect server is the registry:
`cotforge schedule` creates (or updates) a deployment of `scheduled_build`; `cotforge serve` reads the deployments of
that flow back from the server and runs them with Prefect's `serve`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from prefect import flow, get_client, serve
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.deployments.runner import EntrypointType

from cotforge.schemas.recipe import Recipe, load_recipe
from cotforge.schemas.records import stable_id
from cotforge.tasks.publish.retry import RetryPolicy, retry_policy
from cotforge.tasks.publish.versions import bump_patch, is_hub_target, published_versions

log = logging.getLogger("cotforge.schedule")
FLOW_NAME = "scheduled-build"
FIRST_VERSION = "0.1.0"


@dataclass
class ScheduledOutcome:
    target: str  # Hub repo ORG/NAME, or the local folder holding X.Y.Z/ version folders
    version: str  # the version this run built
    published: bool
    new_rows: int
    earlier_versions: list[str]  # the versions published before this run
    out: str  # the version folder (OUT/<version>)
    carried_rows: int = 0
    previous: str | None = None  # where the carried version was read from
    reason: str = ""


def target_of(recipe: Recipe, push: str | None, out: str | None) -> str:
    """Where versions of this recipe are published: the Hub repo, else the local output folder."""
    return push or recipe.publish.repo or out or recipe.publish.out.format(name=recipe.name)


def prepare_recipe(recipe: Recipe, version: str, reseed: bool) -> Recipe:
    """The recipe for one scheduled version: a per-version seed if `reseed` (so a recipe of generated questions
    draws new ones each run; an unchanged source then yields no new rows)."""
    if not reseed:
        return recipe
    return recipe.model_copy(update={"seed": int(stable_id(str(recipe.seed), version, length=8), 16) % 2**31})


@flow(name=FLOW_NAME, log_prints=True)
def scheduled_build(recipe_path: str, push: str | None = None, out: str | None = None, reseed: bool = False,
                    private: bool | None = None) -> dict:
    """One scheduled build of a recipe: the next version, carrying the latest; published (and pushed) if new rows."""
    from cotforge.flows.build import run_build

    recipe = load_recipe(recipe_path)
    target = target_of(recipe, push, out)
    hub = is_hub_target(target)
    versions = published_versions(target, retry=retry_policy(recipe.publish))
    version = bump_patch(versions[-1]) if versions else FIRST_VERSION
    local_root = (out or recipe.publish.out.format(name=recipe.name)) if hub else target
    result = run_build(prepare_recipe(recipe, version, reseed), out=local_root, version=version,
                       push=target if hub else None, private=private, require_new_rows=True)
    new_rows = sum(result.new_rows.values())
    outcome = ScheduledOutcome(target, version, result.status != "skipped", new_rows, versions, result.folder,
                               sum(result.carried_rows.values()), result.previous)
    if not outcome.published:
        outcome.reason = f"no new rows against {len(versions)} published version(s): nothing published"
    print(f"scheduled build of {recipe.name}: version {version} -> "
          f"{'published' if outcome.published else 'skipped'} ({new_rows} new rows) {outcome.reason}")
    return asdict(outcome)


def deployment_name(recipe_path: str, target: str) -> str:
    """One deployment per (recipe, target): scheduling the same pair again updates its schedule."""
    from pathlib import Path

    return f"{Path(recipe_path).stem}-{stable_id(str(Path(recipe_path).resolve()), target, length=8)}"


def to_deployment(recipe_path: str, *, cron: str | None = None, interval: float | None = None,
                  push: str | None = None, out: str | None = None, reseed: bool = False,
                  private: bool | None = None, name: str | None = None):
    """A RunnerDeployment of `scheduled_build` for a recipe (module entrypoint: works from any directory)."""
    from pathlib import Path

    if (cron is None) == (interval is None):
        raise ValueError("give exactly one of --cron or --interval")
    recipe = load_recipe(recipe_path)
    target = target_of(recipe, push, out)
    path = str(Path(recipe_path).resolve())
    return scheduled_build.to_deployment(
        name=name or deployment_name(path, target), cron=cron, interval=interval,
        parameters={"recipe_path": path, "push": push, "out": out, "reseed": reseed, "private": private},
        description=f"Scheduled cotforge build of {recipe.name} -> {target}", tags=["cotforge"],
        entrypoint_type=EntrypointType.MODULE_PATH)


def create_schedule(recipe_path: str, **kwargs) -> str:
    """Create or update the deployment on the Prefect server (PREFECT_API_URL); returns its id."""
    deployment = to_deployment(recipe_path, **kwargs)
    return str(deployment.apply())


async def _scheduled_deployments() -> list:
    async with get_client() as client:
        return await client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])))


def served_deployments() -> list:
    """The `scheduled_build` deployments registered on the Prefect server, as RunnerDeployments to serve."""
    import asyncio

    out = []
    for d in asyncio.run(_scheduled_deployments()):
        out.append(scheduled_build.to_deployment(
            name=d.name, parameters=d.parameters, schedules=[s.schedule for s in d.schedules if s.active],
            description=d.description, tags=d.tags, entrypoint_type=EntrypointType.MODULE_PATH))
    return out


def serve_schedules(limit: int | None = 1) -> None:
    """Run every scheduled build registered on the Prefect server until interrupted.

    `limit` bounds the builds running at once. One (the default) keeps versions in order (each build takes the next
    version after the last published one) and stops a short interval from piling up runs faster than they finish."""
    deployments = served_deployments()
    if not deployments:
        raise RuntimeError("no scheduled builds on this Prefect server: create one with `cotforge schedule`")
    serve(*deployments, limit=limit, print_starting_message=True)


__all__ = ["scheduled_build", "create_schedule", "serve_schedules", "to_deployment", "RetryPolicy"]
