"""The build flow end to end on the simulated solver: outputs, card, report, pull with schema check, re-run reuse."""

import json
import shutil

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml

from cotforge.flows.build import build
from cotforge.schemas.recipe import parse_recipe
from cotforge.schemas.views import VIEWS, SchemaMismatch
from cotforge.tasks.generate.accounting import REUSE_COUNTS
from cotforge.tasks.publish.write import read_view

RECIPE = {
    "name": "flowtest",
    "seed": 3,
    "shard_size": 10,
    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 25, "difficulty": 3}]},
    "generation": {"backend": "simulated", "samples_per_question": 4},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("build") / "out"
    result = build(parse_recipe(RECIPE), out=str(root), version="1.2.3")
    return root / "1.2.3", result  # the version folder; stage shards stay in root/_work


def _files(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_metadata(built):
    out, result = built
    for view in ("sft", "preference", "prm"):
        files = sorted((out / view).glob("*.parquet"))
        assert files, f"no files for {view}"
        meta = pq.read_schema(files[0]).metadata
        assert meta[b"cotforge.schema_name"] == view.encode()
        assert meta[b"cotforge.schema_version"] == VIEWS[view].version.encode()
        assert meta[b"cotforge.recipe_hash"].decode() == result.recipe_hash
        assert meta[b"cotforge.build_id"].decode() == result.build_id
        assert result.views[view] > 0
    for plot in ("pass_rate.png", "funnel.png", "verdicts.png"):
        assert (out / "report" / plot).read_bytes()[:4] == b"\x89PNG"
        assert f"report/{plot}" in (out / "README.md").read_text()
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["counts"]["questions generated"] == 25
    assert report["counts"]["samples"] == 100
    # rows/s per timed stage, so the slow stage shows at a glance
    rates = {r["stage"]: r for r in report["stage_rates"]}
    assert {"questions", "sample", "dedup", "label_steps"} <= set(rates)
    assert rates["sample"]["rows"] == 100 and rates["dedup"]["rows"] == 125
    assert rates["sample"]["rows_per_s"] == pytest.approx(100 / result.timings["sample"])
    assert "| stage | seconds | rows | rows/s |" in (out / "report" / "report.md").read_text()
    assert (out.parent / "latest").resolve() == out.resolve() and (out / "manifest.json").is_file()
    assert read_view(str(out), "sft")["added_in"].unique().to_list() == ["1.2.3"]  # a first version: all rows new
    assert result.carried_rows == dict.fromkeys(result.views, 0) and result.new_rows == result.views


def test_card_declares_one_config_per_view(built):
    out, _ = built
    text = (out / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    configs = {c["config_name"]: c["data_files"][0]["path"] for c in header["configs"]}
    assert {"sft", "preference", "prm"} <= set(configs)
    assert configs == {view: f"{view}/*.parquet" for view in built[1].views}
    assert "flowtest (version 1.2.3)" in text


def test_views_agree_with_stage_records(built):
    out, result = built
    sft = read_view(str(out), "sft")
    samples = pl.read_parquet(out.parent / "_work" / "samples" / "*.parquet")
    verdicts = pl.read_parquet(out.parent / "_work" / "verdicts" / "*.parquet")
    dedup = pl.read_parquet(out.parent / "_work" / "dedup" / "*.parquet")
    sample_dedup = pl.read_parquet(out.parent / "_work" / "sample_dedup" / "*.parquet")
    kept = set(dedup.filter(pl.col("keep"))["question_id"])
    kept_samples = set(sample_dedup.filter(pl.col("keep"))["sample_id"])
    correct = verdicts.filter((pl.col("verdict") == True) & pl.col("trainable"))  # noqa: E712
    expected = set(correct.filter(pl.col("question_id").is_in(kept))["sample_id"]) & kept_samples
    assert set(sft["sample_id"]) == expected
    first = sft.row(0, named=True)
    assert [m["role"] for m in first["prompt"] + first["completion"]] == ["system", "user", "assistant"]
    pref = read_view(str(out), "preference")
    ok = dict(zip(verdicts["sample_id"], verdicts["verdict"]))
    trainable = dict(zip(verdicts["sample_id"], verdicts["trainable"]))
    assert all(ok[c] is True and ok[r] is False for c, r in zip(pref["chosen_sample_id"], pref["rejected_sample_id"]))
    assert all(trainable[c] for c in pref["chosen_sample_id"])
    by_sample = dict(zip(samples["sample_id"], samples["question_id"]))
    assert all(by_sample[c] == by_sample[r] == q for c, r, q in
               zip(pref["chosen_sample_id"], pref["rejected_sample_id"], pref["question_id"]))


def test_prm_labels_match_simulated_ground_truth(built):
    # Monte-Carlo rollout labels against the simulated solver's known first wrong step (None: no wrong step).
    out, _ = built
    prm = read_view(str(out), "prm")
    samples = pl.read_parquet(out.parent / "_work" / "samples" / "*.parquet")
    truth = dict(zip(samples["sample_id"], samples["first_error_step"]))
    pairs = [(first, truth[sample_id]) for sample_id, first in zip(prm["sample_id"], prm["first_error_step"])]
    assert len(pairs) >= 20 and any(t is not None for _, t in pairs)
    agreement = sum(first == t for first, t in pairs) / len(pairs)
    assert agreement >= 0.9, f"first-error agreement {agreement:.2f}"
    for labels, first in zip(prm["labels"], prm["first_error_step"]):
        assert labels[first] is False and all(labels[:first]) if first is not None else all(labels)


def test_pull_refuses_newer_major_version(built, tmp_path):
    out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out / "sft", copy / "sft")
    path = next((copy / "sft").glob("*.parquet"))
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"cotforge.schema_version"] = b"3.0.0"  # a major above the one this cotforge reads (sft 2.x)
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(SchemaMismatch, match="newer than this cotforge"):
        read_view(str(copy), "sft")
    with pytest.raises(FileNotFoundError, match="no view 'rlhf'"):
        read_view(str(out), "rlhf")


def test_rerun_reuses_every_shard(built):
    """The same build again: every shard reused, and the published version found identical: nothing written."""
    out, first = built
    before, published = _files(out.parent / "_work"), _files(out)
    views = {view: read_view(str(out), view) for view in first.views}
    again = build(parse_recipe(RECIPE), out=str(out.parent), version="1.2.3")
    assert _files(out.parent / "_work") == before, "a re-run must not rewrite any finished shard"
    assert again.status == "unchanged"
    # The same version's counts, but this run sampled nothing: its sampling counts say it reused every shard.
    assert {k: v for k, v in again.counts.items() if k not in REUSE_COUNTS} == \
        {k: v for k, v in first.counts.items() if k not in REUSE_COUNTS}
    assert again.counts["samples generated this run"] == 0 == first.counts["samples reused from earlier runs"]
    assert again.counts["samples reused from earlier runs"] == first.counts["samples generated this run"] == \
        first.counts["samples"]
    assert _files(out) == published, "a published version is never rewritten"
    for view, rows in views.items():  # the re-run's views against the first run's, read before it
        assert read_view(str(out), view).equals(rows), view


def test_cli_build_and_pull(tmp_path, monkeypatch):
    from cotforge.flows.cli import main

    # main() quiets Prefect through os.environ.setdefault; set the value here so it is restored after this test.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "questions": {"sources": [
        {"kind": "family", "family": "arithmetic", "n": 6, "difficulty": 2}]}}))
    assert main(["build", str(recipe), "--out", str(tmp_path / "o")]) == 0
    assert main(["pull", str(tmp_path / "o"), "--config", "sft", "--out", str(tmp_path / "p")]) == 0
    assert pl.read_parquet(tmp_path / "p" / "sft.parquet").height == read_view(str(tmp_path / "o/0.1.0"), "sft").height
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**RECIPE, "shard_size": -1}))
    assert main(["build", str(bad)]) == 2
