"""The one protocol every generation backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # top log-probs per token to return; None: none


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt, sampled `n` times from `seed` (sample i of a request is reproducible from (seed, i))."""

    request_id: str
    messages: tuple[dict[str, str], ...]  # chat messages: {"role": ..., "content": ...}
    n: int
    seed: int
    params: SamplingParams = SamplingParams()
    # Text the assistant turn starts with: the backend continues it, and the completion text excludes it
    # (PRM Monte-Carlo rollouts from a step prefix, guided re-sampling from a reference-solution prefix).
    assistant_prefix: str = ""
    # Backend-specific context; the simulated solver reads the question's family and parameters from here.
    context: dict = field(default_factory=dict, hash=False, compare=False)


@dataclass
class Completion:
    request_id: str
    index: int  # 0..n-1 within its request
    text: str
    finish_reason: str  # "stop", "length", "error"
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[float] | None = None
    error: str | None = None  # set when the backend failed for this request; text is then empty
    # False when asking again cannot help (a request this backend can never answer): not retried on the next run.
    retryable: bool = True
    # Simulated solver only: the index of the first wrong step (ground truth for process labels).
    first_error_step: int | None = None


@runtime_checkable
class Generator(Protocol):
    """generate(requests) -> completions: n completions per request, in request order, index order."""

    backend: str
    model: str
    revision: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]: ...

    def close(self) -> None: ...
