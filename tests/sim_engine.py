"""A simulated continuous-batching inference engine behind an OpenAI-compatible HTTP server (tests and benchmarks).

`slots` sequences decode at once, each at `tokens_per_s` once it holds a slot; the others wait in a FIFO queue, as in
vLLM / SGLang / TGI. Each of a request's `n` choices is a sequence. Output lengths are log-normal (median
`median_tokens`, shape `sigma`), capped at the request's `max_tokens`, drawn from the request's seed and the choice
index, so the same request always costs the same. The engine records busy slot-seconds and its busy span, the figures
occupancy is computed from. Optionally, `max_waiting` answers 429 (with Retry-After) once that many sequences queue.
"""

from __future__ import annotations

import heapq
import json
import math
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fake_openai import LocalHTTPServer, chat_completion, send_json


def sequence_length(seed: int, index: int, max_tokens: int, median: float = 150.0, sigma: float = 0.8) -> int:
    """Tokens choice `index` of a request seeded `seed` generates: log-normal, capped at `max_tokens`."""
    rng = random.Random(f"{seed}:{index}")
    return max(1, min(max_tokens, int(rng.lognormvariate(math.log(median), sigma))))


class Engine:
    def __init__(self, slots: int, tokens_per_s: float = 200.0, median_tokens: float = 150.0, sigma: float = 0.8,
                 max_waiting: int | None = None, retry_after_s: float = 0.2):
        self.slots, self.tokens_per_s, self.median, self.sigma = slots, tokens_per_s, median_tokens, sigma
        self.max_waiting, self.retry_after_s = max_waiting, retry_after_s
        self.cond = threading.Condition()
        self.waiting: list = []  # FIFO of [tokens, done event holder]
        self.active: list = []  # heap of (finish time, seq id, holder)
        self.busy_slot_s = 0.0
        self.first_start: float | None = None
        self.last_finish: float | None = None
        self.requests = 0
        self.rejected = 0
        self._ids = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def length(self, seed: int, index: int, max_tokens: int) -> int:
        return sequence_length(seed, index, max_tokens, self.median, self.sigma)

    def submit(self, lengths: list[int]) -> list[float] | None:
        """Run one request's sequences; blocks until all finished; returns their decode seconds (None: rejected)."""
        holders = [{"tokens": n, "done": threading.Event()} for n in lengths]
        with self.cond:
            free = max(0, self.slots - len(self.active))
            if self.max_waiting is not None and len(self.waiting) + len(lengths) - free > self.max_waiting:
                self.rejected += 1
                return None
            self.requests += 1
            self.waiting += holders
            self.cond.notify()
        for h in holders:
            h["done"].wait()
        return [h["seconds"] for h in holders]

    def _run(self) -> None:
        with self.cond:
            while not self._stop:
                now = time.monotonic()
                while self.active and self.active[0][0] <= now:
                    _, _, holder = heapq.heappop(self.active)
                    self.last_finish = now
                    holder["done"].set()
                while self.waiting and len(self.active) < self.slots:
                    holder = self.waiting.pop(0)
                    seconds = holder["tokens"] / self.tokens_per_s
                    holder["seconds"] = seconds
                    self.busy_slot_s += seconds
                    self.first_start = self.first_start or now
                    self._ids += 1
                    heapq.heappush(self.active, (now + seconds, self._ids, holder))
                timeout = max(0.0, self.active[0][0] - now) if self.active else 0.5
                self.cond.wait(timeout)

    def occupancy(self) -> float:
        span = (self.last_finish or 0) - (self.first_start or 0)
        return self.busy_slot_s / (self.slots * span) if span > 0 else 0.0

    def reset(self) -> None:
        with self.cond:
            self.busy_slot_s, self.first_start, self.last_finish, self.requests, self.rejected = 0.0, None, None, 0, 0

    def stop(self) -> None:
        with self.cond:
            self._stop = True
            self.cond.notify()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # hundreds of connections open at once


class EngineServer(LocalHTTPServer):
    """`engine` behind /v1/chat/completions on a free port of 127.0.0.1 (`url` is what `openai.base_url` takes)."""

    def __init__(self, engine: Engine):
        self.engine = engine

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client reuses its connections

            def log_message(self, *args):
                pass

            def do_GET(self):  # /stats: the occupancy figures (for a bench that runs the engine in its own process)
                send_json(self, 200, {"busy_slot_s": engine.busy_slot_s, "first_start": engine.first_start,
                                      "last_finish": engine.last_finish, "requests": engine.requests,
                                      "occupancy": engine.occupancy()})

            def do_POST(self):
                if self.path.endswith("/reset"):
                    engine.reset()
                    return send_json(self, 200, {})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                n, seed, cap = body.get("n", 1), body.get("seed", 0), body.get("max_tokens", 1024)
                lengths = [engine.length(seed, i, cap) for i in range(n)]
                if engine.submit(lengths) is None:
                    send_json(self, 429, {"error": "queue full"}, {"Retry-After": str(engine.retry_after_s)})
                    return
                texts = [f"Step 1: work it out.\nThe answer is {seed % 7 + i}." for i in range(n)]
                payload = chat_completion(texts)
                payload["usage"]["completion_tokens"] = sum(lengths)
                for choice, tokens in zip(payload["choices"], lengths):
                    choice["finish_reason"] = "length" if tokens >= cap else "stop"
                send_json(self, 200, payload)

        self.serve(Handler, _Server)

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.engine.stop()


class EngineProcess:
    """An engine served by its own process (`python -m tests.sim_engine`), so the client under test and the engine
    do not share an interpreter; `stats()` reads its figures, `reset()` zeroes them."""

    def __init__(self, slots: int, tokens_per_s: float = 200.0, median_tokens: float = 150.0, sigma: float = 0.8):
        import subprocess
        import sys

        self.slots, self.tokens_per_s = slots, tokens_per_s
        from pathlib import Path

        argv = [str(slots), str(tokens_per_s), str(median_tokens), str(sigma)]
        self.process = subprocess.Popen([sys.executable, "-m", "tests.sim_engine", *argv],
                                        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
        self.url = self.process.stdout.readline().strip()

    def stats(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/stats", timeout=30).json()

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.url}/reset", timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=30)


if __name__ == "__main__":
    import sys

    slots, tokens_per_s, median_tokens, sigma = int(sys.argv[1]), *map(float, sys.argv[2:5])
    with EngineServer(Engine(slots, tokens_per_s, median_tokens, sigma)) as server:
        print(server.url, flush=True)
        threading.Event().wait()
