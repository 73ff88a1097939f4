"""The streaming sampler: the same rows as a batch-wise run whatever order completions arrive in, across shards and
rounds; killed mid-stream and resumed with only the missing requests; parts closed by count and age; the pure
kernels (AIMD window, routing, part bookkeeping, the request feed)."""

import json
import random
import textwrap
import threading
import time

import polars as pl
import pytest

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.records import Sample
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.generate.base import Completion, StreamingGenerator, stream_completions
from cotforge.tasks.generate.lazy import SharedGenerators, engine_key
from cotforge.tasks.generate.parts import PART_STAGE, PartBuffer, PartIndex, PartStore, usable_rows
from cotforge.tasks.generate.sample import sample_shard, sample_shards
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.generate.window import AimdWindow, pick_server
from tests.conftest import ROOT, kill_once_parts_written
from tests.test_sample_stage import CountingGenerator, arithmetic_questions


class ShufflingStream:
    """The simulated solver as a streaming engine with a window: it pulls `window` requests, then hands back a random
    one of those in flight before pulling the next, so completions arrive in an order unrelated to the requests'.
    `stall_after`: it hangs after that many answers (a stream that cannot finish before it is killed)."""

    def __init__(self, window: int = 7, seed: int = 0, delay: float = 0.0, stall_after: int | None = None, **kwargs):
        self.inner = SimulatedGenerator(**kwargs)
        self.backend, self.model, self.revision = self.inner.backend, self.inner.model, self.inner.revision
        self.window, self.rng, self.delay, self.stall_after = window, random.Random(seed), delay, stall_after
        self.asked: list[tuple[str, int, int]] = []
        self.in_flight_ids: list[list[str]] = []

    def generate(self, requests):
        return self.inner.generate(requests)

    def stream(self, requests):
        source, flight = iter(requests), []
        while True:
            while len(flight) < self.window and (r := next(source, None)) is not None:
                flight.append(r)
                self.asked.append((r.request_id, r.seed, r.n))
            if not flight:
                return
            self.in_flight_ids.append([r.request_id for r in flight])
            time.sleep(self.delay)
            if len(self.in_flight_ids) > (self.stall_after or float("inf")):
                threading.Event().wait()
            yield self.inner.generate([flight.pop(self.rng.randrange(len(flight)))])

    def close(self):
        pass


class BatchOnly(CountingGenerator):
    """Today's feed: no `stream`, so the sampler calls `generate` on batches."""


def _shards(tmp_path, n_shards=4, per_shard=6, difficulty=3):
    store = ShardStore(str(tmp_path))
    table = arithmetic_questions(n_shards * per_shard, difficulty=difficulty)
    return store, [store.write("questions", f"q{i}", table.slice(i * per_shard, per_shard)) for i in range(n_shards)]


ROUNDS = {"simulated": {"step_error_rate": 0.4, "format_error_rate": 0.0},
          "adaptive": {"enabled": True, "quota": 2, "cap": 8, "max_rounds": 2},
          "guidance": {"enabled": True, "samples": 2}}


@pytest.mark.parametrize("rounds", [False, True], ids=["one-round", "adaptive+guided"])
def test_stream_rows_equal_a_batchwise_run_whatever_the_arrival_order(tmp_path, rounds):
    config = GenerationConfig(backend="simulated", samples_per_question=3, part_requests=4, batch_requests=5,
                              **(ROUNDS if rounds else {}))
    kwargs = ROUNDS["simulated"] if rounds else {}
    store, refs = _shards(tmp_path / "batch")
    ctx = BuildContext(store, "rh", seed=5)
    batchwise = [store.read(sample_shard.fn(ctx, q, BatchOnly(**kwargs), config)) for q in refs]
    finished = []
    store2, refs2 = _shards(tmp_path / "stream")
    generator = ShufflingStream(window=9, **kwargs)
    assert isinstance(generator, StreamingGenerator) and not isinstance(BatchOnly(), StreamingGenerator)
    streamed = sample_shards.fn(BuildContext(store2, "rh", seed=5), refs2, generator, config,
                                on_shard=lambda i, ref: finished.append(i))
    # One window spanned the shards: requests of two shards were in flight together.
    shard_of = {q: i for i, ref in enumerate(refs2) for q in store2.read(ref).column("question_id").to_pylist()}
    assert any(len({shard_of[q] for q in ids}) > 1 for ids in generator.in_flight_ids)
    assert sorted(finished) == [0, 1, 2, 3]
    for a, b in zip(batchwise, streamed):
        assert pl.from_arrow(a).equals(pl.from_arrow(store2.read(b)))  # same rows, same order
    if rounds:
        rows = pl.concat(pl.from_arrow(t) for t in batchwise)
        assert rows["guidance"].drop_nulls().len() > 0 and (rows["sample_index"] >= 3).any()


KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.test_stream_sampling import ShufflingStream, _shards
    from cotforge.schemas.config_generation import GenerationConfig
    from cotforge.tasks.generate.sample import sample_shards
    from cotforge.tasks.core.context import BuildContext

    store, refs = _shards({out!r})
    config = GenerationConfig(backend="simulated", samples_per_question=2, part_requests=3)
    stream = ShufflingStream(window=5, delay=0.15, stall_after=15)  # 15 of 24 answers, then it hangs until killed
    sample_shards.fn(BuildContext(store, "rh", seed=5), refs, stream, config)
""")


def test_stream_killed_mid_stream_resumes_with_only_missing_requests_and_same_rows(tmp_path):
    config = GenerationConfig(backend="simulated", samples_per_question=2, part_requests=3)
    store, refs = _shards(tmp_path / "ref")
    reference = [store.read(r) for r in sample_shards.fn(BuildContext(store, "rh", seed=5), refs,
                                                           ShufflingStream(), config)]
    out = tmp_path / "killed"
    parts_dir = out / "_work" / PART_STAGE
    kill_once_parts_written(KILL_SCRIPT.format(root=str(ROOT), out=str(out)), parts_dir, 3, 0.02)
    saved = sum(pl.read_parquet(p).height for p in parts_dir.glob("*.parquet"))
    assert 0 < saved < 24 * 2, "the kill must land mid-stream"
    store, refs = _shards(out)
    generator = ShufflingStream(seed=3)
    resumed = [store.read(r) for r in sample_shards.fn(BuildContext(store, "rh", seed=5), refs, generator, config)]
    assert len(generator.asked) == 24 - saved // 2  # each saved request's two rows are not asked again
    for a, b in zip(reference, resumed):
        assert pl.from_arrow(a).equals(pl.from_arrow(b))


def test_stream_resume_lists_the_parts_folder_once_per_stage(tmp_path, monkeypatch):
    """Every shard finds its own parts through one listing of the parts folder (a listing per shard made the stage
    quadratic in shards), and a resume from parts alone asks the backend nothing and gives the same rows."""
    config = GenerationConfig(backend="simulated", samples_per_question=2, part_requests=1)
    store, refs = _shards(tmp_path, n_shards=6)
    ctx = BuildContext(store, "rh", seed=5)
    first = [store.read(r) for r in sample_shards.fn(ctx, refs, ShufflingStream(window=5), config)]
    for marker in (tmp_path / "_work" / "samples").glob("*.done.json"):
        marker.unlink()  # the shards are gone, their parts are left: the rerun resumes every shard from parts
    listings = []
    done_keys = ShardStore.done_keys
    monkeypatch.setattr(ShardStore, "done_keys", lambda self, *a: listings.append(a) or done_keys(self, *a))
    generator = ShufflingStream(window=5)
    again = [store.read(r) for r in sample_shards.fn(ctx, refs, generator, config)]
    assert listings == [(PART_STAGE, "")] and generator.asked == []
    for a, b in zip(first, again):
        assert pl.from_arrow(a).equals(pl.from_arrow(b))


def test_stream_part_index_matches_a_listing_and_sees_parts_written_after_it(tmp_path):
    store = ShardStore(str(tmp_path))
    rows = [_sample("a", 1, 0)]
    PartStore(store, "ab", None).write("p1", rows)
    PartStore(store, "abc", None).write("p1", rows)  # a key that extends another shard's key is not its part
    index = PartIndex(store)
    assert index.with_prefix("ab-") == store.done_keys(PART_STAGE, "ab-") == ["ab-p1"]
    PartStore(store, "ab", None, index).write("p0", rows)  # written after the listing: the index has it
    PartStore(store, "ab", None, index).write("p0", rows)  # written again (a part's name is its content): once
    assert index.with_prefix("ab-") == store.done_keys(PART_STAGE, "ab-") == ["ab-p0", "ab-p1"]
    assert index.with_prefix("abc-") == ["abc-p1"] and index.with_prefix("zz-") == []


def test_stream_parts_close_by_count_and_by_age():
    now = [0.0]
    buffer = PartBuffer(part_requests=3, part_seconds=10.0, clock=lambda: now[0])
    assert not buffer.due() and buffer.take() is None
    buffer.add(("q1", 1), [])
    buffer.add(("q2", 1), [])
    assert not buffer.due()
    now[0] = 10.0
    assert buffer.due()  # old enough
    name, _ = buffer.take()
    for i in range(3):
        buffer.add((f"r{i}", 1), [])
    assert buffer.due() and buffer.take()[0] != name  # full; named by its requests


def _sample(q, seed, index, error=None, permanent=False):
    return Sample(sample_id=f"{q}{seed}{index}", question_id=q, sample_index=index, text="t", finish_reason="stop",
                  prompt_tokens=1, completion_tokens=1, error=error, error_permanent=permanent, backend="b",
                  model="m", model_revision="r", sampling_json="{}", seed=seed, prompt_template_hash="h",
                  recipe_hash="rh", build_id="b")


def test_stream_resume_keeps_good_rows_and_asks_failed_requests_again():
    failed = [_sample("a", 1, 0, "HTTP 503"), _sample("a", 1, 1)]
    good = [_sample("a", 1, 0), _sample("a", 1, 1)]
    permanent = [_sample("b", 2, 0, "no family", permanent=True)]
    assert set(usable_rows([failed, permanent])) == {("b", 2)}  # a's 503 is asked again, b's permanent error kept
    assert usable_rows([failed, good])[("a", 1)] == good  # the later run's good rows win


def test_stream_fallback_batches_generate_and_fills_missing_completions():
    class Lossy(CountingGenerator):
        def generate(self, requests):
            return [c for c in super().generate(requests) if c.index == 0]  # drops every other completion

    from cotforge.tasks.generate.sample import build_requests
    from tests.test_sample_stage import arithmetic_questions as aq

    config = GenerationConfig(backend="simulated", samples_per_question=2)
    requests = build_requests(aq(5), config, 1)
    generator = Lossy()
    out = list(stream_completions(generator, iter(requests), batch_requests=2))
    assert [len(o) for o in out] == [2] * 5 and [r for r, _, _ in generator.asked] == [r.request_id for r in requests]
    assert all(o[1].error and "1 of 2" in o[1].error and o[0].error is None for o in out)


def test_aimd_window_shrinks_on_overload_honours_retry_after_and_grows_back():
    w = AimdWindow(16)
    assert w.room(0, 0.0) == 16
    w.on_overload(1.0, retry_after_s=2.0)
    assert w.size == 8 and w.room(0, 2.5) == 0 and w.room(0, 3.1) == 8
    w.on_overload(1.05)  # the same burst: counted once
    assert w.size == 8
    for i in range(200):
        w.on_success(4.0 + i * 0.01, 0.1, 10)
    assert w.size == 16  # back to the ceiling, never above
    # Latency per token climbing past 8x the best seen shrinks it too.
    for i in range(50):
        w.on_success(10.0 + i, 5.0, 10)
    assert w.size < 16


def test_aimd_window_routes_to_the_least_loaded_server_with_room():
    windows = [AimdWindow(4), AimdWindow(8)]
    assert pick_server(windows, [2, 2], 0.0) == 1  # 2/8 < 2/4
    assert pick_server(windows, [4, 3], 0.0) == 1
    assert pick_server(windows, [4, 8], 0.0) is None
    windows[1].paused_until = 5.0
    assert pick_server(windows, [3, 0], 1.0) == 0


def test_stream_shared_generators_one_engine_per_model():
    sampling = GenerationConfig(backend="simulated", sampling={"temperature": 0.9})
    rollouts = GenerationConfig(backend="simulated", sampling={"temperature": 0.2}, samples_per_question=1)
    judge = GenerationConfig(backend="simulated", simulated={"step_error_rate": 0.0})
    assert engine_key(sampling) == engine_key(rollouts) != engine_key(judge)
    shared = SharedGenerators()
    a, b, c = shared.claim(sampling), shared.claim(rollouts), shared.claim(judge)
    assert a is b and a is not c
    a.generate([])
    shared.release(sampling)
    assert a.started is not None  # rollouts still use it
    shared.release(rollouts)
    assert a.started is None  # closed with its last user
    shared.close()


def test_stream_completions_of_a_request_are_whole_and_indexed(tmp_path):
    """Every list the simulated backend's stream yields is one request's n completions, indices 0..n-1."""
    from cotforge.tasks.generate.sample import build_requests

    config = GenerationConfig(backend="simulated", samples_per_question=3)
    requests = build_requests(arithmetic_questions(4), config, 2)
    out = list(SimulatedGenerator().stream(iter(requests)))
    assert [[c.index for c in o] for o in out] == [[0, 1, 2]] * 4
    assert all(isinstance(c, Completion) and {c.request_id} == {o[0].request_id} for o in out for c in o)
    assert json.dumps([c.text for o in out for c in o]) == json.dumps(
        [c.text for c in SimulatedGenerator().generate(requests)])


@pytest.fixture
def started(monkeypatch) -> list[str]:
    """The backends the build's lazy generators start (each a simulated one)."""
    from cotforge.tasks.generate import lazy

    backends: list[str] = []

    def counting(config):
        backends.append(config.backend)
        return SimulatedGenerator()
    monkeypatch.setattr(lazy, "make_generator", counting)
    return backends


def test_stream_build_starts_one_engine_for_sampling_and_prm_rollouts(tmp_path, started):
    from cotforge.flows.build import run_build
    from cotforge.schemas.recipe import Recipe
    recipe = Recipe.model_validate({"name": "shared", "seed": 2, "shard_size": 4,
                                    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 8}]},
                                    "generation": {"backend": "simulated", "samples_per_question": 2},
                                    "views": {"prm": {"enabled": True, "rollouts": 2}}})
    result = run_build(recipe, out=str(tmp_path / "out"))
    assert result.status == "published" and result.counts["rows in view prm"] > 0
    assert started == ["simulated"]  # sampling and the rollouts shared one generator


def test_stream_rerun_of_a_finished_build_starts_no_engine(tmp_path, started):
    """Every samples shard is written: the second run streams nothing, so it must not load a model."""
    from cotforge.flows.build import run_build
    from cotforge.schemas.recipe import Recipe
    recipe = Recipe.model_validate({"name": "cached", "seed": 2, "shard_size": 4,
                                    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 8}]},
                                    "generation": {"backend": "simulated", "samples_per_question": 2},
                                    "views": {"prm": {"enabled": False}}})
    first = run_build(recipe, out=str(tmp_path / "out"), version="0.1.0")
    assert first.status == "published" and started == ["simulated"]
    again = run_build(recipe, out=str(tmp_path / "out"), version="0.1.0")
    from cotforge.tasks.generate.accounting import REUSE_COUNTS
    # the version's counts are the same; only this run's sampling counts say it reused every shard
    assert {k: v for k, v in again.counts.items() if k not in REUSE_COUNTS} == \
        {k: v for k, v in first.counts.items() if k not in REUSE_COUNTS}
    assert again.counts["samples generated this run"] == 0
    assert again.counts["samples reused from earlier runs"] == first.counts["samples"] > 0
    assert started == ["simulated"]  # the rerun read every shard and started nothing


def test_stream_holds_no_sample_of_a_shard_once_it_is_written(tmp_path):
    """Bounded memory (issue 26): a written shard's Sample objects are freed as it is written, not when the stage
    ends. One request at a time, so one shard is open at a time: whenever a shard is written, no more Sample objects
    are alive than one shard makes (before, every finished shard's stayed: 12 after the first, 72 after the sixth)."""
    import gc

    config = GenerationConfig(backend="simulated", samples_per_question=2)
    store, refs = _shards(tmp_path, n_shards=6)

    def samples_alive() -> int:
        gc.collect()
        return sum(type(o) is Sample for o in gc.get_objects())  # (type: a dead weak proxy fails isinstance)

    before = samples_alive()  # (other tests in this process may hold some)
    alive = []
    sample_shards.fn(BuildContext(store, "rh", seed=5), refs, ShufflingStream(window=1), config,
                     on_shard=lambda position, ref: alive.append(samples_alive() - before))
    assert len(alive) == 6 and max(alive) <= 6 * 2, alive
