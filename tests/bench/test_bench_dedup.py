"""Smoke test of the dedup benchmark at a tiny size: it runs and prints sane figures (no speed threshold)."""

import re

from tests.bench.bench_dedup import main


def test_bench_dedup_prints_sane_figures(capsys):
    result = main(["--docs", "600", "--baseline-docs", "200"])
    out = capsys.readouterr().out
    assert re.search(r"speedup: [\d.]+x", out) and "agreement on keep" in out and "MiB per million" in out
    assert result["ours_docs_per_s"] > 0 and result["datasketch_docs_per_s"] > 0
    assert 0.9 <= result["agreement"] <= 1.0  # same signatures and parameters: the two keep (almost) the same rows
    assert result["peak_mib_per_million"] > 0 and result["dropped"] > 0
