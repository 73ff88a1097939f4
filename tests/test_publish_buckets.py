"""Publishing holds one bucket of questions at a time (issue 26: bounded memory) and still writes the same version:
the buckets, concatenated, are the join of every record; a view written part by part is the view written whole; a
version published from many small buckets has the same rows, in the same order, as one published from one bucket."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotforge.tasks.core.join import join_records
from cotforge.tasks.core.shards import ShardRef, ShardStore
from cotforge.tasks.publish import buckets as bucket_module
from cotforge.tasks.publish import write as write_module
from cotforge.tasks.publish.buckets import bucket_bounds, joined_buckets, shard_groups
from cotforge.tasks.publish.write import ViewWriter, rows_digest, write_view
from cotforge.tasks.views.builders import view_metadata
from tests.conftest import VERSION_RECIPE, VERSION_RECIPE_2


def _refs(version_folder) -> dict[str, list[ShardRef]]:
    """The stage shards a published version's manifest names."""
    manifest = json.loads((version_folder / "manifest.json").read_text())
    return {stage: [ShardRef(**r) for r in refs] for stage, refs in manifest["stages"].items()}


def test_buckets_concatenated_are_the_join_of_every_record(two_versions):
    out, _, _ = two_versions
    store, refs = ShardStore(str(out)), _refs(out / "0.2.0")
    frame = lambda stage: pl.from_arrow(store.read_all(refs[stage]))  # noqa: E731
    whole = join_records(frame("questions"), frame("samples"), frame("verdicts"), frame("votes"), frame("dedup"),
                         sample_dedup=frame("sample_dedup"))
    buckets = list(joined_buckets(store, refs, per_bucket=4))  # 4 samples a bucket: many buckets, groups of shards
    assert len(buckets) >= 4 and all(b.joined.height for b in buckets)
    assert pl.concat([b.joined for b in buckets]).equals(whole)
    for bucket in buckets:  # each bucket's step labels are those of its samples, and all of them
        assert set(bucket.step_labels["sample_id"]) <= set(bucket.joined["sample_id"])
    labels = frame("step_labels").sort("sample_id")
    assert pl.concat([b.step_labels for b in buckets]).sort("sample_id").equals(labels)
    assert not (out / "_work" / "publish-spill").exists() or not any((out / "_work" / "publish-spill").iterdir())


def test_bucket_bounds_cut_the_id_range_evenly_and_shard_groups_where_the_samples_add_up():
    from cotforge.schemas.records import question_id_for

    assert bucket_bounds(36, per_bucket=4).len() == 8 and bucket_bounds(3, per_bucket=4).len() == 0
    bounds = bucket_bounds(100_000, per_bucket=20_000)
    assert bounds.to_list() == sorted(bounds.to_list()) and bounds.len() == 4
    ids = pl.Series([question_id_for(f"What is {i} + {i % 13}?") for i in range(5_000)])  # as a build makes them
    sizes = bounds.search_sorted(ids, side="right").value_counts()["count"].to_list()
    assert len(sizes) == 5 and min(sizes) > 800 and max(sizes) < 1_200  # ~1,000 each: the ids are hashes
    odd = pl.Series(["zz-not-hex", "", "0"])  # any id still lands in one bucket, in order
    assert bounds.search_sorted(odd, side="right").to_list() == [4, 0, 0]
    refs = [ShardRef("samples", str(i), "", rows) for i, rows in enumerate([3, 3, 3, 0, 5, 1])]
    assert shard_groups(refs, per_group=6) == [range(0, 2), range(2, 5), range(5, 6)]
    assert shard_groups(refs[:1], per_group=100) == [range(0, 1)]


def _view_table(rows: int) -> pa.Table:
    return pa.table({"question_id": [f"q{i:03d}" for i in range(rows)], "answer": [str(i) for i in range(rows)]})


@pytest.mark.parametrize("cuts", [[0, 4, 4, 9, 17, 23], [0, 4, 23], [0, 0, 4, 4, 4, 23, 23]])
def test_a_view_written_part_by_part_is_the_view_written_whole(tmp_path, monkeypatch, cuts):
    """Same files (rows per file), same rows in them, same digest and counts, whatever the parts are."""
    monkeypatch.setattr(write_module, "ROWS_PER_FILE", 5)
    table = _view_table(23)
    metadata = view_metadata("rlvr", "rh", "bid", "0.1.0")
    whole = write_view(str(tmp_path / "whole"), "rlvr", table, metadata, carried_rows=4)
    writer = ViewWriter(str(tmp_path / "parts"), "rlvr", metadata)
    for start, end in zip(cuts, cuts[1:]):
        writer.write(table.slice(start, end - start), carried=end <= 4)
    parts = writer.close()
    assert parts == whole and len(whole.files) == 5 and whole.rows_sha256 == rows_digest(table)
    assert (whole.rows, whole.new_rows, whole.carried_rows) == (23, 19, 4)
    for relative in whole.files:
        a, b = (pq.read_table(tmp_path / side / relative) for side in ("whole", "parts"))
        assert a.equals(b) and a.schema.metadata[b"cotforge.schema_name"] == b"rlvr"
    assert sum(pq.read_metadata(tmp_path / "whole" / f).num_rows for f in whole.files) == 23


def test_a_view_without_rows_is_one_empty_file_with_its_schema(tmp_path):
    writer = ViewWriter(str(tmp_path), "rlvr", view_metadata("rlvr", "rh", "bid", "0.1.0"))
    writer.write(_view_table(0))
    published = writer.close()
    assert published.files == ("rlvr/train-00000.parquet",) and published.rows == 0
    assert pq.read_schema(tmp_path / published.files[0]).names == ["question_id", "answer"]
    with pytest.raises(ValueError, match="schema is unknown"):
        ViewWriter(str(tmp_path / "none"), "rlvr", {}).close()


def test_a_version_published_from_many_buckets_equals_one_published_whole(two_versions, tmp_path, monkeypatch):
    """Both versions (the second carries the first's rows) built again with a bucket of 4 samples and files of 7
    rows: every view has the same rows in the same order (digest) and the report the same counts and verdicts."""
    from cotforge.flows.build import build
    from cotforge.schemas.recipe import parse_recipe

    reference, _, _ = two_versions
    monkeypatch.setattr(bucket_module, "BUCKET_SAMPLES", 4)
    monkeypatch.setattr(write_module, "ROWS_PER_FILE", 7)
    out = tmp_path / "out"
    build(parse_recipe(VERSION_RECIPE), out=str(out), version="0.1.0")
    build(parse_recipe(VERSION_RECIPE_2), out=str(out), version="0.2.0")
    for version in ("0.1.0", "0.2.0"):
        made, expected = (json.loads((root / version / "manifest.json").read_text()) for root in (out, reference))
        assert {v: (m["rows"], m["rows_sha256"]) for v, m in made["views"].items()} == \
            {v: (m["rows"], m["rows_sha256"]) for v, m in expected["views"].items()}
        assert any(len(m["files"]) > 1 for m in made["views"].values())  # files of 7 rows: the cut was exercised
        report, expected_report = (json.loads((root / version / "report" / "report.json").read_text())
                                   for root in (out, reference))
        for key in ("counts", "verdicts", "rows_per_view", "questions"):
            assert report[key] == expected_report[key], key
