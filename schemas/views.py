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

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, create_model

from cotforge.schemas.arrow import arrow_schema

COTFORGE_VERSION = "0.1.0"
JSON_SCHEMA_DIR = Path(__file__).resolve().parent / "json"


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str
    content: str


class ViewRow(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SftRow(ViewRow):
    """One verified (strict) or majority-agreeing (lenient) rationale as a chat, the reasoning apart from the answer.

    One format per row, as TRL's SFTTrainer requires (a row with `messages` and `prompt`/`completion` both is refused):
    conversational prompt-completion, so the loss falls on the assistant turn only. The whole chat is
    `prompt + completion`."""

    prompt: list[Message]  # the system prompt the sample was generated with, then the question
    completion: list[Message]  # the assistant turn rendered per `reasoning_format`
    reasoning: str  # the rationale without the final-answer line
    final_answer: str  # the final-answer line ("The answer is 42.")
    reasoning_format: str  # "think_tags": <think>reasoning</think> then the answer; "plain"
    answer: str | None  # the extracted final answer
    verified: bool | None
    agrees_with_majority: bool
    keep_rule: str  # "verified" (strict config) or "majority" (lenient config)
    question_id: str
    sample_id: str
    source: str
    difficulty: int | None
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it


class PreferenceRow(ViewRow):
    """Two samples of the same question: one judged better than the other, and how the pair was made."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    pair_method: str  # "correct_vs_incorrect", "concise_vs_verbose"
    chosen_verified: bool | None
    rejected_verified: bool | None
    chosen_tokens: int
    rejected_tokens: int
    question_id: str
    chosen_sample_id: str
    rejected_sample_id: str
    source: str
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it


class UnpairedRow(ViewRow):
    """One completion with a desirable / undesirable label (KTO-style trainers)."""

    prompt: list[Message]
    completion: list[Message]
    label: bool  # the verifier's verdict
    verdict_reason: str | None
    question_id: str
    sample_id: str
    source: str
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it


class PrmRow(ViewRow):
    """Stepwise supervision: one label per reasoning step."""

    prompt: str
    completions: list[str]
    # Hard labels with first-error semantics (1.3.0): true before the first step whose prefix no rollout continued to
    # the gold answer, false from it on (1.2.0 and earlier: true where some rollout from the step's prefix did).
    labels: list[bool]
    step_scores: list[float | None]  # soft score per step: the fraction of rollouts that did; null: not rolled out
    first_error_step: int | None  # index of the first step labelled false; None when all are true
    label_method: str  # "mc_rollout", "binary_search", "simulated_ground_truth"
    segmentation: str  # how the rationale was split into steps ("lines")
    rollouts_per_step: int  # m; 0 when no rollouts were sampled
    rollout_model: str  # backend / model that rolled the prefixes out; "" without rollouts
    verified: bool | None  # the whole sample's verdict
    reference_first_error_step: int | None  # ground truth where known (simulated solver), else None
    question_id: str
    sample_id: str
    # 1.1.0: optional LLM judge per step (`views.prm.judge`); all null when it was off or the file is 1.0.0.
    judge_step_labels: list[bool | None] | None  # the judge's yes/no per step ("correct given the previous ones?")
    judge_agreement: float | None  # share of the judged steps where the judge agrees with `labels`
    judge_model: str | None  # backend/model of the judge
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it
    # 1.3.0: label doubts, the judge's first error, and the cost of the labels; all null in older files.
    label_status: str | None  # "confident", "uncertain"
    uncertain_reasons: list[str] | None  # "few_rollouts", "non_monotone", "verdict_disagrees", "judge_disagrees"
    judge_first_error_step: int | None  # the first step the judge called wrong (judge on)
    consensus: bool | None  # whether the judge's first error is `first_error_step`; null: judge off or undecided
    rollouts: int | None  # completions rolled out for this row
    mc_equivalent_rollouts: int | None  # what per-step MC at the same m would spend: m * (steps - 1)
    steps_left_out: int | None  # steps after the first error left out (`views.prm.after_first_error: omit`)


class RlvrRow(ViewRow):
    """A prompt for RL with a verifiable reward: gold answer or tests, the verifier to use, and its difficulty."""

    prompt: list[Message]
    solution: str | None  # gold answer (or pseudo-label from the vote when the source had none)
    solution_kind: str  # "gold", "pseudo_label"
    tests: str | None  # unit tests for code questions
    answer_type: str
    verifier: str  # registered verifier name (tasks/verify/cascade.py)
    pass_rate: float | None  # the reference model's empirical pass rate
    n_samples: int
    n_correct: int
    difficulty_bin: str  # "hard", "medium", "easy" ... (tasks/verify/vote.py::difficulty_bin)
    reference_model: str
    question_id: str
    source: str
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it


class CalibrationRow(ViewRow):
    """A sample with a confidence target: the empirical accuracy of its question's samples (SaySelf-style)."""

    prompt: list[Message]
    completion: list[Message]
    answer: str | None
    correct: bool | None
    confidence_target: float | None  # n_correct / n_samples of the question; None without a gold answer
    answer_agreement: float  # share of the question's answered samples that gave this sample's answer
    n_samples: int
    question_id: str
    sample_id: str
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it


# TRL's dataset formats a chat view can publish, one per view and file (chosen by the recipe's `views.<view>.format`;
# the file names it in its `cotforge.format` metadata), and the loss each implies in TRL's trainers.
FORMATS = {
    "conversational": "conversational prompt-completion: `prompt` and `completion` (`chosen`/`rejected`) are lists of "
                      "messages; TRL applies the model's chat template and puts the loss on the completion only "
                      "(SFTTrainer's `completion_only_loss`, its default for prompt-completion rows)",
    "messages": "conversational language modeling: one `messages` column (the prompt's turns, then the assistant's); "
                "TRL's SFTTrainer puts the loss on the whole conversation, system and user turns included, unless "
                "`assistant_only_loss=True` (which needs a chat template that marks the assistant's turns)",
    "standard": "standard prompt-completion: `prompt` and `completion` (`chosen`/`rejected`) are plain strings and no "
                "chat template is applied (the prompt is the system prompt, a blank line, the question and a "
                "newline); TRL puts the loss on the completion only",
}
DEFAULT_FORMAT = "conversational"
CHAT_COLUMNS = ("prompt", "completion", "chosen", "rejected")


@functools.cache
def format_model(model: type[ViewRow], format_: str) -> type[ViewRow]:
    """A chat view's row model in another format: `standard` makes its chat columns plain strings, `messages` puts
    one `messages` list where `prompt` and `completion` were. The conversational model itself is the default."""
    if format_ == DEFAULT_FORMAT:
        return model
    if format_ not in FORMATS:
        raise SchemaMismatch(f"unknown format {format_!r}; formats are {sorted(FORMATS)}")
    fields = {}
    for name, info in model.model_fields.items():
        if name in CHAT_COLUMNS and format_ == "standard":
            fields[name] = (str, ...)
        elif name == "prompt" and format_ == "messages":
            fields["messages"] = (list[Message], ...)
        elif not (name == "completion" and format_ == "messages"):
            fields[name] = (info.annotation, ...)
    return create_model(f"{model.__name__}{format_.title()}", __base__=ViewRow,
                        __doc__=f"{model.__doc__}\n\nFormat `{format_}`: {FORMATS[format_]}.", **fields)


class VerifierVerdicts(BaseModel):
    """One verifier's judgement of every generation of a question, parallel to `generations`."""

    model_config = ConfigDict(extra="forbid")

    verifier: str  # registered verifier name: the question's own (math, reasoning_gym ...), format, language, length
    version: str
    verdicts: list[bool | None]  # one per generation; None: this verifier could not decide (or did not run on it)
    reasons: list[str]


class GenerationsRow(ViewRow):
    """One question with every generation in parallel lists (the Hub's OpenR1-Math-220k layout): users filter for
    themselves. `messages` is one verified, trainable generation as a whole chat (None when no generation is)."""

    question_id: str
    problem: str  # the question text
    prompt: list[Message]  # the conversation the generations were sampled from (system prompt, then the question)
    answer: str | None  # the gold answer (None: the source had none)
    source: str
    difficulty: int | None
    verifier: str  # the question's verifier
    verifier_spec: str | None  # what re-scoring needs (a reasoning-gym entry as JSON), else None
    generations: list[str]  # every generation without a generation error, by sample index
    sample_ids: list[str]
    finish_reasons: list[str]
    extracted_answers: list[str | None]
    correctness: list[bool | None]  # the cascade's final verdict per generation
    correctness_by_verifier: list[VerifierVerdicts]  # every verifier's verdict per generation
    trainable: list[bool]  # finished, one stated final answer, not a fallback extraction alone
    prompt_tokens: list[int]
    completion_tokens: list[int]
    correctness_count: int  # generations whose final verdict is true
    pass_rate: float | None  # the vote's pass rate (over every sample asked for, errors included)
    difficulty_bin: str
    messages: list[Message] | None  # prompt + one verified, trainable generation; None when there is none
    model: str  # the model that generated them
    added_in: str | None  # dataset version that first published the row; kept as later versions carry it


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
    "rlvr": ViewSchema("rlvr", "1.2.0", RlvrRow, "RL with verifiable rewards (`prompt`, gold answer in `solution`)",
                       migrations=_CHAT_MIGRATIONS, formats=CHAT_FORMATS),
    "calibration": ViewSchema("calibration", "1.2.0", CalibrationRow, "confidence calibration (`confidence_target`"
                              " per sample)", migrations=_CHAT_MIGRATIONS, formats=CHAT_FORMATS),
    "generations": ViewSchema("generations", "1.0.0", GenerationsRow, "one row per question with every generation "
                              "in parallel lists (`generations`, `finish_reasons`, `extracted_answers`, `correctness` "
                              "and per verifier, token counts), the gold answer and pass rate, and `messages` of one "
                              "verified generation: the Hub's OpenR1-Math layout, to filter yourself"),
}


class SchemaMismatch(ValueError):
    """A published file this version of cotforge cannot read."""


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
