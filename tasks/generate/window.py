"""The in-flight window of one server, sized by AIMD (pure: the caller passes the clock).

A server that answers 429/503, or whose latency per generated token climbs well above the best seen (requests queue
inside it), gets a window halved (at most once per recent latency, so one burst of rejections counts once); every
success grows it by 1/window, so it climbs back by about one request per window's worth of successes, up to its
capacity (`ceiling`, the recipe's `max_concurrency`). `Retry-After` pauses the server until then.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AimdWindow:
    ceiling: int
    floor: int = 1
    decrease: float = 0.5  # multiplicative decrease on overload
    latency_factor: float = 8.0  # latency per token above this many times the best seen is overload; 0: off
    warmup: int = 16  # successes before the latency rule has a baseline
    smoothing: float = 0.1  # EWMA weight of the newest latency
    limit: float = field(init=False)
    paused_until: float = 0.0
    last_decrease: float = float("-inf")
    successes: int = 0
    _latency: float | None = None  # EWMA seconds per request
    _tokens: float | None = None  # EWMA tokens per request
    baseline: float | None = None  # best EWMA seconds per token seen

    def __post_init__(self):
        self.limit = float(self.ceiling)

    @property
    def size(self) -> int:
        return max(self.floor, int(self.limit))

    def room(self, in_flight: int, now: float) -> int:
        """How many more requests may start now."""
        return 0 if now < self.paused_until else max(0, self.size - in_flight)

    def on_success(self, now: float, latency_s: float, tokens: int) -> None:
        self.successes += 1
        a = self.smoothing
        self._latency = latency_s if self._latency is None else (1 - a) * self._latency + a * latency_s
        self._tokens = tokens if self._tokens is None else (1 - a) * self._tokens + a * tokens
        per_token = self._latency / max(self._tokens, 1.0)
        if self.successes >= self.warmup:
            self.baseline = per_token if self.baseline is None else min(self.baseline, per_token)
            if self.latency_factor and per_token > self.latency_factor * self.baseline:
                self._shrink(now)
                return
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def on_overload(self, now: float, retry_after_s: float | None = None) -> None:
        """A 429/503 (or a timeout under load): shrink, and pause until Retry-After."""
        self._shrink(now)
        if retry_after_s is not None:
            self.paused_until = max(self.paused_until, now + retry_after_s)

    def _shrink(self, now: float) -> None:
        # One decrease per recent latency: the other rejections of the same burst were sent under the old window.
        if now - self.last_decrease < max(0.2, self._latency or 0.0):
            return
        self.last_decrease = now
        self.limit = max(float(self.floor), self.limit * self.decrease)


def pick_server(windows: list[AimdWindow], in_flight: list[int], now: float) -> int | None:
    """The server a new request goes to: among those with room, the least loaded relative to its window (so each
    server is kept busy in proportion to its capacity); None when none has room."""
    best, best_load = None, None
    for i, (w, busy) in enumerate(zip(windows, in_flight)):
        if w.room(busy, now) > 0:
            load = busy / w.size
            if best_load is None or load < best_load:
                best, best_load = i, load
    return best
