"""Smoke test of the prm benchmark at a small size: it runs both methods and ends with the line scripts read."""

import re

from tests.bench.bench_prm import main


def test_bench_prm_prints_the_table_and_the_last_line(capsys):
    result = main(["--questions", "4", "--samples", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"prm: method=binary_search m=4 accuracy=[01]\.\d{2} rollouts_ratio=\d\.\d{2}", lines[-1])
    assert any(line.startswith("| mc_rollout | 4 |") for line in lines)
    mc, search = result["results"][0], result["results"][1]
    assert mc["method"] == "mc_rollout" and search["method"] == "binary_search"
    assert mc["labelled"] == search["labelled"] > 20 and 0 < search["rollouts"] < mc["rollouts"]
    assert mc["rollouts"] == mc["mc_equivalent"]  # per-step MC spends m * (K - 1) on every labelled sample
