"""A recipe with `runner: {kind: ray}` runs its shard tasks on a local Ray through prefect-ray's RayTaskRunner,
writing to an fsspec URL; an output on `memory://` works with the local runner."""

from __future__ import annotations

import pytest

from flows.build import task_runner_for
from schemas.recipe import RecipeError, parse_recipe
from tasks.publish import read_view


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
    from flows.build import run_build

    result = run_build(_recipe(), out="memory://cotforge-test/raytest", version="0.1.0")
    assert read_view("memory://cotforge-test/raytest", "sft").height == result.views["sft"]


@pytest.mark.slow
def test_shard_tasks_run_on_ray(tmp_path):
    pytest.importorskip("prefect_ray")
    ray = pytest.importorskip("ray")
    from flows.build import run_build

    out = f"file://{tmp_path}/ray-out"
    recipe = _recipe(runner={"kind": "ray", "num_cpus": 2})
    runner = task_runner_for(recipe)
    assert type(runner).__name__ == "RayTaskRunner"
    try:
        result = run_build(recipe, out=out, version="0.1.0")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    local = run_build(_recipe(), out=str(tmp_path / "local-out"), version="0.1.0")
    assert result.views == local.views and result.counts == local.counts  # same rows, wherever the shards ran
    assert read_view(out, "sft").height == result.views["sft"]
    assert len(list((tmp_path / "ray-out" / "_work" / "votes").glob("*.parquet"))) == 2  # 8 questions / 4 per shard
