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

from cotforge.schemas.arrow import arrow_schema

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
    source_revision: str | None = None  # a Hub seed dataset: "repo@commit" it resolved to when the build read it
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
    error_permanent: bool = False  # the backend can never answer it: a rerun does not ask again
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


class Check(Record):
    """One verifier's judgement of one sample; a Verdict keeps every check that ran on its row."""

    name: str  # registered verifier name: math, exact, choice, regex, code, abstain, judge, format, language, length
    version: str
    verdict: bool | None  # None: this verifier could not decide
    reason: str


class Verdict(Record):
    """Answer extraction and the verifier cascade's final judgement of one sample (one row per sample)."""

    sample_id: str
    question_id: str
    extracted_answer: str | None  # normalised final answer ("42", "3/4", "B", code), what the vote counts
    extraction_method: str | None  # the accepted form: "boxed", "answer_tag", "answer_is", "hashes", "code_block", ...
    verdict: bool | None  # final cascade verdict; None: nothing could decide
    reason: str  # why the deciding verifier said so ("numeric_equal", "timeout", "no_answer_found", ...)
    verifier_name: str  # the verifier whose judgement is `verdict`
    verifier_version: str
    checks: list[Check] = []  # every verifier that ran on this row, in cascade order
    raw_answer: str | None = None  # the answer as written, before normalisation
    judge_score: float | None = None  # 0..1 when the LLM judge ran and gave a score
    judge_rationale: str | None = None  # the judge's full output
    n_chars: int = 0
    n_words: int = 0
    n_steps: int = 0  # non-empty lines
    scripts: str = ""  # letter scripts found in the text, most frequent first ("latin", "latin,cjk")
    tests_passed: int | None = None  # code questions: tests the candidate passed, of `tests_total`
    tests_total: int | None = None
    test_mode: str | None = None  # "values" (compared outside the sandbox), "asserts" (run inside), or both
    # Whether the sample may be a training example (sft, preference chosen, prm, rlvr pseudo-labels): finished (not
    # cut off at the token limit), one stated final answer, not answered by a fallback extraction alone.
    trainable: bool = False
    untrainable_reason: str | None = None  # "length:truncated", "format:no_answer_found", "contract:text_after_answer"
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
    pass_rate: float | None  # n_correct / n_samples; None when neither gold nor pseudo-label is known
    pass_rate_basis: str | None = None  # "gold", "pseudo_label" (agreement with it) or None
    pseudo_label: str | None  # majority answer adopted as gold when there was none and the share cleared the bar
    difficulty_bin: str  # "never", "hard", "medium", "easy", "always", "unknown"
    reference_model: str
    k: int = 0  # samples per question the recipe asked for (n_samples may be lower after generation errors)
    recipe_hash: str
    build_id: str


class DedupFlag(Record):
    """Duplicate/contamination decision for one question (rows are flagged, never deleted)."""

    question_id: str
    cluster_id: str  # id of the cluster's kept member (or the earlier version's row); own id for singletons
    keep: bool
    drop_reason: str | None  # "exact_duplicate", "near_duplicate", "earlier_version", "contaminated:<bench>"
    similarity: float | None = None  # estimated Jaccard to the row it duplicates (1.0 for exact duplicates)
    contamination: list[str] = []  # every benchmark this question hit
    recipe_hash: str
    build_id: str


class SampleDedupFlag(Record):
    """Near-duplicate decision for one sampled rationale."""

    sample_id: str
    question_id: str
    cluster_id: str  # sample id of the cluster's kept member
    keep: bool
    drop_reason: str | None  # "exact_duplicate", "near_duplicate", "earlier_version"
    similarity: float | None = None
    recipe_hash: str
    build_id: str


class DecontamHit(Record):
    """One overlap between a question and an evaluation-set row."""

    question_id: str
    benchmark: str
    method: str  # "ngram" (shared word n-grams) or "minhash" (estimated Jaccard)
    score: float  # shared n-grams, or estimated Jaccard
    eval_row: int  # row index in the evaluation set
    eval_text: str  # the evaluation row's text (first 200 characters)
    recipe_hash: str
    build_id: str


RECORD_MODELS: dict[str, type[Record]] = {
    "questions": Question,
    "samples": Sample,
    "verdicts": Verdict,
    "votes": Vote,
    "dedup": DedupFlag,
    "sample_dedup": SampleDedupFlag,
    "decontam": DecontamHit,
}

RECORD_SCHEMAS = {name: arrow_schema(model) for name, model in RECORD_MODELS.items()}
