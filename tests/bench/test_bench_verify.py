"""Smoke test of the verification benchmark at a tiny size: it runs and prints sane figures (no speed threshold)."""

import re

import pytest

from tests.bench.bench_verify import main
from tests.conftest import missing_component


@pytest.mark.slow
def test_bench_verify_prints_sane_figures(capsys):
    result = main(["--items", "60", "--workers", "2", "--repeats", "1", "--sandbox-programs", "4",
                   "--math-samples", "100"])
    out = capsys.readouterr().out
    assert re.search(r"ratio pool / one process: [\d.]+", out)
    assert "verifications/s" in out and "load average" in out
    assert result["single_per_s"] > 0 and result["pooled_per_s"] > 0 and result["ratio"] > 0
    assert result["timeouts"] == 0
    assert "machine ceiling" in out and 0 < result["machine_ceiling"] <= 2 * 1.25  # 2 workers: at most ~2x
    # The mix is built to be ~60% equal pairs: a verifier that said yes (or no) to everything would fail this.
    assert 0.3 * 60 <= result["equal"] <= 0.9 * 60
    assert re.search(r"ratio verify stage / math-verify on every item: [\d.]+", out)
    assert result["stage_per_s"] > 0 and result["baseline_per_s"] > 0
    # The mix holds right and wrong answers, hedges and guesses: all three verdicts must show up.
    assert result["stage_true"] and result["stage_false"] and result["stage_null"]
    if "sandbox_unavailable" in result:  # no figures without bubblewrap: a skip that says so (a failure in CI)
        missing_component(f"the sandbox benchmark needs bubblewrap: {result['sandbox_unavailable']}")
    assert re.search(r"ratio bubblewrap / plain: [\d.]+", out)  # both sides graded every program correctly
    assert result["sandbox_bwrap_ms"] > 0 and result["sandbox_plain_ms"] > 0
