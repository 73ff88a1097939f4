"""A build in the Prefect UI: its flow run named after the recipe and version, its report as a markdown artifact and
its counts as a table artifact, keyed by recipe and version (`<recipe>-<version>-report`, `<recipe>-<version>-counts`)
so the latest build of a version is found by key."""

from __future__ import annotations

import re
from pathlib import Path


def _slug(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def artifact_keys(recipe_name: str, version: str) -> dict[str, str]:
    """The keys of a build's artifacts: {"report": ..., "counts": ...} (0.1.0 -> 0-1-0)."""
    stem = f"{_slug(recipe_name)}-{_slug(version)}"
    return {"report": f"{stem}-report", "counts": f"{stem}-counts"}


def run_name(recipe_name: str, version: str | None) -> str:
    """A build's flow-run name: the recipe and the version it builds ("next" until the version is planned)."""
    return f"{recipe_name}@{version or 'next'}"


def flow_run_name() -> str:
    """`flow_run_name` of the build flow: named from its parameters when the run starts."""
    from prefect.runtime import flow_run

    parameters = flow_run.parameters
    recipe = parameters.get("recipe")
    name = recipe.get("name") if isinstance(recipe, dict) else getattr(recipe, "name", None)
    return run_name(name or "build", parameters.get("version"))


def rename_flow_run(recipe_name: str, version: str) -> None:
    """Once the version is planned (it may not be a parameter), give the running flow run its final name."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    name = run_name(recipe_name, version)
    if context.flow_run.name != name:
        with get_client(sync_client=True) as client:
            client.update_flow_run(context.flow_run.id, name=name)


def counts_table(counts: dict[str, int]) -> list[dict]:
    """The report's counts as table rows (stage, count), in the order the build counted them."""
    return [{"count": key, "value": value} for key, value in counts.items()]


def publish_build_artifacts(recipe_name: str, result) -> dict[str, str]:
    """The build's report (`OUT/<version>/report/report.md`) as a markdown artifact and its counts as a table
    artifact. Returns the keys written; a build that published nothing ("skipped") gets a short markdown note only."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    keys = artifact_keys(recipe_name, result.version)
    report = Path(result.folder) / "report" / "report.md"
    if result.status == "skipped" or not report.is_file():
        create_markdown_artifact(f"# {recipe_name} {result.version}\n\nNothing published ({result.status}): no view "
                                 "gained a row.", key=keys["report"], description=f"{recipe_name} {result.version}")
        return {"report": keys["report"]}
    description = f"{recipe_name} {result.version} (build {result.build_id}, {result.status})"
    create_markdown_artifact(report.read_text(), key=keys["report"], description=description)
    create_table_artifact(counts_table(result.counts), key=keys["counts"], description=description)
    return keys
