"""Published views: the training tables, each with a semver schema version and migrations from older ones.

Column names are the ones TRL's trainers read: SFT `messages`, preference `prompt`/`chosen`/`rejected`, stepwise
supervision `prompt`/`completions`/`labels` (bool; the soft Monte-Carlo score has its own column because TRL casts
labels to int).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from schemas.arrow import arrow_schema

COTFORGE_VERSION = "0.1.0"


class Message(BaseModel):
    role: str
    content: str


class ViewRow(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SftRow(ViewRow):
    """One verified (or majority-agreeing) rationale as a chat."""

    messages: list[Message]
    prompt: str
    completion: str
    question_id: str
    sample_id: str
    answer: str | None
    verified: bool | None
    source: str
    difficulty: int | None


class PreferenceRow(ViewRow):
    """Two samples of the same question: one judged better than the other, and how the pair was made."""

    prompt: str
    chosen: str
    rejected: str
    question_id: str
    chosen_sample_id: str
    rejected_sample_id: str
    pair_method: str  # "correct_vs_incorrect", "concise_vs_verbose"
    source: str


class PrmRow(ViewRow):
    """Stepwise supervision: one label per reasoning step."""

    prompt: str
    completions: list[str]
    labels: list[bool]
    step_scores: list[float]  # soft score per step (fraction of rollouts reaching the gold answer)
    first_error_step: int | None  # index of the first step labelled false; None when all are true
    label_method: str  # "simulated_ground_truth", "mc_rollout"
    segmentation: str  # how the rationale was split into steps
    question_id: str
    sample_id: str


@dataclass(frozen=True)
class ViewSchema:
    """A published view's name, current version, row model and the migrations that bring older files up to it."""

    name: str
    version: str
    model: type[ViewRow]
    # (from_version, function) pairs: each function takes a frame of that version and returns the next minor one.
    migrations: dict[str, Callable[[pl.DataFrame], pl.DataFrame]] = field(default_factory=dict)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def arrow(self) -> pa.Schema:
        return arrow_schema(self.model)


VIEWS: dict[str, ViewSchema] = {
    "sft": ViewSchema("sft", "1.0.0", SftRow),
    "preference": ViewSchema("preference", "1.0.0", PreferenceRow),
    "prm": ViewSchema("prm", "1.0.0", PrmRow),
}


class SchemaMismatch(ValueError):
    """A published file this version of cotforge cannot read."""


def check_and_migrate(frame: pl.DataFrame, view: str, found_version: str) -> pl.DataFrame:
    """Bring a frame read from a file of `found_version` up to the current schema, or refuse with a clear reason."""
    if view not in VIEWS:
        raise SchemaMismatch(f"unknown view {view!r}; this cotforge knows {sorted(VIEWS)}")
    schema = VIEWS[view]
    found_major = int(found_version.split(".")[0])
    if found_major > schema.major:
        raise SchemaMismatch(
            f"{view} schema version {found_version} is newer than this cotforge ({COTFORGE_VERSION}) reads "
            f"(major {schema.major}, {schema.version}); upgrade cotforge to a release that reads major {found_major}"
        )
    if found_major < schema.major:
        raise SchemaMismatch(f"{view} schema version {found_version} has no migration to {schema.version}")
    version = found_version
    while version != schema.version and version in schema.migrations:
        frame = schema.migrations[version](frame)
        major, minor, _ = version.split(".")
        version = f"{major}.{int(minor) + 1}.0"
    missing = [c for c in schema.arrow.names if c not in frame.columns]
    if missing:
        raise SchemaMismatch(f"{view} {found_version}: columns {missing} are missing")
    return frame
