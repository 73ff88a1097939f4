"""View schemas: exported JSON Schemas match the row models; readers migrate older minors and refuse newer majors."""

import json

import polars as pl
import pyarrow as pa
import pytest

from schemas.views import (COTFORGE_VERSION, JSON_SCHEMA_DIR, VIEWS, PrmRow, SchemaMismatch, ViewSchema,
                           check_and_migrate, export_json_schemas, json_schema_text, parse_version)

PRM_ROW = {"prompt": "2 + 3 * 4?", "completions": ["3 * 4 = 12", "2 + 12 = 14", "The answer is 14."],
           "labels": [True, True, True], "step_scores": [1.0, 0.75, 1.0], "first_error_step": None,
           "label_method": "mc_rollout", "segmentation": "lines", "rollouts_per_step": 4,
           "rollout_model": "simulated/x", "verified": True, "reference_first_error_step": None,
           "question_id": "q1", "sample_id": "s1"}


def test_exported_json_schemas_match_the_row_models():
    for view in VIEWS.values():
        path = JSON_SCHEMA_DIR / view.name / f"{view.version}.json"
        assert path.exists(), f"{path} missing: run `python -m schemas.views` and commit it"
        assert path.read_text() == json_schema_text(view), f"{path} is stale: a changed row model needs a new version"
        exported = json.loads(path.read_text())
        assert exported["x-cotforge-schema-version"] == view.version
        assert set(exported["properties"]) == set(view.arrow.names)  # the same columns as the Arrow schema
        assert set(exported["required"]) == set(view.arrow.names)


def test_export_refuses_to_rewrite_a_released_schema(tmp_path):
    export_json_schemas(tmp_path)
    target = tmp_path / "prm" / f"{VIEWS['prm'].version}.json"
    target.write_text(target.read_text().replace("step_scores", "scores"))
    with pytest.raises(SchemaMismatch, match="bump prm's version"):
        export_json_schemas(tmp_path)


def test_arrow_schema_types_follow_the_model():
    schema = VIEWS["prm"].arrow
    assert schema.field("labels").type == pa.list_(pa.bool_())
    assert schema.field("step_scores").type == pa.list_(pa.float64())
    assert schema.field("first_error_step").nullable and not schema.field("prompt").nullable
    sft = VIEWS["sft"].arrow
    assert str(sft.field("messages").type) == "list<item: struct<role: string not null, content: string not null>>"


def test_reader_refuses_a_newer_major_and_names_the_cotforge_that_reads_it():
    frame = pl.DataFrame([PRM_ROW])
    with pytest.raises(SchemaMismatch) as error:
        check_and_migrate(frame, "prm", "2.0.0", writer_version="0.4.0")
    message = str(error.value)
    assert "2.0.0" in message and "cotforge 0.4.0 or later" in message and COTFORGE_VERSION in message
    with pytest.raises(SchemaMismatch, match="not MAJOR.MINOR.PATCH"):
        check_and_migrate(frame, "prm", "one")
    with pytest.raises(SchemaMismatch, match="unknown view"):
        check_and_migrate(frame, "nope", "1.0.0")
    with pytest.raises(SchemaMismatch, match=r"columns \['labels'\] are missing"):
        check_and_migrate(frame.drop("labels"), "prm", "1.0.0")
    with pytest.raises(SchemaMismatch, match="do not fit"):
        check_and_migrate(frame.with_columns(labels=pl.lit("yes")), "prm", "1.0.0")


def test_reader_reads_a_newer_minor_by_keeping_the_columns_it_knows():
    frame = pl.DataFrame([PRM_ROW | {"judge_labels": [True, True, False]}])
    read = check_and_migrate(frame, "prm", "1.3.0")
    assert read.columns == VIEWS["prm"].arrow.names and read["labels"].to_list() == [[True, True, True]]


class PrmRowV11(PrmRow):
    """A synthetic 1.1.0 of the prm view: adds per-step LLM-judge agreement (a minor: one new column)."""

    judge_agreement: list[bool] | None


def _add_judge_agreement(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(judge_agreement=pl.lit(None, dtype=pl.List(pl.Boolean)))


def test_a_minor_version_bump_migrates_older_files():
    """The path a real 1.0 -> 1.1 change takes: new row model, version bump, a migration that fills the column."""
    registry = dict(VIEWS, prm=ViewSchema("prm", "1.1.0", PrmRowV11, migrations={
        "1.0.0": ("1.1.0", _add_judge_agreement)}))
    old = pl.DataFrame([PRM_ROW])
    read = check_and_migrate(old, "prm", "1.0.0", views=registry)
    assert read.columns == registry["prm"].arrow.names and read["judge_agreement"].to_list() == [None]
    assert read.drop("judge_agreement").to_dicts() == check_and_migrate(old, "prm", "1.0.0").to_dicts()
    # Without a migration registered, an older minor is refused rather than read with a hole.
    broken = dict(VIEWS, prm=ViewSchema("prm", "1.1.0", PrmRowV11))
    with pytest.raises(SchemaMismatch, match="no migration from 1.0.0 to 1.1.0"):
        check_and_migrate(old, "prm", "1.0.0", views=broken)
    with pytest.raises(SchemaMismatch, match="older major"):
        check_and_migrate(old, "prm", "0.9.0", views=registry)


def test_versions_parse():
    assert parse_version("1.10.2") == (1, 10, 2) and parse_version("1.10.0") > parse_version("1.9.0")
    assert all(parse_version(v.version) for v in VIEWS.values())
