"""Smoke test of the sampling benchmark at a tiny size: it runs and prints sane figures (not a speed threshold)."""

import re

import pytest

from tests.bench.bench_sampling import main


@pytest.mark.slow
def test_bench_sampling_prints_a_ratio_for_llamacpp_and_simulated(capsys):
    results = main(["--backends", "simulated,llamacpp", "--questions", "2", "--samples", "2", "--max-tokens", "6",
                    "--repeats", "1"])
    printed = capsys.readouterr().out
    assert [r["backend"] for r in results] == ["simulated", "llamacpp"]
    for r in results:
        assert r["raw_tokens"] == r["stage_tokens"] > 0  # same seeds, same prompts: the same tokens
        assert r["raw_s"] > 0 and r["stage_s"] > 0 and 0 < r["ratio"] < 100
        assert 0 <= r["outside_backend"] < 1
    ratios = [float(x) for x in re.findall(r"stage/raw throughput ratio ([0-9.]+)", printed)]
    assert len(ratios) == 2 and all(x > 0 for x in ratios)
