"""Any OpenAI-compatible chat server: `vllm serve`, SGLang, llama.cpp's server, hosted APIs.

Async (httpx) with at most `max_concurrency` requests in flight; 429, 5xx, timeouts and dropped connections are
retried with exponential backoff (and the server's Retry-After when it sends one). `n` and `seed` go to the server;
a server that returns fewer than `n` choices (llama.cpp's ignores `n`) gets the missing samples as separate requests
seeded `seed + index`, as the in-process llama.cpp backend does. The API key is read from the environment variable the
recipe names and goes only into the Authorization header: never into logs, errors or records.

An assistant prefix is sent as a final assistant message with `continue_final_message` (honoured by vLLM and SGLang;
other servers may open a new turn instead).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from typing import Sequence

import httpx

from cotforge.schemas.config_generation import OpenAIConfig
from cotforge.tasks.generate.base import Completion, GenerationRequest

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIGenerator:
    backend = "openai"

    def __init__(self, config: OpenAIConfig):
        self.config = config
        self.model = config.model
        self.revision = "served"  # the server's system_fingerprint replaces this once a response carries one
        self.gpus = 0  # the GPUs, if any, are the server's; not counted in this build's GPU-hours
        self._headers = {"Content-Type": "application/json"}
        if config.api_key_env:
            key = os.environ.get(config.api_key_env)
            if not key:
                raise ValueError(f"generation.openai.api_key_env names {config.api_key_env!r}, which is not set "
                                 "in the environment")
            self._headers["Authorization"] = f"Bearer {key}"
        # What the server was asked and charged: read by the sampling stage's accounting and by tests.
        self.usage = {"http_requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "n_fallbacks": 0}

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return _run(self._generate_all(list(requests)))

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[Completion]:
        limits = httpx.Limits(max_connections=self.config.max_concurrency)
        async with httpx.AsyncClient(base_url=self.config.base_url.rstrip("/") + "/", headers=self._headers,
                                     timeout=self.config.timeout_s, limits=limits) as client:
            gate = asyncio.Semaphore(self.config.max_concurrency)
            per_request = await asyncio.gather(*(self._one(client, gate, r) for r in requests))
        return [c for completions in per_request for c in completions]

    async def _one(self, client: httpx.AsyncClient, gate: asyncio.Semaphore,
                   request: GenerationRequest) -> list[Completion]:
        """The n completions of one request, in index order."""
        mode = self.config.n_mode
        got: dict[int, Completion] = {}
        if mode != "separate" or request.n == 1:
            got.update(await self._call(client, gate, request, request.n, request.seed, 0))
        missing = [i for i in range(request.n) if i not in got]
        if missing and mode != "native":
            if mode == "auto" and got:
                self.usage["n_fallbacks"] += 1
            results = await asyncio.gather(*(self._call(client, gate, request, 1, request.seed + i, i)
                                             for i in missing))
            for r in results:
                got.update(r)
        return [got.get(i) or Completion(request.request_id, i, "", "error", 0, 0,
                                         error=f"server returned {len(got)} of {request.n} choices")
                for i in range(request.n)]

    def _body(self, request: GenerationRequest, n: int, seed: int) -> dict:
        p = request.params
        messages = list(request.messages)
        body = {"model": self.config.model, "n": n, "seed": seed, "temperature": p.temperature, "top_p": p.top_p,
                "max_tokens": p.max_tokens}
        if p.stop:
            body["stop"] = list(p.stop)
        if p.logprobs is not None:
            body |= {"logprobs": True, "top_logprobs": p.logprobs}
        if request.assistant_prefix:
            messages.append({"role": "assistant", "content": request.assistant_prefix})
            body |= {"continue_final_message": True, "add_generation_prompt": False}
        body["messages"] = messages
        return body

    async def _call(self, client: httpx.AsyncClient, gate: asyncio.Semaphore, request: GenerationRequest, n: int,
                    seed: int, first_index: int) -> dict[int, Completion]:
        """One HTTP request for `n` choices, retried on transient failures; choice j becomes index first_index + j."""
        body = self._body(request, n, seed)
        error = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            retry_after = None
            async with gate:
                self.usage["http_requests"] += 1
                try:
                    response = await client.post("chat/completions", json=body)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return self._completions(request, response.json(), first_index, n)
                    error = f"HTTP {response.status_code}: {response.text[:300]}"
                    if response.status_code not in RETRY_STATUS:
                        break  # a bad request stays bad: record it instead of retrying
                    retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt < self.config.max_retries:
                self.usage["retries"] += 1
                delay = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** attempt)
                delay = retry_after if retry_after is not None else delay * (0.5 + random.random() / 2)
                await asyncio.sleep(min(delay, self.config.backoff_max_s))
        return {first_index + j: Completion(request.request_id, first_index + j, "", "error", 0, 0, error=error)
                for j in range(n)}

    def _completions(self, request: GenerationRequest, payload: dict, first_index: int,
                     n: int) -> dict[int, Completion]:
        usage = payload.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_total = int(usage.get("completion_tokens") or 0)
        self.usage["prompt_tokens"] += prompt_tokens
        self.usage["completion_tokens"] += completion_total
        if payload.get("system_fingerprint"):
            self.revision = payload["system_fingerprint"]
        choices = sorted(payload.get("choices") or [], key=lambda c: c.get("index", 0))[:n]
        # Usage is per response; with several choices, completion tokens are split in proportion to text length.
        texts = [((c.get("message") or {}).get("content") or "") for c in choices]
        shares = _split(completion_total, [len(t) + 1 for t in texts])
        out = {}
        for j, (choice, text, tokens) in enumerate(zip(choices, texts, shares)):
            logprobs = None
            if request.params.logprobs is not None and choice.get("logprobs"):
                logprobs = [float(t["logprob"]) for t in choice["logprobs"].get("content") or []]
                tokens = len(logprobs) or tokens
            out[first_index + j] = Completion(request.request_id, first_index + j, text,
                                              choice.get("finish_reason") or "stop", prompt_tokens, tokens,
                                              logprobs=logprobs)
        return out

    def close(self) -> None:
        pass


def _split(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights`, summing exactly to `total`."""
    if not weights:
        return []
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    shares[-1] += total - sum(shares)
    return shares


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _run(coroutine):
    """Run a coroutine from sync code, also when this thread already runs an event loop (then in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = error

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
