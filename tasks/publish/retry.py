"""Hub API calls that survive a flaky server: the client, the retry policy and which errors are worth a retry.

Kept apart from `hub.py` (push) so that `versions.py` and `pull.py` can list tags with retries without importing the
push side, and the push side can use the version helpers: imports point one way, no cycles.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

log = logging.getLogger("cotforge.hub")  # the name these warnings have always been logged under
T = TypeVar("T")

RETRY_STATUSES = (429, 500, 502, 503, 504, 507)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff (and jitter) on 429 / 5xx answers and network errors."""

    retries: int = 5
    base_wait: float = 1.0
    max_wait: float = 30.0


def retry_policy(publish) -> RetryPolicy:
    """The retry policy of a recipe's `publish` section."""
    return RetryPolicy(retries=publish.retries, base_wait=publish.backoff_seconds)


def http_status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _retryable(error: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    status = http_status(error)
    if status is not None:
        return status in RETRY_STATUSES
    # Network-level failures (connection reset, timeout) from httpx/httpx2, wrapped or not.
    names = {type(e).__name__ for e in _chain(error)}
    return bool(names & {"TransportError", "NetworkError", "ConnectError", "ReadError", "WriteError",
                         "RemoteProtocolError", "TimeoutException", "ReadTimeout", "ConnectTimeout",
                         "ConnectionError", "ConnectionResetError"})


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        for base in type(error).__mro__:
            yield base
        error = error.__cause__ or error.__context__


def with_retries(what: str, fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call `fn`, retrying on 429 / 5xx / network errors with exponential backoff; honour `Retry-After`."""
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified just below
            if attempt >= policy.retries or not _retryable(error):
                raise
            wait = min(policy.max_wait, policy.base_wait * 2 ** attempt) * (0.5 + random.random() / 2)
            retry_after = getattr(getattr(error, "response", None), "headers", {}).get("Retry-After")
            if retry_after and str(retry_after).isdigit():
                wait = min(policy.max_wait, float(retry_after))
            status = http_status(error)
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what,
                        f"HTTP {status}" if status else type(error).__name__, attempt + 1, policy.retries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def hub_api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(token=token)  # None: HF_TOKEN, then the huggingface_hub login
