"""Recipe section `verify`: the verifier cascade, the code sandbox, the LLM judge, self-consistency and difficulty."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from cotforge.schemas.config_base import StrictConfig
from cotforge.schemas.config_generation import GenerationConfig

DEFAULT_RUBRIC = (
    "Judge whether the candidate's final answer is correct for the question and whether its reasoning supports it. "
    "A reference answer is given when one is known."
)


class SandboxConfig(StrictConfig):
    """Limits and isolation for running candidate programs (the `code` verifier)."""

    cpu_s: int = Field(default=2, gt=0)  # RLIMIT_CPU of every process in the sandbox
    wall_s: float = Field(default=6.0, gt=0)  # one run (all value tests, or one assert block), then it is killed
    memory_mb: int = Field(default=512, ge=64)  # RLIMIT_AS (address space) per process
    max_processes: int = Field(default=8, ge=1)  # RLIMIT_NPROC inside the sandbox's user namespace
    max_output_bytes: int = Field(default=65536, gt=0)  # per stream (stdout, stderr, results); more kills the run
    disk_mb: int = Field(default=16, ge=1)  # size of the tmpfs that is the sandbox's only writable place
    # "bubblewrap": user, pid, network, ipc and mount namespaces (bwrap); where they are unavailable, candidates are
    # not run (verdict null, reason `no_isolation`). "none": an explicit opt-out, stated in the dataset card: a
    # plain subprocess with the rlimits, a scrubbed environment and (as root) a throw-away uid, nothing more.
    isolation: Literal["bubblewrap", "none"] = "bubblewrap"


def _enforce_from_bool(value: object) -> object:
    return ("always" if value else "never") if isinstance(value, bool) else value


# What a failed structure check does: "always" turns a true verdict false; "training_views" leaves the verdict as
# it is but keeps the sample out of the training views (sft, preference chosen, prm, rlvr pseudo-labels); "never"
# only records it. `true` / `false` mean "always" / "never".
Enforce = Annotated[Literal["always", "training_views", "never"], BeforeValidator(_enforce_from_bool)]


class MathConfig(StrictConfig):
    """How the `math` verifier compares (math-verify's options; the defaults are math-verify's own)."""

    precision: int = Field(default=6, ge=0, le=15)  # decimal places two numbers must agree to
    strict: bool = True  # False: variables and functions compare loosely (f(x) matches f(y))
    allow_set_relation_comp: bool = False  # True: "x \in [-2,7]" matches "-2 \le x \le 7"


class LanguageConfig(StrictConfig):
    """Which scripts a rationale may be written in (script-based: Latin, Cyrillic, CJK, Arabic, ...)."""

    policy: Literal["allowed", "mixed_allowed", "target_only"] = "allowed"
    target: str = "latin"  # Unicode script name, lower case: latin, cyrillic, greek, cjk, arabic, hangul, ...
    min_target_share: float = Field(default=0.5, ge=0.0, le=1.0)  # mixed_allowed: share of letters in the target
    enforce: Enforce = "never"


class FormatConfig(StrictConfig):
    """Structure of a rationale: tags and a single stated final answer (the line the system prompt asks for)."""

    require: Literal["none", "answer_tag", "think_answer_tags"] = "none"
    enforce: Enforce = "training_views"  # a sample without its final line is no training example by default


class LengthConfig(StrictConfig):
    """Length and step statistics; a truncated sample (finish reason `length`) always fails this check."""

    max_words: int | None = Field(default=None, gt=0)
    min_steps: int = Field(default=0, ge=0)
    enforce: Enforce = "training_views"  # a sample cut off at the token limit is no training example by default


class JudgeConfig(StrictConfig):
    """An LLM judge: any generation backend, a rubric; asked only where rule verifiers could not decide."""

    generation: GenerationConfig = GenerationConfig()
    rubric: str = DEFAULT_RUBRIC
    # False: the judge decides only rows the rule verifiers left null. True: it judges every row, and its `false`
    # overrides a rule `true` (a right answer with reasoning the judge rejects).
    everywhere: bool = False
    pass_score: float = Field(default=0.5, ge=0.0, le=1.0)  # score (0..1) at or above which a bare score passes
    # Text the judge's reply starts with (the backend continues it), e.g. "SCORE:" so a small model states a score
    # first; it is kept at the head of the stored rationale.
    assistant_prefix: str = ""


ANSWER_FORMS = ("boxed", "answer_tag", "answer_is", "is_the_answer", "hashes", "answer_line", "bare")
AnswerForm = Literal["boxed", "answer_tag", "answer_is", "is_the_answer", "hashes", "answer_line", "bare"]


class ContractConfig(StrictConfig):
    """The answer contract every verifier reads a final answer by (tasks/verify/contract.py): the forms a final
    answer may be stated in, and the reasoning blocks whose text is never the answer."""

    # boxed: \boxed{X}; answer_tag: <answer>X</answer>; answer_is: "The (final) answer is X"; is_the_answer: "So X is
    # the answer"; hashes: "#### X"; answer_line: "Answer: X" (also on the next line, "**Final Answer**" over a
    # display); bare: the answer region is nothing but X.
    forms: list[AnswerForm] = list(ANSWER_FORMS)
    reasoning_tags: list[str] = ["think", "thinking", "reasoning"]  # <think>...</think> and the like

    @field_validator("forms")
    @classmethod
    def _forms(cls, forms: list[str]) -> list[str]:
        if not forms:
            raise ValueError("verify.contract.forms: name at least one accepted answer form")
        if len(set(forms)) != len(forms):
            raise ValueError("verify.contract.forms: a form is listed twice")
        return forms

    @field_validator("reasoning_tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        bad = [t for t in tags if not re.fullmatch(r"[A-Za-z][\w-]{0,31}", t)]
        if bad:
            raise ValueError(f"verify.contract.reasoning_tags: {bad[0]!r} is no tag name (letters, digits, '_', '-'; "
                             "written without brackets)")
        if "answer" in [t.lower() for t in tags]:
            raise ValueError("verify.contract.reasoning_tags: 'answer' holds the answer, it cannot be reasoning")
        return tags


class VerifyConfig(StrictConfig):
    timeout_s: float = Field(default=5.0, gt=0)  # hard wall-clock limit per verification in the worker pool
    workers: int | None = Field(default=None, ge=1)  # verifier processes; None: one per core
    pseudo_label_min_share: float = Field(default=0.6, ge=0.0, le=1.0)  # majority share that becomes a label
    difficulty_edges: list[float] = [1 / 3, 2 / 3]  # pass-rate edges of the bins hard | medium | easy
    sandbox: SandboxConfig = SandboxConfig()
    language: LanguageConfig = LanguageConfig()
    format: FormatConfig = FormatConfig()
    length: LengthConfig = LengthConfig()
    judge: JudgeConfig | None = None
    math: MathConfig = MathConfig()
    contract: ContractConfig = ContractConfig()

    @model_validator(mode="after")
    def _edges_sorted(self) -> "VerifyConfig":
        edges = self.difficulty_edges
        if len(edges) != 2 or not 0.0 < edges[0] < edges[1] < 1.0:
            raise ValueError("difficulty_edges must be two increasing pass rates strictly between 0 and 1")
        return self
