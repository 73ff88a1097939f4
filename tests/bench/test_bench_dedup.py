"""Smoke test of the dedup benchmark at a tiny size: it runs, prints the table and the last line scripts read, and
its figures are sane (no speed threshold: speed is the benchmark's business, not a test's)."""

import re

from cotforge.tasks.dedup import kernels
from tests.bench.bench_dedup import main
from tests.conftest import missing_component


def test_bench_dedup_prints_sane_figures(capsys):
    try:
        import rensa  # noqa: F401
    except ImportError:
        missing_component("rensa is not installed (the test extra pins rensa==0.5.0; scripts/setup.sh installs it)")
    results = main(["--docs", "600", "1200", "--baseline-docs", "300", "--rounds", "1", "--sample", "400"])
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"dedup: docs=1200 speed_vs_rensa=[\d.]+ precision=[\d.]+ recall=[\d.]+", last), last
    assert "rensa 0.5.0 loop" in out and "datasketch" in out and "MiB per million docs" in out
    for r in results:
        assert r["should_drop_in_sample"] > 20  # the corpus really has duplicates in the sample
        assert r["ours_1_precision"] >= 0.98 and r["ours_1_recall"] >= 0.95  # exact-checked at every size
        assert r["rensa_docs_per_s"] > 0 and r["datasketch_docs_per_s"] > 0 and r["peak_mib_per_million"] > 0
    if kernels.compiled() is None:
        missing_component("numba is not installed (the test extra pins it): no compiled-vs-numpy row")
    assert "ours, numpy kernel" in out and "compiled kernels" in out
    for r in results:  # the numpy kernels flag exactly the rows the compiled ones do
        assert r["kernels_agree"] and r["numpy_1_precision"] == r["ours_1_precision"] and r["speed_vs_numpy_kernel"] > 0
