"""The row models of the published views (one pydantic model per view; TRL's column names), and the TRL formats a
chat view can be published in. `schemas/views.py` versions them."""

from __future__ import annotations

import functools

from pydantic import BaseModel, ConfigDict, create_model


class SchemaMismatch(ValueError):
    """A published file this version of cotforge cannot read."""


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
    verifier_spec: str | None  # what the reward needs beyond `solution` (a reasoning-gym entry as JSON), else None
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
