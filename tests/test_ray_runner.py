"""A recipe with `runner: {kind: ray}` runs its shard tasks on a local Ray through prefect-ray's RayTaskRunner,
writing to an fsspec URL; an output on `memory://` works with the local runner."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from cotforge.flows.build import task_runner_for
from cotforge.schemas.recipe import RecipeError, parse_recipe
from cotforge.tasks.publish.write import read_view
from tests.conftest import require_module


def _recipe(**extra):
    return parse_recipe({"name": "raytest", "seed": 2, "shard_size": 4,
                         "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 8,
                                                    "difficulty": 2}]},
                         "generation": {"backend": "simulated", "samples_per_question": 3}, **extra})


def test_runner_option_is_validated():
    assert task_runner_for(_recipe()) is None
    with pytest.raises(RecipeError, match="runner.kind"):
        _recipe(runner={"kind": "dask"})


@pytest.mark.slow
def test_memory_filesystem_output():
    from cotforge.flows.build import run_build
    from cotforge.tasks.publish.manifest import check_output
    from cotforge.tasks.publish.pull import cotforge_pull

    result = run_build(_recipe(), out="memory://cotforge-test/raytest", version="0.1.0")
    assert read_view("memory://cotforge-test/raytest/0.1.0", "sft").height == result.views["sft"]
    # No symlinks there: `latest` is a small file naming the version, and pulls and the integrity check follow it.
    assert cotforge_pull("memory://cotforge-test/raytest", "sft").height == result.views["sft"]
    assert check_output("memory://cotforge-test/raytest").ok


def _placements(out: str, since) -> dict[str, list[str]]:
    """Task-run name -> the messages logged by `cotforge.flows.build.log_placement`, for the one flow run that wrote `out`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=since))) if r.parameters.get("out") == out]
        assert len(runs) == 1, f"expected one flow run writing {out}, got {len(runs)}"
        assert runs[0].state.is_completed()
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
    by_id = {r.id: r for r in task_runs}
    placements: dict[str, list[str]] = {r.name: [] for r in task_runs}
    for log in logs:
        if log.task_run_id in by_id and log.message.startswith("placement: "):
            placements[by_id[log.task_run_id].name].append(log.message)
    return placements


def _ancestors(pid: int) -> list[int]:
    """The parent chain of a live process, read from the kernel (/proc/PID/stat)."""
    chain = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat[stat.rindex(")") + 2:].split()[1])  # field 4, after "pid (comm) state"
        chain.append(pid)
    return chain


@pytest.mark.slow
def test_shard_tasks_run_on_ray(tmp_path, monkeypatch):
    require_module("prefect_ray", "the ray extra")
    ray = require_module("ray", "the ray extra")
    from cotforge.flows.build import run_build

    out = f"file://{tmp_path}/ray-out"
    recipe = _recipe(runner={"kind": "ray", "num_cpus": 2})
    runner = task_runner_for(recipe)
    assert type(runner).__name__ == "RayTaskRunner" and runner.init_kwargs["num_cpus"] == 2
    since = datetime.now(timezone.utc)
    # Ray is started here as the runner would start it (the recipe's 2 CPUs): the runner then uses it and leaves it
    # up, so its worker processes can still be looked at after the build.
    # The placement line is logged at INFO; Ray's workers inherit this environment, and an in-process CLI call earlier
    # in the session may have set Prefect's level to WARNING (flows.cli quiets Prefect for terminal use).
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        result = run_build(recipe, out=out, version="0.1.0")
        # Logs reach the Prefect API in the background, and a Ray worker's last batch is sent best-effort: on a loaded
        # machine a line can come late or not at all. So every shard run must exist, each stage must show at least
        # one placement, and every placement that arrived must name a Ray task in a Ray worker process.
        deadline = time.monotonic() + 30
        while True:
            placements = _placements(out, since)
            shard_runs = {name: lines for name, lines in placements.items()
                          if name.startswith(("verify-", "vote-", "dedup_sketch-"))}
            if (len(shard_runs) == 8 and all(shard_runs.values())) or time.monotonic() > deadline:
                break
            time.sleep(2)
        # 2 shards each; dedup sketches its question and its sample shards (the dedup merge runs here)
        assert sorted(n.split("-")[0] for n in shard_runs) == ["dedup_sketch"] * 4 + ["verify"] * 2 + ["vote"] * 2
        assert all(not lines for name, lines in placements.items() if name not in shard_runs)  # the rest ran here
        for stage in ("verify-", "vote-", "dedup_sketch-"):
            assert any(lines for name, lines in shard_runs.items() if name.startswith(stage)), (stage, shard_runs)
        pids = set()
        for name, lines in shard_runs.items():
            assert len(lines) <= 1, (name, lines)
            for line in lines:
                fields = dict(item.split("=", 1) for item in line.removeprefix("placement: ").split())
                assert fields["ray_task"] not in ("None", ""), name  # only set inside a Ray task
                pids.add(int(fields["pid"]))
        # The kernel's view: each pid is a Ray worker process (proctitle "ray::..."), not this process, and a
        # descendant of it (this process started the local Ray whose raylet spawned the workers).
        for pid in pids:
            assert pid != os.getpid()
            assert Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::"), pid
            assert os.getpid() in _ancestors(pid)
    finally:
        ray.shutdown()
    local = run_build(_recipe(), out=str(tmp_path / "local-out"), version="0.1.0")
    assert result.views == local.views and result.counts == local.counts
    for view in result.views:  # the same rows, wherever the shards ran
        assert_frame_equal(read_view(f"{out}/0.1.0", view), read_view(str(tmp_path / "local-out" / "0.1.0"), view))
    assert read_view(f"{out}/0.1.0", "sft").height == result.views["sft"] > 0
    for stage, shards in (("verdicts", 2), ("votes", 2), ("dedup_sketch", 4)):  # 8 questions / 4 per shard
        assert len(list((tmp_path / "ray-out" / "_work" / stage).glob("*.parquet"))) == shards
