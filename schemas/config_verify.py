"""Recipe section `verify`: the verifier cascade, the code sandbox, the LLM judge, self-consistency and difficulty."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from cotforge.schemas.config_base import StrictConfig
from cotforge.schemas.config_generation import GenerationConfig

DEFAULT_RUBRIC = (
    "Judge whether the candidate's final answer is correct for the question and whether its reasoning supports it. "
    "A reference answer is given when one is known."
)


class SandboxConfig(StrictConfig):
    """Limits for running candidate programs (the `code` verifier)."""

    cpu_s: int = Field(default=2, gt=0)  # RLIMIT_CPU of every process in the sandbox
    wall_s: float = Field(default=6.0, gt=0)  # whole program + tests, then the process group is killed
    memory_mb: int = Field(default=512, ge=64)  # RLIMIT_AS (address space) per process
    max_processes: int = Field(default=8, ge=1)  # RLIMIT_NPROC for the sandbox's own user id
    max_output_bytes: int = Field(default=65536, gt=0)  # per stream; also RLIMIT_FSIZE for files it writes
    # "auto": a fresh network namespace (`unshare -n`) when the machine allows it, always with the audit hook;
    # "audit": only the in-process audit hook that refuses sockets; "unshare": fail the item if unshare is missing.
    network: Literal["auto", "unshare", "audit"] = "auto"


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
    enforce: bool = False  # True: a violation turns a correct final verdict into false


class FormatConfig(StrictConfig):
    """Structure of a rationale: tags and a single final answer."""

    require: Literal["none", "answer_tag", "think_answer_tags"] = "none"
    enforce: bool = False  # True: a format failure turns a correct final verdict into false


class LengthConfig(StrictConfig):
    """Length and step statistics; a truncated sample (finish reason `length`) always fails this check."""

    max_words: int | None = Field(default=None, gt=0)
    min_steps: int = Field(default=0, ge=0)
    enforce: bool = False


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

    @model_validator(mode="after")
    def _edges_sorted(self) -> "VerifyConfig":
        edges = self.difficulty_edges
        if len(edges) != 2 or not 0.0 < edges[0] < edges[1] < 1.0:
            raise ValueError("difficulty_edges must be two increasing pass rates strictly between 0 and 1")
        return self
