"""View schemas: exported JSON Schemas match the row models; readers migrate older minors and refuse newer majors."""

import json

import polars as pl
import pyarrow as pa
import pytest

from cotforge.schemas.views import (
    COTFORGE_VERSION,
    JSON_SCHEMA_DIR,
    VIEWS,
    PrmRow,
    SchemaMismatch,
    ViewSchema,
    check_and_migrate,
    export_json_schemas,
    json_schema_name,
    json_schema_text,
    parse_version,
)

PRM_ROW = {"prompt": "2 + 3 * 4?", "completions": ["3 * 4 = 12", "2 + 12 = 14", "The answer is 14."],
           "labels": [True, True, True], "step_scores": [1.0, 0.75, 1.0], "first_error_step": None,
           "label_method": "mc_rollout", "segmentation": "lines", "rollouts_per_step": 4,
           "rollout_model": "simulated/x", "verified": True, "reference_first_error_step": None,
           "question_id": "q1", "sample_id": "s1"}  # a prm 1.0.0 row
PRM_JUDGE = {"judge_step_labels": [True, None, False], "judge_agreement": 0.5, "judge_model": "rule/judge"}
PRM_1_3 = {"label_status": "confident", "uncertain_reasons": [], "judge_first_error_step": None, "consensus": None,
           "rollouts": 8, "mc_equivalent_rollouts": 8, "steps_left_out": 0}


def test_exported_json_schemas_match_the_row_models():
    for view in VIEWS.values():
        for format_ in view.formats:  # <version>.json (default format), <version>.<format>.json
            path = JSON_SCHEMA_DIR / view.name / json_schema_name(view, format_)
            assert path.exists(), f"{path} missing: run `python -m cotforge.schemas.views` and commit it"
            assert path.read_text() == json_schema_text(view, format_), \
                f"{path} is stale: a changed row model needs a new version"
            exported = json.loads(path.read_text())
            assert exported["x-cotforge-schema-version"] == view.version
            arrow = view.arrow_for(format_)
            assert set(exported["properties"]) == set(arrow.names)  # the same columns as the Arrow schema
            assert set(exported["required"]) == set(arrow.names)


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
    assert str(sft.field("prompt").type) == "list<item: struct<role: string not null, content: string not null>>"
    assert "messages" not in sft.names  # 2.0.0: one chat format per row (TRL refuses two)


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
    frame = pl.DataFrame([PRM_ROW | PRM_JUDGE | PRM_1_3 | {"added_in": "0.4.0", "judge_rationales": ["a", "b", "c"]}])
    read = check_and_migrate(frame, "prm", "1.4.0")
    assert read.columns == VIEWS["prm"].arrow.names and read["labels"].to_list() == [[True, True, True]]


def test_prm_1_0_files_read_as_1_1_with_null_judge_columns():
    """The real minor bumps: prm 1.1.0 added the LLM-judge columns, 1.2.0 `added_in`; a 1.0.0 file reads with the
    judge columns null (and `added_in` null until `read_view` fills it from the file's dataset version)."""
    assert VIEWS["prm"].version == "1.3.0" and {"1.0.0", "1.1.0", "1.2.0"} <= set(VIEWS["prm"].migrations)
    read = check_and_migrate(pl.DataFrame([PRM_ROW]), "prm", "1.0.0")
    assert read.columns == VIEWS["prm"].arrow.names
    assert read.select([*PRM_JUDGE, "added_in"]).to_dicts() == [dict.fromkeys([*PRM_JUDGE, "added_in"])]
    assert read.select(list(PRM_ROW)).to_dicts() == [PRM_ROW]
    assert read.schema["judge_step_labels"] == pl.List(pl.Boolean) and read.schema["judge_agreement"] == pl.Float64
    # A 1.1.0 file keeps its judge values, None inside the list included.
    current = check_and_migrate(pl.DataFrame([PRM_ROW | PRM_JUDGE]), "prm", "1.1.0")
    assert current.select(list(PRM_JUDGE)).to_dicts() == [PRM_JUDGE]
    # Without the migration a 1.0.0 file is refused rather than read with a hole.
    broken = dict(VIEWS, prm=ViewSchema("prm", "1.2.0", PrmRow, migrations={"1.1.0": VIEWS["prm"].migrations["1.1.0"]}))
    with pytest.raises(SchemaMismatch, match="no migration from 1.0.0 to 1.2.0"):
        check_and_migrate(pl.DataFrame([PRM_ROW]), "prm", "1.0.0", views=broken)


def test_every_view_1_0_file_reads_with_added_in(tmp_path):
    """`added_in` (sft, preference ... 1.1.0; prm 1.2.0): an older file migrates with the column present, and
    `read_view` fills it from the file's `cotforge.dataset_version` metadata."""
    import pyarrow.parquet as pq

    from cotforge.tasks.publish.write import read_view
    from tests.test_fixture_views import FIXTURES

    born_with_added_in = {"generations"}  # first released with the column: no older file to migrate
    for view in VIEWS.values():
        assert "added_in" in view.arrow.names and view.arrow.field("added_in").nullable
        if view.name in born_with_added_in:
            assert view.version == "1.0.0"
            continue
        older = min((p for p in FIXTURES.glob(f"{view.name}/*.parquet") if p.stem.count(".") == 2),
                    key=lambda p: parse_version(p.stem))  # default-format fixtures (others: <version>.<format>)
        assert parse_version(older.stem) < parse_version(view.version)
        frame = check_and_migrate(pl.from_arrow(pq.read_table(older)), view.name, older.stem)
        assert frame["added_in"].null_count() == frame.height > 0
        (tmp_path / view.name).mkdir()
        (tmp_path / view.name / "train-00000.parquet").write_bytes(older.read_bytes())
        read = read_view(str(tmp_path), view.name)  # the fixture was written as dataset version 0.0.0
        assert read["added_in"].to_list() == ["0.0.0"] * frame.height
        assert read.drop("added_in").equals(frame.drop("added_in"))


class PrmRowV13(PrmRow):
    """A synthetic 1.4.0 of the prm view: adds the judge's per-step rationale (a minor: one new column)."""

    judge_rationales: list[str] | None


def _add_judge_rationales(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(judge_rationales=pl.lit(None, dtype=pl.List(pl.String)))


def test_a_minor_version_bump_migrates_older_files():
    """The path the next minor change takes, chained: 1.0.0 -> 1.1.0 -> 1.2.0 -> 1.3.0 (real) -> 1.4.0 (synthetic)."""
    registry = dict(VIEWS, prm=ViewSchema("prm", "1.4.0", PrmRowV13, migrations={
        **VIEWS["prm"].migrations, "1.3.0": ("1.4.0", _add_judge_rationales)}))
    old = pl.DataFrame([PRM_ROW])
    read = check_and_migrate(old, "prm", "1.0.0", views=registry)
    assert read.columns == registry["prm"].arrow.names and read["judge_rationales"].to_list() == [None]
    assert read.drop("judge_rationales").to_dicts() == check_and_migrate(old, "prm", "1.0.0").to_dicts()
    newer = check_and_migrate(pl.DataFrame([PRM_ROW | PRM_JUDGE]), "prm", "1.1.0", views=registry)
    assert newer["judge_agreement"].to_list() == [0.5] and newer["judge_rationales"].to_list() == [None]
    # A gap in the chain is refused rather than read with a hole.
    broken = dict(VIEWS, prm=ViewSchema("prm", "1.4.0", PrmRowV13, migrations=VIEWS["prm"].migrations))
    with pytest.raises(SchemaMismatch, match="no migration from 1.3.0 to 1.4.0"):
        check_and_migrate(old, "prm", "1.0.0", views=broken)
    with pytest.raises(SchemaMismatch, match="older major"):
        check_and_migrate(old, "prm", "0.9.0", views=registry)


def test_versions_parse():
    assert parse_version("1.10.2") == (1, 10, 2) and parse_version("1.10.0") > parse_version("1.9.0")
    assert all(parse_version(v.version) for v in VIEWS.values())
