"""Smoke test of the sandboxed-scoring benchmark at a tiny size: it runs, both sides agree, sane figures (no speed
threshold: the ratio depends on the machine's load)."""

import re

import pytest

from tests.bench.bench_sandboxed_scoring import TASKS, main
from tests.conftest import missing_component, require_module


@pytest.mark.slow
def test_bench_sandboxed_scoring_prints_sane_figures(capsys):
    require_module("reasoning_gym", "pip install 'cotforge[gym]'")
    result = main(["--answers", "80", "--chunk", "20", "--programs", "2"])
    out = capsys.readouterr().out
    if "sandbox_unavailable" in result:  # no figures without bubblewrap: a skip that says so (a failure in CI)
        missing_component(f"the sandboxed-scoring benchmark needs bubblewrap: {result['sandbox_unavailable']}")
    assert "load average" in out and re.search(r"ratio sandboxed / in process: [\d.]+", out)
    assert result["answers"] >= 80 and result["tasks"] == len(TASKS) >= 4
    assert result["mismatches"] == []  # every sandboxed score equals the in-process one
    assert 0 < result["full_scores"] < result["answers"]  # golds verify, wrong answers do not
    assert result["in_process_ms"] > 0 and result["sandboxed_ms"] > 0 and result["ratio"] > 0
    assert re.search(r"ratio assert mode / program: [\d.]+", out) and result["assert_ratio"] > 0
