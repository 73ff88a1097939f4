"""The vLLM backend's streaming side (window, routing, abort, crashes) against a fake engine speaking the same pipe
protocol (tests/fake_vllm_engine.py): fast, no vLLM needed. The real engine's streaming is tested in
tests/test_vllm_backend.py (slow)."""

import sys
import time
from pathlib import Path

import pytest

from cotforge.schemas.config_generation import VllmConfig
from cotforge.tasks.generate import vllm_offline
from cotforge.tasks.generate.base import GenerationRequest, SamplingParams
from cotforge.tasks.generate.vllm_offline import VllmGenerator, engine_env, window_sequences

FAKE_ENGINE = str(Path(__file__).with_name("fake_vllm_engine.py"))


@pytest.fixture
def fake_engine(monkeypatch):
    monkeypatch.setattr(vllm_offline, "ENGINE_SCRIPT", FAKE_ENGINE)
    made = []

    def make(**config):
        generator = VllmGenerator(VllmConfig(model="fake-model", python=sys.executable, start_timeout_s=30, **config))
        made.append(generator)
        return generator

    yield make
    for generator in made:
        generator.close()


def requests(count: int, n: int = 4, max_tokens: int = 32) -> list[GenerationRequest]:
    messages = ({"role": "user", "content": "q"},)
    return [GenerationRequest(f"q{i}", messages, n, (37 * i) % 101, SamplingParams(max_tokens=max_tokens))
            for i in range(count)]


class Counted:
    """An iterator of requests that records how many were pulled when each completion list came back."""

    def __init__(self, items):
        self.items, self.pulled = list(items), 0

    def __iter__(self):
        for item in self.items:
            self.pulled += 1
            yield item


def test_stream_yields_each_request_once_with_generate_texts_and_a_bounded_window(fake_engine):
    generator = fake_engine(max_num_seqs=16)
    batch = requests(60)
    source = Counted(batch)
    in_flight, pulled_at_first = [], None
    seen = []
    for completions in generator.stream(source):
        pulled_at_first = source.pulled if pulled_at_first is None else pulled_at_first
        seen.append(completions)
        in_flight.append(source.pulled - len(seen) + 1)  # requests pulled and not yet yielded, this one included
    assert sorted(c[0].request_id for c in seen) == sorted(r.request_id for r in batch)  # each once
    assert all([c.index for c in cs] == [0, 1, 2, 3] for cs in seen)
    assert pulled_at_first < len(batch)  # answers came back before the last request was pulled
    assert max(in_flight) * 4 <= window_sequences(generator.config) + 4  # the window: max_num_seqs + headroom
    assert [c[0].request_id for c in seen] != [r.request_id for r in batch]  # finishing order, not request order
    by_id = {cs[0].request_id: [c.text for c in cs] for cs in seen}
    in_order = generator.generate(batch)
    assert [c.request_id for c in in_order] == [r.request_id for r in batch for _ in range(4)]
    assert {r.request_id: [c.text for c in in_order if c.request_id == r.request_id] for r in batch} == by_id


def test_stream_closed_mid_way_aborts_and_a_fresh_stream_works(fake_engine):
    generator = fake_engine(max_num_seqs=8)
    source = Counted(requests(200, max_tokens=64))
    stream = generator.stream(source)
    first = next(stream)
    stream.close()
    assert first and source.pulled < 200  # nothing more was pulled once closed
    assert generator.engine_status() == [{"unfinished": 0, "streamed": 0}]  # the engine dropped the rest
    began = time.monotonic()
    again = list(generator.stream(requests(10)))
    assert sorted(c[0].request_id for c in again) == [f"q{i}" for i in range(10)]
    assert all(c.error is None for cs in again for c in cs)
    assert time.monotonic() - began < 5  # the aborted requests did not occupy the engine


def test_engine_crash_mid_stream_becomes_error_rows_not_a_hang(fake_engine, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_EXIT_AFTER", "5")
    generator = fake_engine(max_num_seqs=8)
    out = list(generator.stream(requests(40)))
    assert sorted(c[0].request_id for c in out) == sorted(f"q{i}" for i in range(40))  # nothing lost
    ok = [cs for cs in out if cs[0].error is None]
    broken = [c for cs in out for c in cs if c.error is not None]
    assert len(ok) == 5 and len(broken) == 35 * 4
    assert all(c.retryable and c.finish_reason == "error" and "engine exited" in c.error for c in broken)


def test_data_parallel_engines_each_see_their_gpus_and_share_by_speed(fake_engine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,2")  # the fake runs at 1 / (1 + GPU index): engine 1 is 3x slower
    generator = fake_engine(max_num_seqs=8, data_parallel_size=2)
    assert generator.window_sequences == 2 * window_sequences(generator.config)
    out = [c for cs in generator.stream(requests(120)) for c in cs]
    assert len(out) == 480 and all(c.error is None for c in out)
    served = {device: sum(f"device={device}" in c.text for c in out) for device in ("0", "2")}
    assert served["0"] + served["2"] == 480
    assert served["0"] > 1.5 * served["2"] > 0  # both busy, the faster one given more


def test_engine_env_splits_visible_gpus_by_tensor_parallel_size(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    config = VllmConfig(data_parallel_size=2, tensor_parallel_size=2)
    assert [engine_env(config, i)["CUDA_VISIBLE_DEVICES"] for i in range(2)] == ["4,5", "6,7"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert engine_env(VllmConfig(data_parallel_size=3), 2)["CUDA_VISIBLE_DEVICES"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in engine_env(VllmConfig(), 0)  # one engine: the environment as given
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(vllm_offline.EngineError, match="needs more GPUs"):
        engine_env(config, 0)
