"""A build's report and counts as Prefect artifacts on a real Prefect server, its flow run named after the recipe and
version (pytest -k artifact)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from cotforge.tasks.generate.accounting import REUSE_COUNTS
from cotforge.tasks.publish.artifacts import artifact_keys, counts_table, run_name
from tests.test_schedule import ROOT, prefect_server  # noqa: F401  (the real server fixture)

RECIPE = {"name": "Artifact_Test.v2", "seed": 5, "shard_size": 8,
          "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 8, "difficulty": 2}]},
          "generation": {"backend": "simulated", "samples_per_question": 3}}


def test_artifact_keys_are_prefect_keys_named_by_recipe_and_version():
    assert artifact_keys("Artifact Test", "0.1.0") == {"report": "artifact-test-0-1-0-report",
                                                        "counts": "artifact-test-0-1-0-counts"}
    assert artifact_keys("math_mix", "1.10.2")["counts"] == "math-mix-1-10-2-counts"
    assert run_name("math_mix", None) == "math_mix@next" and run_name("math_mix", "0.2.0") == "math_mix@0.2.0"
    assert counts_table({"a": 1, "b": 0}) == [{"count": "a", "value": 1}, {"count": "b", "value": 0}]


def _build(recipe, out, env, *extra):
    done = subprocess.run([sys.executable, "-m", "cotforge.flows.cli", "build", str(recipe), "--out", str(out),
                           *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def _read_back(api: str, key: str) -> tuple[list, dict]:
    """Every artifact under `key` (oldest first) and the names of the flow runs that made them, via the client."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def read():
        async with get_client() as client:
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                                    sort=ArtifactSort.CREATED_DESC)
            runs = {a.flow_run_id: (await client.read_flow_run(a.flow_run_id)).name for a in artifacts}
            return artifacts[::-1], runs

    with temporary_settings({PREFECT_API_URL: api}):
        return asyncio.run(read())


@pytest.mark.slow
def test_artifact_report_and_counts_on_the_prefect_server(prefect_server, tmp_path):  # noqa: F811
    recipe = tmp_path / "artifact.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    out = tmp_path / "out"
    env = prefect_server["env"]
    _build(recipe, out, env, "--version", "0.1.0")
    _build(recipe, out, env)  # no --version: the run is renamed once the version is planned (unchanged: same rows)

    report_md = (out / "0.1.0" / "report" / "report.md").read_text()
    counts = json.loads((out / "0.1.0" / "report" / "report.json").read_text())["counts"]
    assert counts["rows in view sft"] > 0
    keys = artifact_keys("Artifact_Test.v2", "0.1.0")

    reports, report_runs = _read_back(prefect_server["api"], keys["report"])
    assert len(reports) == 2  # one per build, under the same key: the latest is the key's current artifact
    for artifact in reports:
        assert artifact.type == "markdown" and artifact.data == report_md
    assert "Artifact_Test.v2 0.1.0" in reports[0].description and "published" in reports[0].description
    assert "unchanged" in reports[1].description

    tables, table_runs = _read_back(prefect_server["api"], keys["counts"])
    assert len(tables) == 2
    said = []
    for artifact in tables:
        assert artifact.type == "table"
        rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        said.append({row["count"]: row["value"] for row in rows})
    assert said[0] == counts
    # The second run found every shard done: its counts say so (nothing sampled by it), the rest are the version's.
    assert {k: v for k, v in said[1].items() if k not in REUSE_COUNTS} == \
        {k: v for k, v in counts.items() if k not in REUSE_COUNTS}
    assert said[1]["samples generated this run"] == 0 and said[1]["samples reused from earlier runs"] == counts[
        "samples"] == counts["samples generated this run"] > 0
    # Both flow runs are named after the recipe and version, the second one too (it was started without a version).
    assert sorted(report_runs.values()) == sorted(table_runs.values()) == ["Artifact_Test.v2@0.1.0"] * 2
