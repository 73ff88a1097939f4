"""The Hub client's retry classifier: each transient network failure is retried, mistakes are not.

The failures are real instances where that is cheap to arrange (a write that times out because the server never
reads, a request waiting for the only pooled connection, a refused connection through `HfApi`, a pipe whose reader
hung up), so the classifier is tested on what the libraries actually raise, cause chains included.
"""

from __future__ import annotations

import socket
import threading

import httpx
import httpx2
import pytest

from cotforge.tasks.publish.retry import RetryPolicy, _retryable, with_retries

FAST = RetryPolicy(retries=3, base_wait=0.001, max_wait=0.002)


def _silent_server() -> tuple[socket.socket, int]:
    """A listening socket that accepts connections (kernel backlog) and never reads or answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    return server, server.getsockname()[1]


def real_write_timeout() -> BaseException:
    server, port = _silent_server()
    try:
        with httpx2.Client(timeout=httpx2.Timeout(5.0, write=0.2)) as client:
            client.post(f"http://127.0.0.1:{port}/upload", content=b"x" * (64 << 20))
    except BaseException as error:  # noqa: BLE001 - the error is the point
        return error
    finally:
        server.close()
    raise AssertionError("a 64 MiB upload to a server that never reads did not time out")


def real_pool_timeout() -> BaseException:
    server, port = _silent_server()
    limits = httpx2.Limits(max_connections=1)
    try:
        with httpx2.Client(limits=limits, timeout=httpx2.Timeout(3.0, pool=0.1)) as client:
            holder = threading.Thread(target=lambda: _ignore(client.get, f"http://127.0.0.1:{port}/slow"))
            holder.start()  # holds the only connection while the server never answers
            try:
                for _ in range(50):
                    try:
                        client.get(f"http://127.0.0.1:{port}/second")
                    except httpx2.PoolTimeout as error:
                        return error
                    except httpx2.ReadTimeout:  # the holder had not taken the connection yet
                        continue
            finally:
                holder.join()
    finally:
        server.close()
    raise AssertionError("no PoolTimeout with one pooled connection held")


def _ignore(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # noqa: BLE001, S110 - the holder's own timeout is expected and says nothing
        pass


def real_connection_refused() -> BaseException:
    from huggingface_hub import HfApi

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        HfApi(endpoint=f"http://127.0.0.1:{port}", token="hf_unused").create_repo("org/x", repo_type="dataset")
    except BaseException as error:  # noqa: BLE001
        return error
    raise AssertionError("a request to a closed port succeeded")


def real_broken_pipe() -> BaseException:
    reader, writer = socket.socketpair()
    reader.close()
    try:
        for _ in range(100):
            writer.sendall(b"x" * 65536)
    except BaseException as error:  # noqa: BLE001
        return error
    finally:
        writer.close()
    raise AssertionError("writing to a closed pipe succeeded")


def _chain_types(error: BaseException) -> set[type]:
    out = set()
    while error is not None:
        out.add(type(error))
        error = error.__cause__ or error.__context__
    return out


def _fails_then_succeeds(error: BaseException, failures: int = 2):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise error
        return "done"
    return fn, calls


@pytest.mark.parametrize("make, expected", [
    (real_write_timeout, httpx2.WriteTimeout),
    (real_pool_timeout, httpx2.PoolTimeout),
    (real_connection_refused, ConnectionRefusedError),
    (real_broken_pipe, BrokenPipeError),
], ids=["WriteTimeout", "PoolTimeout", "ConnectionRefusedError", "BrokenPipeError"])
def test_retry_real_network_failures(make, expected, caplog):
    error = make()
    assert expected in _chain_types(error), f"the scenario raised {type(error).__name__}, not {expected.__name__}"
    fn, calls = _fails_then_succeeds(error)
    assert with_retries("upload", fn, FAST) == "done"
    assert len(calls) == 3
    assert "retry 2/3" in caplog.text


@pytest.mark.parametrize("error", [
    httpx.WriteTimeout("write timed out"), httpx.PoolTimeout("no connection free"),
    httpx2.WriteTimeout("write timed out"), httpx2.PoolTimeout("no connection free"),
    ConnectionRefusedError(111, "Connection refused"), BrokenPipeError(32, "Broken pipe"),
    ConnectionResetError(104, "reset"), TimeoutError("socket timeout"),
], ids=lambda e: f"{type(e).__module__}.{type(e).__name__}")
def test_retry_each_class_bare_and_wrapped(error):
    assert _retryable(error)
    try:  # the same failure wrapped by a library that raises its own error "from" it
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("upload failed") from inner
    except RuntimeError as wrapped:
        assert _retryable(wrapped)
        fn, calls = _fails_then_succeeds(wrapped)
        assert with_retries("commit", fn, FAST) == "done" and len(calls) == 3


def _http_error(status: int):
    from huggingface_hub.errors import HfHubHTTPError

    request = httpx2.Request("POST", "http://hub/api/x")
    return HfHubHTTPError(f"{status}", response=httpx2.Response(status, request=request))


@pytest.mark.parametrize("error", [
    ValueError("bad argument"), FileNotFoundError("no such file"), PermissionError("denied"),
    httpx2.UnsupportedProtocol("ftp://"), httpx2.LocalProtocolError("bad header"),
], ids=lambda e: type(e).__name__)
def test_retry_never_for_mistakes(error):
    assert not _retryable(error)
    fn, calls = _fails_then_succeeds(error)
    with pytest.raises(type(error)):
        with_retries("commit", fn, FAST)
    assert len(calls) == 1


def test_retry_follows_the_status_when_the_server_answered():
    assert _retryable(_http_error(503)) and _retryable(_http_error(429))
    assert not _retryable(_http_error(404)) and not _retryable(_http_error(401))
    try:  # a 404 raised while handling a reset connection is still a 404: the answer decides
        try:
            raise ConnectionResetError(104, "reset")
        except ConnectionResetError:
            raise _http_error(404)
    except Exception as error:  # noqa: BLE001
        assert not _retryable(error)


def test_retry_not_when_offline_mode_refuses():
    from huggingface_hub.errors import OfflineModeIsEnabled

    assert not _retryable(OfflineModeIsEnabled("offline"))


def test_retries_are_spent_then_the_last_error_is_raised_and_retry_after_is_honoured(monkeypatch):
    import tenacity

    from huggingface_hub.errors import HfHubHTTPError

    slept = []
    monkeypatch.setattr(tenacity.nap.time, "sleep", slept.append)
    request = httpx2.Request("POST", "http://hub/api/x")
    answers = [httpx2.Response(503, request=request, headers={"Retry-After": "7"}),
               httpx2.Response(429, request=request), httpx2.Response(502, request=request)]
    calls = []

    def fn():
        calls.append(1)
        raise HfHubHTTPError("busy", response=answers[len(calls) - 1])

    policy = RetryPolicy(retries=2, base_wait=1.0, max_wait=30.0)
    with pytest.raises(HfHubHTTPError) as raised:
        with_retries("commit", fn, policy)
    assert len(calls) == 3 and raised.value.response.status_code == 502  # the last answer, as it was
    assert slept[0] == 7.0 and 1.0 <= slept[1] <= 2.0  # Retry-After, then 2^1 * base with jitter (half to full)
