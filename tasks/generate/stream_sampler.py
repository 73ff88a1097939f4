"""The streaming sampler: every shard's requests flow through one backend stream, so the engine never waits for a
batch, a part or a shard to end.

The backend pulls requests from a `RequestFeed` when it has room (its own window); the feed opens the next shard only
when the ones open have nothing left to hand out, and hands out later rounds of an open shard first (so shards finish
early and their CPU stages can start). Each finished request goes into its shard's part buffer at once; a part is
written when full or old, a shard when its last round is whole. On any exception, KeyboardInterrupt included (Ctrl-C,
or SIGTERM turned into one by the CLI), the stream is closed (what is in flight is cancelled) and every finished
completion still buffered is written as a part, so the next run asks only what is missing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cotforge.schemas.records import Sample
from cotforge.tasks.generate.accounting import SamplingStats
from cotforge.tasks.generate.base import Completion, GenerationRequest, Generator, stream_completions, whole_request
from cotforge.tasks.generate.parts import PartBuffer, PartStore, retryable_failures, usable_rows
from cotforge.tasks.generate.shard_job import ShardJob, request_name


@dataclass
class ShardWork:
    """One shard of the stage: `finished()` is its output when it needs no sampling, `open_job(resumed, stats)` its
    state machine, `write(rows, stats)` stores the whole shard and returns what the caller gets for it."""

    position: int
    finished: Callable[[], object | None]
    open_job: Callable[[dict, SamplingStats], ShardJob]
    write: Callable[[list[Sample], SamplingStats], object]
    parts: PartStore
    job: ShardJob | None = None
    stats: SamplingStats = field(default_factory=SamplingStats)
    buffer: PartBuffer | None = None


class RequestFeed:
    """The iterator side of the stream, shared by the backend's thread and the sampler's (one lock guards it)."""

    def __init__(self, open_next: Callable[[], list[GenerationRequest] | None]):
        self.lock = threading.RLock()
        self.open_next = open_next
        self.ready: deque[tuple[GenerationRequest, ShardWork]] = deque()
        self.in_flight: dict[str, tuple[GenerationRequest, ShardWork]] = {}
        self.source_done = False

    def session(self) -> Iterator[GenerationRequest]:
        """A fresh iterator for one `stream` call: it ends when nothing can be handed out right now."""
        while (request := self._next()) is not None:
            yield request

    def _next(self) -> GenerationRequest | None:
        with self.lock:
            while True:
                for i, (request, work) in enumerate(self.ready):
                    # Two requests in flight never share an id (backends key their bookkeeping on it).
                    if request.request_id not in self.in_flight:
                        del self.ready[i]
                        self.in_flight[request.request_id] = (request, work)
                        return request
                if self.source_done or self.ready:
                    return None
                self.source_done = not self.open_next()

    def push(self, requests: list[GenerationRequest], work: ShardWork, first: bool = False) -> None:
        with self.lock:
            items = [(r, work) for r in requests]
            self.ready.extendleft(reversed(items)) if first else self.ready.extend(items)

    def take(self, request_id: str) -> tuple[GenerationRequest, ShardWork]:
        with self.lock:
            if request_id not in self.in_flight:
                raise RuntimeError(f"the backend returned completions for {request_id!r}, which is not in flight")
            return self.in_flight.pop(request_id)


class StreamSampler:
    """Samples `shards` through one stream of `generator`; `on_shard(position, output)` as each shard is written."""

    def __init__(self, shards: list[ShardWork], generator: Generator, batch_requests: int, part_requests: int,
                 part_seconds: float, advance=lambda n=1: None, on_shard=None):
        self.shards, self.generator, self.batch_requests = shards, generator, batch_requests
        self.part_requests, self.part_seconds = part_requests, part_seconds
        self.advance, self.on_shard = advance, on_shard or (lambda position, output: None)
        self.outputs: dict[int, object] = {}
        self.open: list[ShardWork] = []
        self.finished_at_open: list[ShardWork] = []
        self.source = iter(shards)
        self.feed = RequestFeed(self._open_next)
        self.last_event = time.perf_counter()
        self.last_part_check = time.monotonic()

    def _open_next(self) -> bool:
        """Open the next shard that needs sampling and queue its requests (under the feed's lock); False at the end."""
        for work in self.source:
            output = work.finished()
            if output is not None:
                self.finished_at_open.append(work)
                self.outputs[work.position] = output
                continue
            parts = work.parts.read_all()
            work.stats.parts_reused = len(parts)
            resumed = usable_rows(parts)
            work.stats.retried_requests = len(retryable_failures(parts) - set(resumed))
            work.buffer = PartBuffer(self.part_requests, self.part_seconds)
            work.job = work.open_job(resumed, work.stats)
            self.advance(sum(1 for r in work.job.rounds[0][1] if request_name(r) in work.job.samples))
            self.open.append(work)
            if work.job.done:
                self.finished_at_open.append(work)
                continue
            self.feed.push(work.job.to_ask, work)
            return True
        return False

    def run(self) -> list[object]:
        """Sample every shard; returns each shard's output in shard order."""
        try:
            while True:
                stream = stream_completions(self.generator, self.feed.session(), self.batch_requests)
                try:
                    for completions in stream:
                        self._take(completions)
                finally:
                    stream.close()  # cancels what is in flight when we leave early
                self._write_finished_at_open()
                with self.feed.lock:
                    if self.feed.source_done and not self.feed.ready and not self.feed.in_flight:
                        break
            stuck = [w.position for w in self.open if not w.job.done]
            if stuck:
                raise RuntimeError(f"sampling ended with shards {stuck} unfinished")
        except BaseException:
            self._flush_parts()
            raise
        return [self.outputs[w.position] for w in self.shards]

    def _take(self, completions: list[Completion]) -> None:
        waited = time.perf_counter() - self.last_event
        request, work = self.feed.take(completions[0].request_id)
        completions = whole_request(request, completions)
        job, stats = work.job, work.stats
        first_round = job.round == 0
        rows = job.complete(request, completions)
        work.buffer.add(request_name(request), rows)
        stats.requests += 1
        stats.completions += len(completions)
        stats.errors += sum(c.error is not None for c in completions)
        stats.prompt_tokens += sum(c.prompt_tokens for c in completions)
        stats.completion_tokens += sum(c.completion_tokens for c in completions)
        if first_round:
            self.advance(1)
        more = job.close_if_whole()
        if more:
            self.feed.push(more, work, first=True)
        if job.done:
            self._finish(work)
        elif work.buffer.due():
            self._write_part(work)
        self._write_finished_at_open()
        if time.monotonic() - self.last_part_check > 1.0:  # parts closed by age, also in shards that went quiet
            self.last_part_check = time.monotonic()
            for other in list(self.open):
                if other.buffer.due():
                    self._write_part(other)
        now = time.perf_counter()
        # The stream's wall time is shared out to the shards whose completions arrived in it.
        stats.generate_s += waited
        stats.stage_s += now - self.last_event
        self.last_event = now

    def _write_finished_at_open(self) -> None:
        with self.feed.lock:
            ready, self.finished_at_open = self.finished_at_open, []
        for work in ready:
            if work.job is not None:
                self._finish(work)
            else:
                self.on_shard(work.position, self.outputs[work.position])

    def _write_part(self, work: ShardWork) -> None:
        taken = work.buffer.take()
        if taken is not None:
            work.parts.write(*taken)
            work.stats.parts_generated += 1

    def _finish(self, work: ShardWork) -> None:
        self._write_part(work)
        self.outputs[work.position] = work.write(work.job.table_rows(), work.stats)
        with self.feed.lock:
            self.open.remove(work)
        # Its questions and Sample objects are in the written shard now: kept, every finished shard would stay in
        # memory until the stage ends (1.3 GB at 320,000 samples; issue 26).
        work.job = work.buffer = None
        self.on_shard(work.position, self.outputs[work.position])

    def _flush_parts(self) -> None:
        """Write every finished completion still buffered (the stage is stopping early)."""
        for work in list(self.open):
            if work.buffer is not None:
                self._write_part(work)
