"""Recipe section `views`: which training tables to publish and what each keeps.

Each key is one published view (one config in the dataset card); `enabled: false` leaves it out. Every chat view's
prompt is the conversation the samples were generated from (the recipe's system prompt, then the question).

Every chat view publishes one of TRL's formats (`format`, schemas/views.py FORMATS), never two in one row. The default,
`conversational` (prompt-completion as lists of messages), keeps the roles so TRL renders each row with the trained
model's own chat template, and makes SFTTrainer put the loss on the assistant turn only: a model is taught to write
verified rationales, not to reproduce the questions. `messages` (sft only) trains on the whole conversation;
`standard` gives plain strings for base models trained without a chat template.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cotforge.schemas.config_base import StrictConfig
from cotforge.schemas.config_generation import GenerationConfig


class SftViewConfig(StrictConfig):
    enabled: bool = True
    keep: Literal["verified", "majority"] = "verified"  # strict: verifier says true; lenient: agrees with majority
    # How the assistant turn carries the rationale: "think_tags" renders `<think>reasoning</think>` before the final
    # answer (the convention of reasoning chat templates); "plain" writes the reasoning then the answer. The
    # rationale is always also in its own `reasoning` column.
    reasoning_format: Literal["think_tags", "plain"] = "think_tags"
    # TRL format: conversational prompt/completion (loss on the completion), one `messages` column (loss on the
    # whole conversation), or standard prompt/completion strings (no chat template; loss on the completion).
    format: Literal["conversational", "messages", "standard"] = "conversational"


ChatFormat = Literal["conversational", "standard"]


class PreferenceViewConfig(StrictConfig):
    enabled: bool = True
    max_pairs_per_question: int = Field(default=2, ge=1)
    # Which pair makers run: verified-correct vs incorrect, and (both correct) the shorter vs the longer rationale.
    methods: list[Literal["correct_vs_incorrect", "concise_vs_verbose"]] = ["correct_vs_incorrect",
                                                                             "concise_vs_verbose"]
    # concise_vs_verbose pairs only when the longer rationale has at least this many times the tokens of the shorter.
    min_length_ratio: float = Field(default=1.25, ge=1.0)
    reasoning_format: Literal["think_tags", "plain"] = "think_tags"
    format: ChatFormat = "conversational"  # lists of messages, or standard strings


class UnpairedViewConfig(StrictConfig):
    """KTO-style rows: one completion with a desirable (true) / undesirable (false) label."""

    enabled: bool = True
    max_per_question: int = Field(default=4, ge=1)
    reasoning_format: Literal["think_tags", "plain"] = "think_tags"
    format: ChatFormat = "conversational"  # lists of messages, or standard strings


DEFAULT_STEP_RUBRIC = (
    "You check one step of a worked solution. A step is correct when its own reasoning and arithmetic are right and "
    "it builds on correct previous steps. Answer yes or no first, then one short reason."
)


class PrmJudgeConfig(StrictConfig):
    """An LLM judge asked, for each step of a labelled sample, whether the step is correct given the previous ones;
    its answers are kept beside the Monte-Carlo labels with the share of steps where the two agree."""

    enabled: bool = False
    generation: GenerationConfig = GenerationConfig()  # any backend; one batched call per shard
    rubric: str = DEFAULT_STEP_RUBRIC  # the judge's system prompt
    # "annotate": the judge's answers sit beside the labels. "consensus" (Qwen's PRM lessons, 2025): the prm view
    # keeps a sample only where the judge's first wrong step is the rollouts' first error; the others stay in the
    # step_labels stage with the reason, and the report gives the agreement rate.
    mode: Literal["annotate", "consensus"] = "annotate"


class PrmViewConfig(StrictConfig):
    """Stepwise labels by Monte-Carlo rollouts from step prefixes (Math-Shepherd per step, or a binary search for the
    first error as OmegaPRM does), with first-error semantics: true before the first wrong step, false from it on."""

    enabled: bool = True
    # "mc_rollout": per-step MC, `rollouts` continuations of every step prefix checked against the gold answer.
    # "binary_search": bisection over the prefixes for the first one no rollout continues to the answer, about
    #   m * log2(steps) rollouts instead of m * steps (tasks/label/search.py).
    # "simulated_ground_truth": the simulated solver's known first error (no rollouts; for tests and comparisons).
    label_method: Literal["mc_rollout", "binary_search", "simulated_ground_truth"] = "mc_rollout"
    segmentation: Literal["lines"] = "lines"  # one step per non-empty line; list markers and fragments merged
    rollouts: int = Field(default=4, ge=1)  # m completions per step prefix, sampled in one batched call
    # binary_search: rollouts a probe sends first; the rest of m only if none reached the answer. None: m // 2.
    first_rollouts: int | None = Field(default=None, ge=1)
    # Rollouts only where they inform: a verified sample of a question whose pass rate is at least this gets a cheap
    # check (one rollout from its last prefix) instead of full labelling; a failed check falls back to full
    # labelling. Samples with a wrong answer are always labelled in full. None: every sample in full.
    cheap_check_pass_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    after_first_error: Literal["wrong", "omit"] = "wrong"  # "omit": the view's rows end at the first wrong step
    uncertain: Literal["keep", "drop"] = "keep"  # rows flagged uncertain (few rollouts, disagreeing signals)
    max_steps: int = Field(default=8, ge=1)  # rationales with more steps are recorded as skipped, not truncated
    max_samples_per_question: int = Field(default=2, ge=1)  # how many of a question's samples get step labels
    rollout_max_tokens: int | None = Field(default=None, gt=0)  # None: the sampling max_tokens of the generator
    rollout_temperature: float | None = Field(default=None, ge=0.0, le=2.0)  # None: the generator's temperature
    # The backend that rolls out the prefixes; None: the recipe's generator (the policy whose steps are labelled).
    generation: GenerationConfig | None = None
    judge: PrmJudgeConfig = PrmJudgeConfig()  # off by default: the judge columns are then null


class RlvrViewConfig(StrictConfig):
    """RL prompts with a verifiable answer, kept inside a pass-rate band (questions solved sometimes)."""

    enabled: bool = True
    # Keep questions with min_pass_rate <= pass rate <= max_pass_rate, with the ends excluded when `exclusive`:
    # the default keeps questions the reference model solves sometimes but not always (they give RL a signal).
    min_pass_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    max_pass_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    exclusive: bool = True
    format: ChatFormat = "conversational"  # the prompt as a list of messages, or a standard string

    @model_validator(mode="after")
    def _ordered_band(self) -> "RlvrViewConfig":
        if self.min_pass_rate > self.max_pass_rate:
            raise ValueError(f"min_pass_rate ({self.min_pass_rate}) is above max_pass_rate ({self.max_pass_rate})")
        return self


class CalibrationViewConfig(StrictConfig):
    enabled: bool = True
    format: ChatFormat = "conversational"  # lists of messages, or standard strings


class GenerationsViewConfig(StrictConfig):
    enabled: bool = True


class ViewsConfig(StrictConfig):
    sft: SftViewConfig = SftViewConfig()
    sft_lenient: SftViewConfig = SftViewConfig(keep="majority")
    preference: PreferenceViewConfig = PreferenceViewConfig()
    unpaired: UnpairedViewConfig = UnpairedViewConfig()
    prm: PrmViewConfig = PrmViewConfig()
    rlvr: RlvrViewConfig = RlvrViewConfig()
    calibration: CalibrationViewConfig = CalibrationViewConfig()
    generations: GenerationsViewConfig = GenerationsViewConfig()
