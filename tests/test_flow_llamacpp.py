"""The build flow on the real CPU model (SmolLM2-135M-Instruct via llama.cpp): small, but every stage for real."""

import polars as pl
import pytest

from cotforge.flows.build import build
from cotforge.schemas.recipe import parse_recipe
from tests.conftest import require_module

RECIPE = {
    "name": "llamatest",
    "seed": 1,
    "shard_size": 2,
    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 3, "difficulty": 1}]},
    "generation": {"backend": "llamacpp", "samples_per_question": 2, "sampling": {"max_tokens": 24}},
}


@pytest.mark.slow
def test_llamacpp_build_is_real_and_reproducible(tmp_path):
    require_module("llama_cpp", "the cpu extra")
    first = build(parse_recipe(RECIPE), out=str(tmp_path / "a"))
    samples = pl.read_parquet(tmp_path / "a" / "_work" / "samples" / "*.parquet").sort("sample_id")
    assert samples.height == 6 and first.counts["samples"] == 6
    assert samples["backend"].unique().to_list() == ["llamacpp"]
    assert samples["model"][0].endswith(".gguf")
    assert samples["error"].null_count() == 6
    assert all(0 < t <= 24 for t in samples["completion_tokens"])
    assert samples["text"].str.len_chars().min() > 0
    # Two samples of one question differ (seed + index), and a fresh build reproduces every text exactly.
    assert samples.group_by("question_id").agg(pl.col("text").n_unique())["text"].min() == 2
    build(parse_recipe(RECIPE), out=str(tmp_path / "b"))
    again = pl.read_parquet(tmp_path / "b" / "_work" / "samples" / "*.parquet").sort("sample_id")
    assert again["text"].to_list() == samples["text"].to_list()
    verdicts = pl.read_parquet(tmp_path / "a" / "_work" / "verdicts" / "*.parquet")
    assert verdicts.height == 6 and set(verdicts["sample_id"]) == set(samples["sample_id"])
