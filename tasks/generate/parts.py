"""Resumable parts of one samples shard, written as completions finish (pure bookkeeping + a thin store wrapper).

A part holds the rows of whole requests (all n completions of each), in the order they finished; it is closed when it
holds `part_requests` requests or is `part_seconds` old, whichever comes first. Its name is the hash of the requests it
holds, so writing it again is harmless. A request is named by (question id, seed): one request per question and
round, each round with its own seed. Resume reads every part of the shard and keeps, per request, rows that carry no
retryable error; the rest is asked again with the same seeds.
"""

from __future__ import annotations

import bisect
import threading
import time

import pyarrow as pa

from cotforge.schemas.arrow import to_table
from cotforge.schemas.records import Sample, stable_id
from cotforge.tasks.core.shards import ShardStore

PART_STAGE = "samples-parts"

RequestName = tuple[str, int]  # (question id, seed)


def sample_request_name(sample: Sample) -> RequestName:
    return sample.question_id, sample.seed


def usable_rows(parts: list[list[Sample]]) -> dict[RequestName, list[Sample]]:
    """Per request, the rows a resumed run keeps: the first set (in the given part order) without a retryable error,
    else a set whose errors are all permanent. Requests whose only rows failed retryably are left out (asked again)."""
    good: dict[RequestName, list[Sample]] = {}
    for part in parts:
        by_name: dict[RequestName, list[Sample]] = {}
        for s in part:
            by_name.setdefault(sample_request_name(s), []).append(s)
        for name, rows in by_name.items():
            if name in good or any(s.error is not None and not s.error_permanent for s in rows):
                continue
            good[name] = sorted(rows, key=lambda s: s.sample_index)
    return good


def retryable_failures(parts: list[list[Sample]]) -> set[RequestName]:
    """Requests with rows that failed and may succeed when asked again."""
    return {sample_request_name(s) for part in parts for s in part if s.error is not None and not s.error_permanent}


class PartBuffer:
    """The finished requests of one shard not yet written: `due()` says when they make a part."""

    def __init__(self, part_requests: int, part_seconds: float, clock=time.monotonic):
        self.part_requests, self.part_seconds, self.clock = part_requests, part_seconds, clock
        self.names: list[RequestName] = []
        self.rows: list[Sample] = []
        self.opened: float | None = None

    def add(self, name: RequestName, rows: list[Sample]) -> None:
        if self.opened is None:
            self.opened = self.clock()
        self.names.append(name)
        self.rows += rows

    def due(self) -> bool:
        return bool(self.names) and (len(self.names) >= self.part_requests
                                     or self.clock() - self.opened >= self.part_seconds)

    def take(self) -> tuple[str, list[Sample]] | None:
        """(part name, rows) of everything buffered, emptying the buffer; None when empty."""
        if not self.names:
            return None
        name = stable_id(*(f"{q}:{seed}" for q, seed in self.names))
        rows, self.names, self.rows, self.opened = self.rows, [], [], None
        return name, rows


class PartIndex:
    """The keys of every finished part of a stage's shards, listed once when first asked and kept up to date with the
    parts this run writes: a directory listing per shard would read every shard's parts each time one opens (the
    stage then grows with the square of its shards)."""

    def __init__(self, store: ShardStore):
        self.store = store
        self.keys: list[str] | None = None  # sorted
        self.lock = threading.Lock()  # shards open in the backend's thread, parts are written in the sampler's

    def with_prefix(self, prefix: str) -> list[str]:
        """The finished part keys that start with `prefix` (sorted), as `ShardStore.done_keys` lists them."""
        with self.lock:
            if self.keys is None:
                self.keys = self.store.done_keys(PART_STAGE, "")
            out, at = [], bisect.bisect_left(self.keys, prefix)
            while at < len(self.keys) and self.keys[at].startswith(prefix):
                out.append(self.keys[at])
                at += 1
            return out

    def add(self, key: str) -> None:
        """A part this run has written (its marker is on disk); before the first listing, that listing finds it."""
        with self.lock:
            if self.keys is not None:
                at = bisect.bisect_left(self.keys, key)
                if at == len(self.keys) or self.keys[at] != key:
                    self.keys.insert(at, key)


class PartStore:
    """The parts of one shard in a ShardStore, under `_work/samples-parts/<shard key>-<part name>`. The shards of one
    stage share one `PartIndex`, so the parts folder is listed once per stage."""

    def __init__(self, store: ShardStore | None, shard_key: str, metadata: dict[str, str] | None,
                 index: PartIndex | None = None):
        self.store, self.shard_key, self.metadata = store, shard_key, metadata
        self.index = index if index is not None or store is None else PartIndex(store)

    def read_all(self) -> list[list[Sample]]:
        """Every finished part of the shard (sorted by name, so a resume decides the same way each time)."""
        if self.store is None:
            return []
        keys = self.index.with_prefix(f"{self.shard_key}-")
        return [[Sample(**row) for row in self.store.read(self.store.done(PART_STAGE, k)).to_pylist()] for k in keys]

    def write(self, part_name: str, rows: list[Sample]) -> None:
        if self.store is not None:
            key = f"{self.shard_key}-{part_name}"
            self.store.write(PART_STAGE, key, _table(rows), self.metadata)
            self.index.add(key)


def _table(rows: list[Sample]) -> pa.Table:
    return to_table(rows, Sample)
