"""Hub API calls that survive a flaky server: the client, the retry policy and which errors are worth a retry.

Kept apart from `hub.py` (push) so that `versions.py` and `pull.py` can list tags with retries without importing the
push side, and the push side can use the version helpers: imports point one way, no cycles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from cotforge.tasks.core.backoff import backoff_delay, parse_retry_after

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


# Transient network failures, by the name of a class in the exception's MRO (so httpx, httpx2, requests and urllib3
# are recognised without importing them): timeouts of every phase (connect, read, write, waiting for a pooled
# connection), dropped or refused connections, a server that hung up mid-answer. Not TransportError as a whole: it
# also covers mistakes a retry cannot fix (an unsupported URL scheme, a malformed request: NEVER_RETRY).
RETRY_ERROR_CLASSES = frozenset({
    "TimeoutException", "NetworkError", "RemoteProtocolError", "ProxyError",  # httpx / httpx2
    "ConnectionError", "Timeout", "ChunkedEncodingError",  # requests (its ConnectionError is not the builtin one)
    "ProtocolError", "NewConnectionError",  # urllib3 (and httpx's ProtocolError, less NEVER_RETRY)
})
NEVER_RETRY = frozenset({"LocalProtocolError", "UnsupportedProtocol", "InvalidURL"})
# The operating system's view of the same (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError,
# BrokenPipeError are ConnectionErrors; socket.timeout is TimeoutError).
RETRY_BUILTINS = (ConnectionError, TimeoutError)


def _retryable(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a 429 / 5xx answer or a transient network failure."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    for link in _chain(error):
        if isinstance(link, OfflineModeIsEnabled):
            return False
        status = http_status(link)
        if status is not None:
            return status in RETRY_STATUSES  # the server answered: its status decides, whatever caused it
        names = {c.__name__ for c in type(link).__mro__}
        if names & NEVER_RETRY:
            return False
        if isinstance(link, RETRY_BUILTINS) or names & RETRY_ERROR_CLASSES:
            return True
    return False


def _chain(error: BaseException):
    """The exception instances from `error` down its `__cause__` / `__context__` links (each once)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _wait(policy: RetryPolicy):
    """Exponential backoff with jitter, capped; a `Retry-After` (seconds) from the server wins, capped too."""
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        headers = getattr(getattr(error, "response", None), "headers", None) or {}
        return backoff_delay(state.attempt_number, policy.base_wait, policy.max_wait,
                             parse_retry_after(headers.get("Retry-After")))
    return wait


def with_retries(what: str, fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call `fn`, retrying on 429 / 5xx / network errors with exponential backoff (tenacity); honour `Retry-After`.
    The last error is raised as it was once the retries are spent, or at once when it is not worth a retry."""
    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception()
        status = http_status(error)
        log.warning("%s failed (%s); retry %d/%d in %.1fs", what,
                    f"HTTP {status}" if status else type(error).__name__, state.attempt_number, policy.retries,
                    state.next_action.sleep if state.next_action else 0.0)

    retrying = Retrying(stop=stop_after_attempt(policy.retries + 1), wait=_wait(policy),
                        retry=retry_if_exception(_retryable), before_sleep=log_retry, reraise=True)
    return retrying(fn)


def hub_api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(token=token)  # None: HF_TOKEN, then the huggingface_hub login
