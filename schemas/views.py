"""Published views: the training tables, each with a semver schema version and migrations from older ones.

Column names are the ones TRL's trainers read: SFT conversational `prompt`/`completion`, preference
`prompt`/`chosen`/`rejected`, unpaired `prompt`/`completion`/`label`, stepwise supervision
`prompt`/`completions`/`labels` (bool; the soft Monte-Carlo score has its own column because TRL casts labels to int),
RL prompts `prompt` with the gold answer in `solution` (the name TRL's accuracy reward reads).

Versioning (see schemas/CHANGELOG.md): a minor version only adds columns, so a reader migrates any older minor of its
major by filling them in, and reads a newer minor by keeping the columns it knows. A new major may rename or retype
columns; a reader refuses it and says which cotforge reads it. Every released version has its JSON Schema under
`schemas/json/<view>/<version>.json` and a frozen fixture under `data/fixtures/<view>/<version>.parquet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl
import pyarrow as pa

from cotforge.schemas.arrow import arrow_schema
from cotforge.schemas.view_rows import (  # noqa: F401 - the row models and formats are part of this module's API
    CHAT_COLUMNS,
    DEFAULT_FORMAT,
    FORMATS,
    CalibrationRow,
    GenerationsRow,
    Message,
    PreferenceRow,
    PrmRow,
    RlvrRow,
    SchemaMismatch,
    SftRow,
    UnpairedRow,
    VerifierVerdicts,
    ViewRow,
    format_model,
)

COTFORGE_VERSION = "0.1.0"
JSON_SCHEMA_DIR = Path(__file__).resolve().parent / "json"


Migration = Callable[[pl.DataFrame], pl.DataFrame]


def prm_1_0_to_1_1(frame: pl.DataFrame) -> pl.DataFrame:
    """prm 1.0.0 -> 1.1.0: the judge columns, null (1.0.0 had no judge)."""
    return frame.with_columns(judge_step_labels=pl.lit(None, dtype=pl.List(pl.Boolean)),
                              judge_agreement=pl.lit(None, dtype=pl.Float64), judge_model=pl.lit(None, dtype=pl.String))


def prm_1_2_to_1_3(frame: pl.DataFrame) -> pl.DataFrame:
    """prm 1.2.0 -> 1.3.0: label status, judge consensus and cost columns, null (not recorded before)."""
    return frame.with_columns(
        label_status=pl.lit(None, dtype=pl.String), uncertain_reasons=pl.lit(None, dtype=pl.List(pl.String)),
        judge_first_error_step=pl.lit(None, dtype=pl.Int64), consensus=pl.lit(None, dtype=pl.Boolean),
        rollouts=pl.lit(None, dtype=pl.Int64), mc_equivalent_rollouts=pl.lit(None, dtype=pl.Int64),
        steps_left_out=pl.lit(None, dtype=pl.Int64))


def add_added_in(frame: pl.DataFrame) -> pl.DataFrame:
    """Every view's minor that added `added_in` (sft, preference ... 1.0.0 -> 1.1.0; prm 1.1.0 -> 1.2.0): null here;
    `read_view` fills it from the file's `cotforge.dataset_version` metadata (an older file's rows were all added by
    the version that wrote it)."""
    return frame.with_columns(added_in=pl.lit(None, dtype=pl.String))


_ADDED_IN = {"1.0.0": ("1.1.0", add_added_in)}


def drop_messages(frame: pl.DataFrame) -> pl.DataFrame:
    """sft / sft_lenient 1.1.0 -> 2.0.0: the `messages` column goes (it repeated `prompt + completion`, and TRL's
    SFTTrainer refuses a row carrying two formats); nothing else changes."""
    return frame.drop("messages", strict=False)


def formats_added(frame: pl.DataFrame) -> pl.DataFrame:
    """The minor that added formats (sft 2.0.0 -> 2.1.0, the other chat views 1.1.0 -> 1.2.0): files of the version
    before are conversational, whose columns did not change."""
    return frame


def rlvr_1_1_to_1_2(frame: pl.DataFrame) -> pl.DataFrame:
    """rlvr 1.1.0 -> 1.2.0: formats (files before are conversational) and `verifier_spec`, null (no reasoning-gym
    questions before)."""
    return formats_added(frame).with_columns(verifier_spec=pl.lit(None, dtype=pl.String))


_SFT_MIGRATIONS = {**_ADDED_IN, "1.1.0": ("2.0.0", drop_messages), "2.0.0": ("2.1.0", formats_added)}
_CHAT_MIGRATIONS = {**_ADDED_IN, "1.1.0": ("1.2.0", formats_added)}
CHAT_FORMATS = ("conversational", "standard")


@dataclass(frozen=True)
class ViewSchema:
    """A published view's name, current version, row model and the migrations that bring older files up to it."""

    name: str
    version: str
    model: type[ViewRow]
    purpose: str = ""
    # from_version -> (to_version, function taking a frame of from_version and returning one of to_version).
    migrations: dict[str, tuple[str, Migration]] = field(default_factory=dict)
    # The TRL formats this view publishes (FORMATS), the first its default: the format of `model`, and of every
    # file written before formats existed. A view without chat columns has its one format.
    formats: tuple[str, ...] = (DEFAULT_FORMAT,)

    @property
    def major(self) -> int:
        return parse_version(self.version)[0]

    @property
    def default_format(self) -> str:
        return self.formats[0]

    def row_model(self, format_: str | None = None) -> type[ViewRow]:
        """The row model of one of the view's formats (None: the default)."""
        format_ = format_ or self.default_format
        if format_ not in self.formats:
            raise SchemaMismatch(f"{self.name} has no format {format_!r}; it publishes {list(self.formats)}")
        return self.model if format_ == self.default_format else format_model(self.model, format_)

    @property
    def arrow(self) -> pa.Schema:
        return arrow_schema(self.model)

    def arrow_for(self, format_: str | None = None) -> pa.Schema:
        return arrow_schema(self.row_model(format_))

    def json_schema(self, format_: str | None = None) -> dict:
        """The row model's JSON Schema (of one format), stamped with the view name, version and format."""
        format_ = format_ or self.default_format
        suffix = "" if format_ == self.default_format else f".{format_}"
        return {"$id": f"https://cotforge.dev/schemas/{self.name}/{self.version}{suffix}.json",
                "x-cotforge-view": self.name, "x-cotforge-schema-version": self.version,
                **({"x-cotforge-format": format_} if len(self.formats) > 1 else {}),
                **self.row_model(format_).model_json_schema()}


SFT_FORMATS = ("conversational", "messages", "standard")
VIEWS: dict[str, ViewSchema] = {
    "sft": ViewSchema("sft", "2.1.0", SftRow, "supervised fine-tuning on verified rationales (SFTTrainer)",
                      migrations=_SFT_MIGRATIONS, formats=SFT_FORMATS),
    "sft_lenient": ViewSchema("sft_lenient", "2.1.0", SftRow, "supervised fine-tuning on rationales that agree with "
                              "the majority answer (no gold answer needed)", migrations=_SFT_MIGRATIONS,
                              formats=SFT_FORMATS),
    "preference": ViewSchema("preference", "1.2.0", PreferenceRow, "DPO-style pairs (`prompt`/`chosen`/`rejected`)",
                             migrations=_CHAT_MIGRATIONS, formats=CHAT_FORMATS),
    "unpaired": ViewSchema("unpaired", "1.2.0", UnpairedRow, "KTO-style rows (`prompt`/`completion`/`label`)",
                           migrations=_CHAT_MIGRATIONS, formats=CHAT_FORMATS),
    "prm": ViewSchema("prm", "1.3.0", PrmRow, "process reward models (`prompt`/`completions`/`labels` with "
                      "first-error semantics, soft Monte-Carlo score in `step_scores`, label doubts and rollout cost "
                      "per row, optional LLM-judge consensus)",
                      migrations={"1.0.0": ("1.1.0", prm_1_0_to_1_1), "1.1.0": ("1.2.0", add_added_in),
                                  "1.2.0": ("1.3.0", prm_1_2_to_1_3)},
                      formats=("standard",)),
    "rlvr": ViewSchema("rlvr", "1.2.0", RlvrRow, "RL with verifiable rewards (`prompt`, gold answer in `solution`, "
                       "a reasoning-gym entry in `verifier_spec`)",
                       migrations={**_ADDED_IN, "1.1.0": ("1.2.0", rlvr_1_1_to_1_2)}, formats=CHAT_FORMATS),
    "calibration": ViewSchema("calibration", "1.2.0", CalibrationRow, "confidence calibration (`confidence_target`"
                              " per sample)", migrations=_CHAT_MIGRATIONS, formats=CHAT_FORMATS),
    "generations": ViewSchema("generations", "1.0.0", GenerationsRow, "one row per question with every generation "
                              "in parallel lists (`generations`, `finish_reasons`, `extracted_answers`, `correctness` "
                              "and per verifier, token counts), the gold answer and pass rate, and `messages` of one "
                              "verified generation: the Hub's OpenR1-Math layout, to filter yourself"),
}


def parse_version(version: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a semver string; a malformed one is a SchemaMismatch."""
    parts = str(version).split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise SchemaMismatch(f"schema version {version!r} is not MAJOR.MINOR.PATCH")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def check_and_migrate(frame: pl.DataFrame, view: str, found_version: str,
                      writer_version: str | None = None, views: dict[str, ViewSchema] | None = None,
                      format_: str | None = None) -> pl.DataFrame:
    """Bring a frame read from a file of `found_version` up to the current schema, or refuse with a clear reason.

    Older minors are migrated step by step; a newer minor of the same major is read by keeping the known columns
    (minors only add columns); another major is refused, naming the cotforge that wrote it (`writer_version`, from
    the file's `cotforge.version` metadata) and the major this one reads. The result has exactly the current
    schema's columns of the file's format (`cotforge.format` metadata; None: the view's default, the format of every
    file written before formats existed), in order, with its types.
    """
    views = VIEWS if views is None else views
    if view not in views:
        raise SchemaMismatch(f"unknown view {view!r}; this cotforge ({COTFORGE_VERSION}) knows {sorted(views)}")
    schema = views[view]
    if format_ is not None and format_ not in schema.formats:
        raise SchemaMismatch(f"{view} file in format {format_!r}: this cotforge ({COTFORGE_VERSION}) reads {view} as "
                             f"{list(schema.formats)}")
    found = parse_version(found_version)
    current = parse_version(schema.version)
    written_by = f"written by cotforge {writer_version}" if writer_version else "written by another cotforge"
    if found[0] > current[0]:
        raise SchemaMismatch(
            f"{view} schema version {found_version} ({written_by}) is newer than this cotforge ({COTFORGE_VERSION}) "
            f"reads: it reads {view} major {current[0]} (up to {schema.version}). Read it with "
            f"cotforge {writer_version or 'a release'} or later (`pip install -U cotforge`); see schemas/CHANGELOG.md"
        )
    version = found_version
    while parse_version(version) < current and version in schema.migrations:
        version, migrate = schema.migrations[version]
        frame = migrate(frame)
    if parse_version(version)[0] != current[0]:
        raise SchemaMismatch(f"{view} schema version {found_version} ({written_by}) is an older major with no "
                             f"migration to {schema.version}; read it with cotforge {writer_version or '0.x'}")
    if parse_version(version) < current:
        raise SchemaMismatch(f"{view} schema version {found_version}: no migration from {version} to {schema.version}")
    arrow = schema.arrow_for(format_)
    missing = [c for c in arrow.names if c not in frame.columns]
    if missing:
        raise SchemaMismatch(f"{view} {found_version}: columns {missing} are missing")
    table = frame.select(arrow.names).to_arrow()
    try:
        table = table.cast(arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise SchemaMismatch(f"{view} {found_version}: columns do not fit schema {schema.version}: {error}") from None
    return pl.from_arrow(table)


def export_json_schemas(folder: Path = JSON_SCHEMA_DIR) -> list[Path]:
    """Write each view's current JSON Schema to `<folder>/<view>/<version>.json`.

    A released version's file is never rewritten with other content: changing a row model means a new version.
    """
    written = []
    for schema in VIEWS.values():
        for format_ in schema.formats:
            path = folder / schema.name / json_schema_name(schema, format_)
            text = json_schema_text(schema, format_)
            if path.exists() and path.read_text() != text:
                raise SchemaMismatch(f"{path} differs from the {schema.name} row model: a released schema is frozen, "
                                     f"bump {schema.name}'s version (and add a migration) instead of editing it")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


def json_schema_name(schema: ViewSchema, format_: str | None = None) -> str:
    """`<version>.json` for the default format, `<version>.<format>.json` for the others."""
    format_ = format_ or schema.default_format
    return f"{schema.version}.json" if format_ == schema.default_format else f"{schema.version}.{format_}.json"


def json_schema_text(schema: ViewSchema, format_: str | None = None) -> str:
    """The exact text of a view's exported JSON Schema file (of one format)."""
    return json.dumps(schema.json_schema(format_), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    for p in export_json_schemas():
        print(p)
