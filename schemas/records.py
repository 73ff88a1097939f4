"""Record models: the rows that travel between stages as Parquet shards.

Each stage writes one record type; later stages join them by id instead of rewriting earlier columns, so changing a
verifier re-verifies without touching samples. Every record carries lineage (recipe hash, build id).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.arrow import arrow_schema

AnswerType = Literal["number", "choice", "text", "code", "none"]


def normalize_text(text: str) -> str:
    """Case-, accent- and whitespace-insensitive form of a text, the basis of ids and exact dedup."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip()


def stable_id(*parts: str, length: int = 16) -> str:
    """Hex digest of the parts; the same inputs always give the same id."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return digest[:length]


def question_id_for(text: str) -> str:
    """A question's id: the hash of its normalised text, so the same question from two sources gets one id."""
    return stable_id(normalize_text(text))


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Question(Record):
    """A question with (optionally) a checkable gold answer."""

    question_id: str
    source: str  # "family:arithmetic", "seed:gsm8k", "synth:topic" ...
    family: str | None = None
    difficulty: int | None = None
    text: str
    gold_answer: str | None = None
    answer_type: AnswerType = "number"
    verifier: str = "math"  # registered verifier name that checks answers to this question
    reference_steps: list[str] = []  # worked solution, one step per entry, when the source has one
    tests: str | None = None  # unit tests for code questions
    metadata_json: str = "{}"  # family parameters, seed-row fields, synthesis verdicts
    recipe_hash: str
    build_id: str


class Sample(Record):
    """One sampled rationale for a question, with everything needed to reproduce it."""

    sample_id: str
    question_id: str
    sample_index: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None  # backend failure for this request, recorded instead of raised
    backend: str
    model: str
    model_revision: str
    sampling_json: str  # temperature, top_p, max_tokens, stop ... as JSON
    seed: int
    prompt_template_hash: str
    guidance: str | None = None  # "hint" / "reference_prefix": off-policy rows from guided re-sampling
    first_error_step: int | None = None  # known only for the simulated solver; ground truth for PRM tests
    recipe_hash: str
    build_id: str


class Verdict(Record):
    """Answer extraction and one verifier's judgement of one sample."""

    sample_id: str
    question_id: str
    extracted_answer: str | None
    extraction_method: str | None  # "boxed", "answer_is", "tag", "last_number", "option_letter"
    verdict: bool | None  # None: the verifier could not decide
    reason: str
    verifier_name: str
    verifier_version: str
    recipe_hash: str
    build_id: str


class Vote(Record):
    """Self-consistency and difficulty of one question over its samples."""

    question_id: str
    n_samples: int
    n_answered: int
    n_correct: int
    majority_answer: str | None
    vote_share: float  # share of answered samples that gave the majority answer
    pass_rate: float | None  # n_correct / n_samples; None when no gold answer was known
    pseudo_label: str | None  # majority answer adopted as gold when there was none and the share cleared the bar
    difficulty_bin: str  # "never", "hard", "medium", "easy", "always", "unknown"
    reference_model: str
    recipe_hash: str
    build_id: str


class DedupFlag(Record):
    """Near-duplicate decision for one question (rows are flagged, never deleted)."""

    question_id: str
    cluster_id: str  # id of the cluster's kept member; equals question_id for singletons
    keep: bool
    drop_reason: str | None  # "exact_duplicate", "near_duplicate", "earlier_version", "contaminated:<bench>"
    recipe_hash: str
    build_id: str


RECORD_MODELS: dict[str, type[Record]] = {
    "questions": Question,
    "samples": Sample,
    "verdicts": Verdict,
    "votes": Vote,
    "dedup": DedupFlag,
}

RECORD_SCHEMAS = {name: arrow_schema(model) for name, model in RECORD_MODELS.items()}
