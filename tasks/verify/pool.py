"""A pool of verifier worker processes with a hard wall-clock timeout per item.

math-verify's own timeouts use signals and only work in a main thread, sympy can hang on adversarial expressions, and
a regex can backtrack for ever: so every such check runs in a worker process that the parent kills when its item runs
past the deadline. A hung or crashed worker costs that one item a `None` verdict ("timeout" / "worker_crashed") and is
replaced by a fresh worker; the build goes on. This module stays light (no Prefect, no Polars): spawned workers
import it.

An item is `(function, args)` where `function` is "module:name" of a module-level function returning
`(verdict, reason)`; workers import and cache it. Exceptions inside a function are verdicts too ("error:<Type>").
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Callable

from cotforge.tasks.verify.math_check import check_math  # noqa: F401  (re-exported: "pool:check_math")

Result = tuple[bool | None, str]
Item = tuple[str, tuple]


def resolve(function: str) -> Callable[..., Result]:
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


def run_item(function: str, args: tuple) -> Result:
    """One item in the calling process, exceptions turned into verdicts (the pool's body, and the 1-process path).
    A function may add a third item, a dict of details (the code verifier's test counts); it is passed on."""
    try:
        verdict, reason, *details = resolve(function)(*args)
        return (verdict, reason, *details[:1])  # type: ignore[return-value]
    except Exception as error:  # a verifier bug or bad input costs one verdict, never the build
        return None, f"error:{type(error).__name__}"


def _worker_main(conn: Connection, preload: tuple[str, ...]) -> None:
    for module in preload:  # warm the heavy imports before the first deadline starts counting
        importlib.import_module(module)
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, function, args = message
        conn.send((index, run_item(function, args)))


class _Worker:
    def __init__(self, ctx, preload: tuple[str, ...]):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, preload), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.queue: list[int] = []  # indices sent to this worker, the one it is running first
        self.deadline = 0.0  # for the item at the head of the queue (or for saying ready)

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class VerifierPool:
    """`workers` processes; `run(items, timeouts)` returns one (verdict, reason) per item, in order.

    Workers are started once and reused across shards (spawned, so a Prefect/thread-laden parent is never forked).
    Each worker holds up to `depth` items, so it never idles while a busy parent gets round to sending the next; an
    item's clock starts when the parent sees the worker finish the one before it (or when sent to an idle worker).
    """

    def __init__(self, workers: int | None = None, preload: tuple[str, ...] = ("math_verify",),
                 start_timeout_s: float = 120.0, depth: int = 2):
        self.size = workers or os.cpu_count() or 1
        self.preload = preload
        self.start_timeout_s = start_timeout_s
        self.depth = max(1, depth)
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self.restarts = 0  # workers replaced after a timeout or a crash (reported by benchmarks and tests)
        self._start_failures = 0  # workers that died before saying ready, since the last one that did

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _start(self) -> _Worker:
        worker = _Worker(self._ctx, self.preload)
        worker.deadline = time.monotonic() + self.start_timeout_s
        return worker

    def run(self, items: list[Item], timeouts: list[float] | float = 5.0) -> list[Result]:
        """Run every item with its own hard wall-clock timeout; one (verdict, reason) per item, in order."""
        if not items:
            return []
        limits = timeouts if isinstance(timeouts, list) else [timeouts] * len(items)
        self._start_failures = 0  # each call tries afresh: a passing start problem does not poison the pool
        while len(self._workers) < self.size:
            self._workers.append(self._start())
        results: list[Result | None] = [None] * len(items)
        pending = list(range(len(items)))[::-1]  # popped from the end: items go out in order
        remaining = len(items)
        while remaining:
            if self._start_failures > 3 * self.size:  # workers cannot start at all: say so on every item left
                for index in pending:
                    results[index] = (None, "worker_start_failed")
                remaining -= len(pending)
                pending.clear()
                if not remaining:
                    break
            for worker in list(self._workers):
                while worker.ready and len(worker.queue) < self.depth and pending:
                    index = pending.pop()
                    function, args = items[index]
                    try:
                        worker.conn.send((index, function, args))
                    except (OSError, ValueError):  # died while idle: put the item back, replace the worker
                        pending.append(index)
                        self._fail(worker, results, pending, "worker_crashed")
                        break
                    if not worker.queue:
                        worker.deadline = time.monotonic() + limits[index]
                    worker.queue.append(index)
            busy = [w for w in self._workers if w.queue or not w.ready]
            ready = wait([w.conn for w in busy], timeout=max(0.0, min(w.deadline for w in busy) - time.monotonic()))
            for worker in busy:
                if worker.conn in ready:
                    try:
                        index, result = worker.conn.recv()
                    except (EOFError, OSError):
                        self._start_failures += not worker.ready
                        remaining -= self._fail(worker, results, pending, "worker_crashed")
                        continue
                    if index == "ready":
                        worker.ready = True
                        self._start_failures = 0
                        continue
                    results[worker.queue.pop(0)] = result
                    remaining -= 1
                    if worker.queue:
                        worker.deadline = time.monotonic() + limits[worker.queue[0]]
                elif time.monotonic() >= worker.deadline:
                    self._start_failures += not worker.ready
                    reason = "timeout" if worker.ready else "worker_start_timeout"
                    remaining -= self._fail(worker, results, pending, reason)
        return [r if r is not None else (None, "worker_crashed") for r in results]

    def _fail(self, worker: _Worker, results: list, pending: list[int], reason: str) -> int:
        """Kill and replace a worker: the item it was running gets a None verdict, the ones queued behind it go back
        to `pending`. Returns how many items this finished (0 or 1)."""
        queue = worker.queue
        self._replace(worker)
        if not queue:
            return 0
        results[queue[0]] = (None, reason)
        pending.extend(reversed(queue[1:]))
        return 1

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        if worker.queue:  # it died mid-item: a sandboxed program it started may still run
            from cotforge.tasks.verify.sandbox import clean_up_after

            clean_up_after(worker.process.pid)
        self.restarts += 1
        self._workers[self._workers.index(worker)] = self._start()

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (OSError, ValueError):
                pass
        for worker in self._workers:
            worker.process.join(2)
            worker.kill()
        self._workers = []


# Item checks: module-level functions the workers run, (prediction, gold, ...) -> (verdict, reason). The math check
# (`check_math`, imported above) lives in its own module; its address here keeps working.

def check_regex(prediction: str, pattern: str) -> Result:
    """The whole answer matches the gold pattern (case-insensitive). Runs in the pool: patterns can backtrack."""
    import re

    try:
        compiled = re.compile(pattern, re.I | re.S)
    except re.error:
        return None, "bad_pattern"
    matched = compiled.fullmatch(prediction.strip()) is not None
    return matched, "pattern_matched" if matched else "pattern_mismatch"
