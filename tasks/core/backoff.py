"""How long to wait before asking a server again: one rule for the generation backends and the Hub."""

from __future__ import annotations

import random


def parse_retry_after(value: str | None) -> float | None:
    """A `Retry-After` header in seconds (never negative); None when absent or not a number (an HTTP date is rare
    enough from inference servers and the Hub that backoff is the better answer)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def backoff_delay(attempt: int, base_s: float, max_s: float, retry_after: float | None = None) -> float:
    """The server's `Retry-After` when it gave one, else exponential backoff from `base_s` with jitter (never below
    half the backoff, so retries of many clients spread out); never above `max_s`. `attempt` counts from 1."""
    if retry_after is not None:
        return min(retry_after, max_s)
    return min(max_s, base_s * 2 ** max(0, attempt - 1)) * (0.5 + random.random() / 2)
