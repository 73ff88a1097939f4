"""The one protocol every generation backend implements."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


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


@runtime_checkable
class StreamingGenerator(Generator, Protocol):
    def stream(self, requests: Iterable[GenerationRequest]) -> Iterator[list[Completion]]:
        """Pull requests lazily from `requests` (as many as the backend can usefully keep in flight: vLLM
        `max_num_seqs` sequences, OpenAI-compatible `max_concurrency` requests, ...), and yield the n completions
        of each request (one list per request, indices 0..n-1) as soon as that request has finished, in finishing
        order. Ends when `requests` is exhausted and every pulled request was yielded. Closing the iterator
        (generator.close() / GeneratorExit) cancels what is still in flight."""


def stream_completions(generator: Generator, requests: Iterable[GenerationRequest],
                       batch_requests: int = 32) -> Iterator[list[Completion]]:
    """The backend's own `stream` where it has one; otherwise the fallback: `generate` on batches of
    `batch_requests` requests, each request's completions yielded once its batch has returned (in request order)."""
    # (the class is asked, not the instance: a lazy generator must not start its backend to answer)
    if callable(getattr(type(generator), "stream", None)):
        yield from generator.stream(requests)
        return
    source = iter(requests)
    while True:
        batch = [r for _, r in zip(range(batch_requests), source)]
        if not batch:
            return
        by_request: dict[str, list[Completion]] = {}
        for c in generator.generate(batch):
            by_request.setdefault(c.request_id, []).append(c)
        for r in batch:
            # (two requests of one batch never share an id: the sampler asks one request per question and round)
            yield whole_request(r, by_request.pop(r.request_id, []))


def whole_request(request: GenerationRequest, completions: list[Completion]) -> list[Completion]:
    """The request's n completions in index order; an index the backend did not return becomes an error row."""
    by_index = {c.index: c for c in completions}
    return [by_index.get(i) or Completion(request.request_id, i, "", "error", 0, 0,
                                          error=f"backend returned {len(by_index)} of {request.n} completions")
            for i in range(request.n)]
