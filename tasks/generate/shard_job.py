"""The sampling of one question shard as a state machine (pure: no store, no backend, no clock).

A job hands out the requests of its current round, takes their completions back in any order, and plans the next
round (adaptive budget, then guided re-sampling) once a round is whole. Rows come out in a fixed order, rounds in
order and, inside a round, requests in question order and samples by index, whatever order they finished in, so a
streamed shard equals a batch-wise one. Rows found in parts of an earlier run (`resumed`) stand for their requests:
only the others are asked.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.records import Sample
from cotforge.tasks.generate.accounting import SamplingStats
from cotforge.tasks.generate.adaptive import guidance_for, plan_extra_samples
from cotforge.tasks.generate.base import Completion, GenerationRequest
from cotforge.tasks.generate.parts import RequestName

GUIDED_ROUND = "guided"

# (requests, completions, round, guidance, sample-index offsets) -> Sample rows with lineage
ToSamples = Callable[[list[GenerationRequest], list[Completion], int | str, str | None, dict[str, int]], list[Sample]]


def request_name(request: GenerationRequest) -> RequestName:
    return request.request_id, request.seed


class ShardJob:
    """One shard's rounds. `plan(round, rows, tally) -> requests` builds a round's requests (question order);
    `judge(samples) -> flags` verifies for the adaptive budget and guidance (None: neither is on)."""

    def __init__(self, position: int, questions: pa.Table, config: GenerationConfig,
                 first_round: list[GenerationRequest], plan_round, to_samples: ToSamples,
                 judge: Callable[[list[Sample]], list[bool | None]] | None,
                 resumed: dict[RequestName, list[Sample]], stats: SamplingStats):
        self.position, self.config, self.stats = position, config, stats
        self.rows = {row["question_id"]: row for row in questions.to_pylist()}
        self.plan_round, self.to_samples, self.judge, self.resumed = plan_round, to_samples, judge, resumed
        self.rounds: list[tuple[int | str, list[GenerationRequest]]] = []
        self.samples: dict[RequestName, list[Sample]] = {}
        self.pending: dict[RequestName, GenerationRequest] = {}
        self.flags: list[bool | None] = []
        self.judged: list[Sample] = []
        self.done = False
        self.to_ask = self._open(0, first_round)

    @property
    def round(self) -> int | str:
        return self.rounds[-1][0]

    def _open(self, round_: int | str, requests: list[GenerationRequest]) -> list[GenerationRequest]:
        """Start a round: resumed rows stand for their requests; returns the requests to ask."""
        self.rounds.append((round_, requests))
        self.round_offsets = self.offsets()
        asked = []
        for r in requests:
            name = request_name(r)
            if name in self.resumed:
                self.samples[name] = self.resumed.pop(name)
            else:
                self.pending[name] = r
                asked.append(r)
        if not self.pending:
            return self._close_round()
        return asked

    def offsets(self) -> dict[str, int]:
        """Samples each question has so far: a later round numbers its samples after them."""
        counts: dict[str, int] = {}
        for rows in self.samples.values():
            for s in rows:
                counts[s.question_id] = counts.get(s.question_id, 0) + 1
        return counts

    def complete(self, request: GenerationRequest, completions: list[Completion]) -> list[Sample]:
        """Take one request's completions; returns its rows."""
        round_ = self.round
        guidance = self.config.guidance.mode if round_ == GUIDED_ROUND else None
        rows = self.to_samples([request], completions, round_, guidance, self.round_offsets)
        name = request_name(request)
        self.pending.pop(name)
        self.samples[name] = rows
        return rows

    def close_if_whole(self) -> list[GenerationRequest]:
        """When the current round is whole: plan the next one; returns its requests to ask (none: job done or
        waiting)."""
        return self._close_round() if not self.pending and not self.done else []

    def round_rows(self, index: int) -> list[Sample]:
        return [s for r in self.rounds[index][1] for s in self.samples[request_name(r)]]

    def _close_round(self) -> list[GenerationRequest]:
        round_ = self.rounds[-1][0]
        rows = self.round_rows(len(self.rounds) - 1)
        self.stats.per_round[str(round_)] = len(rows)
        if round_ == GUIDED_ROUND:
            self.stats.guided_samples += len(rows)
        else:
            self.stats.rounds = max(self.stats.rounds, int(round_) + 1)
        if self.judge is None or round_ == GUIDED_ROUND:
            self.done = True
            return []
        self.flags += self.judge(rows)
        self.judged += rows
        tally = _tally(self.judged, self.flags)
        adaptive, guided = self.config.adaptive, self.config.guidance
        if adaptive.enabled and int(round_) < adaptive.max_rounds:
            more = [self.plan_round(int(round_) + 1, row, extra)
                    for qid, row in self.rows.items()
                    if (extra := plan_extra_samples(*tally.get(qid, (0, 0, 0)), adaptive.quota, adaptive.cap,
                                                    adaptive.min_step))]
            if more:
                return self._open(int(round_) + 1, more)
        if guided.enabled:
            more = []
            for qid, row in self.rows.items():
                _, accepted, decided = tally.get(qid, (0, 0, 0))
                guide = guidance_for(row, self.config) if accepted == 0 and decided > 0 else None
                if guide is not None:
                    more.append(self.plan_round(GUIDED_ROUND, row, guide))
            if more:
                return self._open(GUIDED_ROUND, more)
        self.done = True
        return []

    def table_rows(self) -> list[Sample]:
        """Every row of the shard in its fixed order."""
        return [s for i in range(len(self.rounds)) for s in self.round_rows(i)]


def _tally(samples: list[Sample], flags: list[bool | None]) -> dict[str, tuple[int, int, int]]:
    """question -> (samples, accepted, decided)."""
    out: dict[str, list[int]] = {}
    for s, flag in zip(samples, flags):
        t = out.setdefault(s.question_id, [0, 0, 0])
        t[0] += 1
        t[1] += flag is True
        t[2] += flag is not None
    return {q: (a, b, c) for q, (a, b, c) in out.items()}
