"""Frozen fixtures: every released view schema version stays readable by the current reader.

`data/fixtures/<view>/<version>.parquet` is a small published file of that version (with its key-value metadata) and
`<version>.json` its rows as written. Both are frozen: `python -m tests.test_fixture_views` writes the fixtures of
versions that have none and never rewrites one. The tests read each fixture with the current reader
(`check_and_migrate`) and fail when a change to a row model, the reader or a migration breaks old files.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from cotforge.schemas.views import VIEWS, SchemaMismatch, check_and_migrate

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
ROWS_PER_FIXTURE = 4


def fixture_files() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.parquet"))


def _jsonable(rows: list[dict]) -> list[dict]:
    return json.loads(json.dumps(rows, sort_keys=True))


def freeze_fixtures() -> list[Path]:
    """Write a fixture for each view's current version that has none (a released fixture is never rewritten)."""
    import fsspec

    from cotforge.schemas.config_views import PrmJudgeConfig, PrmViewConfig, ViewsConfig
    from cotforge.tasks.core.shards import write_parquet_atomic
    from cotforge.tasks.generate.simulated import SimulatedGenerator
    from cotforge.tasks.label.steps import label_steps
    from cotforge.tasks.views.builders import view_builders, view_metadata
    from tests.test_prm_judge import RuleStepJudge
    from tests.views_support import simulated_joined

    frame, generation = simulated_joined(n=6, difficulty=2, samples=4, seed=17)
    frame = frame.with_columns(  # some verbose correct rationales, so concise-vs-verbose pairs exist
        text=pl.when((pl.col("sample_index") == 1) & pl.col("verdict").fill_null(False))
        .then(pl.lit("We restate the problem first.\nThen we work one operation per line.\n") + pl.col("text"))
        .otherwise("text"),
        completion_tokens=pl.when((pl.col("sample_index") == 1) & pl.col("verdict").fill_null(False))
        .then(pl.col("completion_tokens") + 12).otherwise("completion_tokens"))
    # prm >= 1.1.0: judged steps, one reply unparseable (the answer line), so the fixture holds a None in the list.
    views = ViewsConfig(prm=PrmViewConfig(judge=PrmJudgeConfig(enabled=True)))
    labels = pl.from_arrow(label_steps(frame, SimulatedGenerator(0.15, 0.05), views.prm, generation, 17, "fixture",
                                       "fixture", judge=RuleStepJudge(mumble_on="The answer is")))
    written = []
    for name, schema in VIEWS.items():
        for format_ in schema.formats:  # one fixture per TRL format the view publishes
            path = fixture_path(name, format_)
            if path.exists():
                continue
            config = getattr(views, name)
            in_format = views.model_copy(update={name: config.model_copy(update={"format": format_})}) \
                if hasattr(config, "format") else views
            build = view_builders(frame, labels, in_format, generation.system_prompt, added_in="0.0.0")[name]
            table = build().slice(0, ROWS_PER_FIXTURE)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet_atomic(fsspec.filesystem("file"), str(path), table,
                                 view_metadata(name, "fixture", "fixture", "0.0.0", format_))
            path.with_suffix(".json").write_text(json.dumps(_jsonable(table.to_pylist()), indent=1, sort_keys=True)
                                                 + "\n")
            written.append(path)
    return written


def fixture_path(view: str, format_: str | None = None) -> Path:
    """`<view>/<version>.parquet` for the view's default format, `<view>/<version>.<format>.parquet` for others."""
    schema = VIEWS[view]
    suffix = "" if (format_ or schema.default_format) == schema.default_format else f".{format_}"
    return FIXTURES / view / f"{schema.version}{suffix}.parquet"


def version_and_format(path: Path) -> tuple[str, str | None]:
    """(schema version, format named in the file name or None) of a fixture file."""
    parts = path.stem.split(".")
    return ".".join(parts[:3]), (parts[3] if len(parts) > 3 else None)


def _read(path: Path) -> tuple[pl.DataFrame, dict[str, str]]:
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    return pl.from_arrow(table), meta


def test_fixture_exists_for_every_current_view_version():
    for view in VIEWS.values():
        for format_ in view.formats:
            path = fixture_path(view.name, format_)
            assert path.exists(), f"{view.name} {view.version} ({format_}) has no fixture: run " \
                                  "`python -m tests.test_fixture_views`"
            assert path.with_suffix(".json").exists()


def test_fixture_of_the_current_version_has_the_current_schema():
    """A row-model change without a version bump shows here: the frozen file of that version no longer matches."""
    for view in VIEWS.values():
        for format_ in view.formats:
            schema = pq.read_schema(fixture_path(view.name, format_))
            assert schema.remove_metadata().equals(view.arrow_for(format_)), \
                f"{view.name} ({format_}): changed without a schema version bump"


def _migrates(view: str, version: str) -> bool:
    """Whether the view's migrations lead from `version` to the current one (across a major when one is registered:
    sft 1.1.0 -> 2.0.0 drops a column, so older snapshots still read and carry over)."""
    migrations = VIEWS[view].migrations
    while version != VIEWS[view].version and version in migrations:
        version = migrations[version][0]
    return version == VIEWS[view].version


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_fixture_reads_with_the_current_reader(path: Path):
    frame, meta = _read(path)
    view, (version, format_) = path.parent.name, version_and_format(path)
    assert meta["cotforge.schema_name"] == view and meta["cotforge.schema_version"] == version
    assert meta.get("cotforge.format") == format_ or format_ is None
    expected = json.loads(path.with_suffix(".json").read_text())
    assert frame.height == len(expected) > 0
    if view not in VIEWS or not _migrates(view, version):
        # An old major without a migration is refused with a message that names the cotforge that wrote it.
        with pytest.raises(SchemaMismatch, match=meta.get("cotforge.version", "cotforge")):
            check_and_migrate(frame, view, version, meta.get("cotforge.version"))
        return
    read = check_and_migrate(frame, view, version, meta.get("cotforge.version"), format_=meta.get("cotforge.format"))
    assert read.columns == VIEWS[view].arrow_for(meta.get("cotforge.format")).names
    # Every column the old version wrote reads back with the values it had.
    old_columns = [c for c in expected[0] if c in read.columns]
    assert _jsonable(read.select(old_columns).to_dicts()) == [{c: row[c] for c in old_columns} for row in expected]


if __name__ == "__main__":
    for p in freeze_fixtures():
        print(p)
