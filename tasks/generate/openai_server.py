"""Any OpenAI-compatible chat server (`vllm serve`, SGLang, llama.cpp's server, hosted APIs), or a list of them.

Streams: requests are pulled from the caller's iterator only when a server has room in its window, and each request's
completions are handed back as soon as it is answered, so the servers' batches stay full across the sampler's parts
and shards. Each server has an AIMD window (`window.py`) up to its `max_concurrency`: it halves on 429/503 or climbing
latency, honours Retry-After, and grows back; a new request goes to the least loaded server relative to its window, so
each server is kept busy in proportion to its capacity. `window_log` records the window over time for the report.

Retries (one place: `_call`): 429, 5xx, timeouts and dropped connections are retried with exponential backoff (or the
server's Retry-After). `n` and `seed` go to the server; a server that returns fewer than `n` choices (llama.cpp's
ignores `n`) gets the missing samples as separate requests seeded `seed + index`, as the in-process llama.cpp backend
does. The API key is read from the environment variable the recipe names and goes only into the Authorization header:
never into logs, errors or records. An assistant prefix is sent as a final assistant message with
`continue_final_message` (honoured by vLLM and SGLang; other servers may open a new turn instead).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence

import httpx

from cotforge.schemas.config_generation import OpenAIConfig
from cotforge.tasks.core.backoff import backoff_delay, parse_retry_after
from cotforge.tasks.generate.base import Completion, GenerationRequest
from cotforge.tasks.generate.window import AimdWindow, pick_server

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
OVERLOAD_STATUS = {429, 503}
_END = object()


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
        self.servers = config.servers
        self.windows = [AimdWindow(limit, latency_factor=config.latency_factor) for _, limit in self.servers]
        self.in_flight = [0] * len(self.servers)
        # Per server: requests answered and seconds spent on them (the routing test reads these).
        self.server_stats = [{"url": url, "requests": 0, "busy_s": 0.0} for url, _ in self.servers]
        self.window_log: list[tuple[float, int, int]] = []  # (s since the first stream, window, requests in flight)
        self._clock_zero: float | None = None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """n completions per request, in request order, index order (the stream, collected)."""
        out: list[list[Completion]] = [[] for _ in requests]
        for position, completions in self._positions(iter(requests)):
            out[position] = completions
        return [c for completions in out for c in completions]

    def stream(self, requests: Iterable[GenerationRequest]) -> Iterator[list[Completion]]:
        """The StreamingGenerator protocol: a request's completions as soon as it is answered."""
        for _, completions in self._positions(iter(requests)):
            yield completions

    def _positions(self, source: Iterator[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        """(pull position, completions) per request, driven by an event loop in a helper thread."""
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        thread = threading.Thread(target=lambda: asyncio.run(self._drive(source, results, stop)), daemon=True)
        thread.start()
        try:
            while (item := results.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # closing early (or Ctrl-C) cancels what is in flight
            thread.join()

    async def _drive(self, source: Iterator[GenerationRequest], results: queue.Queue, stop: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._clock_zero = self._clock_zero or time.monotonic()
        clients = [httpx.AsyncClient(base_url=url.rstrip("/") + "/", headers=self._headers,
                                     timeout=self.config.timeout_s, limits=httpx.Limits(max_connections=limit))
                   for url, limit in self.servers]
        tasks: dict[asyncio.Task, int] = {}
        pulled, exhausted = 0, False
        self._waiting = 0
        try:
            while not stop.is_set():
                # Pull a request only when a server has room that no retry is waiting for.
                while not exhausted and not self._waiting:
                    server = pick_server(self.windows, self.in_flight, loop.time())
                    if server is None:
                        break
                    try:
                        request = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    self.in_flight[server] += 1  # held for the request's first call
                    tasks[asyncio.create_task(self._one(clients, request, server))] = pulled
                    pulled += 1
                self._log_window()
                if exhausted and not tasks:
                    break
                if not tasks:
                    await asyncio.sleep(0.02)  # every server paused (Retry-After)
                    continue
                done, _ = await asyncio.wait(tasks, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    results.put((tasks.pop(task), task.result()))
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
            results.put(error)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients:
                await client.aclose()
            self._log_window(force=True)
            results.put(_END)

    def _log_window(self, force: bool = False) -> None:
        entry = (round(time.monotonic() - self._clock_zero, 3), sum(w.size for w in self.windows),
                 sum(self.in_flight))
        if force or not self.window_log or self.window_log[-1][1:] != entry[1:] and \
                entry[0] - self.window_log[-1][0] >= 0.05:
            self.window_log.append(entry)

    async def _acquire(self) -> int:
        """A slot on the server with the most room (waits while every window is full or paused)."""
        loop = asyncio.get_running_loop()
        self._waiting += 1
        try:
            while (server := pick_server(self.windows, self.in_flight, loop.time())) is None:
                await asyncio.sleep(0.01)
            self.in_flight[server] += 1
            return server
        finally:
            self._waiting -= 1

    async def _one(self, clients: list[httpx.AsyncClient], request: GenerationRequest,
                   server: int) -> list[Completion]:
        """The n completions of one request, in index order (its first call on `server`, whose slot it holds)."""
        mode = self.config.n_mode
        got: dict[int, Completion] = {}
        if mode != "separate" or request.n == 1:
            got.update(await self._call(clients, request, request.n, request.seed, 0, server))
            server = None
        if server is not None:
            self.in_flight[server] -= 1  # (separate calls each take their own slot)
        missing = [i for i in range(request.n) if i not in got]
        if missing and mode != "native":
            if mode == "auto" and got:
                self.usage["n_fallbacks"] += 1
            results = await asyncio.gather(*(self._call(clients, request, 1, request.seed + i, i)
                                             for i in missing))
            for r in results:
                got.update(r)
        return [got.get(i) or Completion(request.request_id, i, "", "error", 0, 0,
                                         error=f"server returned {len(got)} of {request.n} choices")
                for i in range(request.n)]

    async def _call(self, clients: list[httpx.AsyncClient], request: GenerationRequest, n: int, seed: int,
                    first_index: int, server: int | None = None) -> dict[int, Completion]:
        """One HTTP request for `n` choices, retried on transient failures (the one retry loop of this backend);
        choice j becomes index first_index + j. `server`: a slot already held, else one is acquired."""
        loop = asyncio.get_running_loop()
        body = self._body(request, n, seed)
        error, attempt, first_try = "no attempt made", 0, loop.time()
        while True:
            server = server if server is not None else await self._acquire()
            began, status, retry_after = loop.time(), None, None
            self.usage["http_requests"] += 1
            try:
                response = await clients[server].post("chat/completions", json=body)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    out = self._completions(request, response.json(), first_index, n)
                    self._answered(server, began, sum(c.completion_tokens for c in out.values()))
                    return out
                error = f"HTTP {status}: {response.text[:300]}"
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            finally:
                self.in_flight[server] -= 1
            if status in OVERLOAD_STATUS:
                self.windows[server].on_overload(loop.time(), retry_after)
            if status is not None and status not in RETRY_STATUS:
                break  # a bad request stays bad: record it instead of retrying
            # A 429 is back-pressure, which the window answers: not a failed attempt (for `max_throttled_s`).
            throttled = status == 429 and loop.time() - first_try < self.config.max_throttled_s
            attempt += 0 if throttled else 1
            if attempt > self.config.max_retries:
                break
            self.usage["retries"] += 1
            await asyncio.sleep(backoff_delay(attempt, self.config.backoff_s, self.config.backoff_max_s, retry_after))
            server = None
        return {first_index + j: Completion(request.request_id, first_index + j, "", "error", 0, 0, error=error)
                for j in range(n)}

    def _answered(self, server: int, began: float, tokens: int) -> None:
        now = asyncio.get_running_loop().time()
        self.windows[server].on_success(now, now - began, tokens)
        self.server_stats[server]["requests"] += 1
        self.server_stats[server]["busy_s"] += now - began

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


