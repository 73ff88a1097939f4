"""OpenAI-compatible backend: against a real llama.cpp server (SmolLM2) started here, and a fault-injecting server for
the retry path (429 / 5xx / dropped connections), n fallback, bounded concurrency and the API key."""

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from cotforge.schemas.config_generation import GenerationConfig, OpenAIConfig
from cotforge.tasks.generate import make_generator
from cotforge.tasks.generate.base import GenerationRequest, SamplingParams
from cotforge.tasks.generate.openai_server import OpenAIGenerator
from tests.conftest import require_module
from tests.fake_openai import LocalHTTPServer, send_json


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(rid="q", n=2, seed=7, max_tokens=12, prefix="", logprobs=None):
    messages = ({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 3?"})
    return GenerationRequest(rid, messages, n, seed, SamplingParams(temperature=0.9, max_tokens=max_tokens,
                                                                    logprobs=logprobs), assistant_prefix=prefix)


# ------------------------------------------------------------------------------------------- real llama.cpp server


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    require_module("sse_starlette", "llama-cpp-python[server], in the test extra")
    from cotforge.tasks.generate.llamacpp import default_model_path

    port = _free_port()
    log = open(tmp_path_factory.mktemp("llama_server") / "server.log", "w+")  # a file: a full pipe would block it
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", default_model_path(), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "1024", "--n_threads", "2", "--model_alias", "smollm2"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"llama.cpp server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        process.kill()
        raise RuntimeError("llama.cpp server did not come up in 120 s")
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


@pytest.mark.slow
def test_openai_backend_against_llama_server_is_seeded_and_counts_tokens(llama_server):
    generator = OpenAIGenerator(OpenAIConfig(base_url=llama_server, model="smollm2", max_concurrency=2))
    first = generator.generate([_request(n=2), _request("r", n=1, seed=3)])
    assert [(c.request_id, c.index) for c in first] == [("q", 0), ("q", 1), ("r", 0)]
    assert all(c.error is None and c.text for c in first)
    assert all(c.prompt_tokens > 10 and 0 < c.completion_tokens <= 12 for c in first)
    # llama.cpp's server ignores n: the backend noticed and asked for the second sample separately.
    assert generator.usage["n_fallbacks"] == 1 and generator.usage["http_requests"] == 3
    assert generator.usage["completion_tokens"] == sum(c.completion_tokens for c in first)
    again = generator.generate([_request(n=2), _request("r", n=1, seed=3)])
    assert [c.text for c in again] == [c.text for c in first]  # the seed reached the server


@pytest.mark.slow
def test_openai_backend_logprobs_and_recipe_switch(llama_server):
    recipe_generation = GenerationConfig(backend="openai", openai={"base_url": llama_server, "model": "smollm2",
                                                                   "n_mode": "separate"})
    generator = make_generator(recipe_generation)
    assert isinstance(generator, OpenAIGenerator)
    [c] = generator.generate([_request(n=1, max_tokens=5, logprobs=1)])
    assert c.error is None and c.logprobs and all(lp <= 0 for lp in c.logprobs)


@pytest.mark.slow
def test_sampling_stage_runs_on_the_openai_backend(llama_server):
    import polars as pl

    from cotforge.tasks.generate.sample import sample_questions
    from tests.test_sample_stage import arithmetic_questions

    config = GenerationConfig(backend="openai", samples_per_question=2, sampling={"max_tokens": 16},
                              openai={"base_url": llama_server, "model": "smollm2"})
    table = pl.from_arrow(sample_questions(arithmetic_questions(2), make_generator(config), config, 1, "rh", "b"))
    assert table.height == 4 and table["error"].null_count() == 4
    assert set(table["backend"]) == {"openai"} and (table["completion_tokens"] > 0).all()


# ----------------------------------------------------------------------------------- fault-injecting local server


class FaultServer(LocalHTTPServer):
    """A tiny OpenAI-shaped server: the first `faults` POSTs fail (429, 503, or a dropped connection), then it answers
    with n choices (or 1, like llama.cpp, when `honour_n` is False). Records every request body and header."""

    def __init__(self, faults=(), honour_n=True, delay=0.0, status_always=None):
        self.faults = list(faults)
        self.honour_n = honour_n
        self.delay = delay
        self.status_always = status_always
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    fault = server.faults.pop(0) if server.faults else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    if server.status_always:
                        return self._send(server.status_always, {"error": "bad request"})
                    if fault == "drop":
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if fault is not None:
                        return self._send(fault, {"error": "try later"}, {"Retry-After": "0.01"})
                    n = body["n"] if server.honour_n else 1
                    choices = [{"index": i, "message": {"role": "assistant", "content": f"s{body['seed']}-{i} ok"},
                                "finish_reason": "stop"} for i in range(n)]
                    self._send(200, {"choices": choices, "usage": {"prompt_tokens": 9, "completion_tokens": 3 * n}})
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status, payload, headers=None):
                send_json(self, status, payload, headers)

        self.serve(Handler)


def _config(url, **kw):
    return OpenAIConfig(base_url=url, model="m", backoff_s=0.01, backoff_max_s=0.05, timeout_s=5, **kw)


def test_openai_retries_429_5xx_and_dropped_connections():
    with FaultServer(faults=[429, 503, "drop", 500]) as server:
        generator = OpenAIGenerator(_config(server.url, max_retries=5))
        [a, b] = generator.generate([_request(n=2, seed=11)])
    assert (a.text, b.text) == ("s11-0 ok", "s11-1 ok") and a.error is None
    assert generator.usage["retries"] == 4 and generator.usage["http_requests"] == 5
    assert all(body["seed"] == 11 and body["n"] == 2 for body in server.bodies)


def test_openai_gives_up_after_max_retries_and_records_the_error():
    with FaultServer(faults=[503] * 10) as server:
        generator = OpenAIGenerator(_config(server.url, max_retries=2))
        completions = generator.generate([_request(n=2)])
    assert len(server.bodies) == 3
    assert all(c.finish_reason == "error" and c.error.startswith("HTTP 503") for c in completions)


def test_openai_does_not_retry_a_bad_request():
    with FaultServer(status_always=400) as server:
        [c] = OpenAIGenerator(_config(server.url)).generate([_request(n=1)])
    assert len(server.bodies) == 1 and c.error.startswith("HTTP 400")


def test_openai_falls_back_to_separate_seeded_requests_when_n_is_ignored():
    with FaultServer(honour_n=False) as server:
        generator = OpenAIGenerator(_config(server.url))
        completions = generator.generate([_request(n=3, seed=100)])
    assert [c.text for c in completions] == ["s100-0 ok", "s101-0 ok", "s102-0 ok"]
    assert [c.index for c in completions] == [0, 1, 2]
    assert (server.bodies[0]["n"], server.bodies[0]["seed"]) == (3, 100)
    assert sorted((b["n"], b["seed"]) for b in server.bodies[1:]) == [(1, 101), (1, 102)]  # sent concurrently


def test_openai_bounded_concurrency_and_prefix_passthrough():
    with FaultServer(delay=0.1) as server:
        generator = OpenAIGenerator(_config(server.url, max_concurrency=3))
        completions = generator.generate([_request(f"q{i}", n=1, prefix="Step 1:" if i == 0 else "")
                                          for i in range(9)])
    assert len(completions) == 9 and all(c.error is None for c in completions)
    assert 1 < server.max_in_flight <= 3
    prefixed = [b for b in server.bodies if b.get("continue_final_message")]
    assert len(prefixed) == 1 and prefixed[0]["messages"][-1] == {"role": "assistant", "content": "Step 1:"}


def test_openai_api_key_from_named_env_var_goes_only_to_the_header(monkeypatch, tmp_path):
    secret = "sk-test-DO-NOT-LEAK-123"
    monkeypatch.setenv("COTFORGE_TEST_KEY", secret)
    config = GenerationConfig(backend="openai", samples_per_question=1, openai={"api_key_env": "COTFORGE_TEST_KEY"})
    assert secret not in config.model_dump_json()
    with FaultServer(faults=[503]) as server:
        generator = OpenAIGenerator(_config(server.url, api_key_env="COTFORGE_TEST_KEY", max_retries=1))
        import polars as pl

        from cotforge.tasks.generate.sample import sample_questions
        from tests.test_sample_stage import arithmetic_questions

        table = sample_questions(arithmetic_questions(2), generator, config, 1, "rh", "b")
    assert all(h.get("Authorization") == f"Bearer {secret}" for h in server.headers)
    assert secret not in pl.from_arrow(table).write_csv()
    monkeypatch.delenv("COTFORGE_TEST_KEY")
    with pytest.raises(ValueError, match="COTFORGE_TEST_KEY"):
        OpenAIGenerator(_config(server.url, api_key_env="COTFORGE_TEST_KEY"))
