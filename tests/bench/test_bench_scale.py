"""Smoke test of the scale benchmark at tiny sizes: it builds each size in its own process, prints a table per size,
the growth exponents and the last line scripts read, and its figures are sane (no speed threshold: speed is the
benchmark's business, not a test's)."""

import re

from tests.bench.bench_scale import exponents, main, scaled_recipe


def test_scaled_recipe_is_the_measured_one():
    recipe = scaled_recipe(20_000, 4)  # issue 26: 12,000 questions of difficulty 2 and 8,000 of difficulty 4
    assert [(s["n"], s["difficulty"]) for s in recipe["questions"]["sources"]] == [(12_000, 2), (8_000, 4)]
    assert recipe["generation"]["samples_per_question"] == 4 and recipe["generation"]["backend"] == "simulated"


def test_bench_scale_prints_sane_figures(capsys):
    results = main(["--questions", "40", "80", "--samples", "2"])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"scale: questions=80 build_s=[\d.]+ peak_gb=[\d.]+ worst_stage=\S+ worst_exponent=-?[\d.]+",
                        last), last
    assert "growth exponents 40 -> 80 questions" in out and "rows/s" in out and "load average" in out
    for r in results:
        assert r["counts"]["questions generated"] == r["questions"]
        assert r["counts"]["samples"] == 2 * r["questions"]
        assert r["rows"]["sample"] == 2 * r["questions"] and r["rows"]["dedup"] == 3 * r["questions"]
        assert 0 < sum(r["timings"].values()) <= 2 * r["build_s"]
        assert 50 * 2**20 < r["peak_bytes"] < 8 * 2**30  # a Python process with polars loaded, far below 8 GiB
    assert set(exponents(*results)) >= {"sample", "dedup", "label_steps"}
