"""Streaming against simulated continuous-batching engines over HTTP (`tests/sim_engine.py`): back-pressure (429s and
a slowdown shrink the window, which recovers; the build finishes), several servers kept busy in proportion to their
capacity, and a build stopped with SIGINT / SIGTERM mid-stream that a rerun completes with the same rows."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import polars as pl
import pytest
import yaml

from cotforge.schemas.config_generation import GenerationConfig, OpenAIConfig
from cotforge.tasks.generate.openai_server import OpenAIGenerator
from cotforge.tasks.generate.sample import build_requests
from tests.conftest import ROOT
from tests.sim_engine import Engine, EngineProcess, EngineServer
from tests.test_sample_stage import arithmetic_questions


def _recipe(url, name="stream", n=48, **openai):
    return {"name": name, "seed": 4, "shard_size": 8,
            "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": n, "difficulty": 1}]},
            "generation": {"backend": "openai", "samples_per_question": 2, "sampling": {"max_tokens": 256},
                           "part_seconds": 0.3,
                           "openai": {"base_url": url, "model": "sim", "backoff_s": 0.05, "backoff_max_s": 0.5,
                                      **openai}},
            "views": {"prm": {"enabled": False}}}


def test_stream_server_with_429s_and_a_slowdown_shrinks_the_window_which_recovers(tmp_path):
    from cotforge.flows.build import run_build
    from cotforge.schemas.recipe import Recipe

    # Phase 1: a small, slow engine that rejects (429, Retry-After) what it cannot queue; phase 2: it scales up.
    engine = Engine(slots=2, tokens_per_s=2000, median_tokens=60, sigma=0.3, max_waiting=2, retry_after_s=0.1)

    def scale_up():
        while engine.requests < 40:
            time.sleep(0.02)
        engine.slots, engine.max_waiting, engine.tokens_per_s = 24, None, 6000

    with EngineServer(engine) as server:
        threading.Thread(target=scale_up, daemon=True).start()
        recipe = Recipe.model_validate(_recipe(server.url, n=160, max_concurrency=24, max_retries=2))
        result = run_build(recipe, out=str(tmp_path / "out"))
    assert result.status == "published" and engine.rejected > 0
    report = json.loads((tmp_path / "out" / "0.1.0" / "report" / "report.json").read_text())
    assert report["generation"]["errors"]["total"] == 0  # every 429 was absorbed: no failed sample
    window = [w for _, w, _ in json.loads((tmp_path / "out" / "_work" / "samples" /
                                           f"window-{result.build_id}.json").read_text())["window"]]
    low = window.index(min(window))
    assert window[0] == 24 and min(window) <= 6  # it shrank under the 429s ...
    assert max(window[low:]) >= 12  # ... and grew back (additively) once the engine could take more
    md = (tmp_path / "out" / "0.1.0" / "report" / "report.md").read_text()
    assert "### Sampling window over time" in md


def test_stream_several_servers_busy_in_proportion_to_their_capacity():
    # Each engine runs in its own process, at per-sequence rates the client can feed on a loaded 2-core machine
    # (about 30 requests/s in all): with the engines in the test's interpreter at 4x these rates, a busy CI machine,
    # not the feed, left the engines idle (occupancy 0.60 with the CPUs saturated).
    rate = 62.5
    engines = [EngineProcess(4, rate, median_tokens=60, sigma=0.3), EngineProcess(8, rate, median_tokens=60, sigma=0.3),
               EngineProcess(4, 4 * rate, median_tokens=60, sigma=0.3)]
    config = GenerationConfig(samples_per_question=1, sampling={"max_tokens": 256})
    requests = build_requests(arithmetic_questions(300), config, 1)
    with engines[0], engines[1], engines[2]:
        generator = OpenAIGenerator(OpenAIConfig(base_url=[e.url for e in engines], model="sim",
                                                 max_concurrency=[8, 16, 8]))  # a queue of one per slot
        began = time.monotonic()
        out = list(generator.stream(iter(requests)))
        span = time.monotonic() - began
        stats = [e.stats() for e in engines]
    assert len(out) == 300 and all(c.error is None for o in out for c in o)
    capacity = [e.slots * e.tokens_per_s for e in engines]
    tokens = [s["busy_slot_s"] * e.tokens_per_s for s, e in zip(stats, engines)]
    print(f"occupancy {[round(s['occupancy'], 3) for s in stats]}, token shares "
          f"{[round(t / sum(tokens), 3) for t in tokens]} (capacity {[round(c / sum(capacity), 3) for c in capacity]})")
    for cap, tok, s, e in zip(capacity, tokens, stats, engines):
        assert abs(tok / sum(tokens) - cap / sum(capacity)) < 0.08  # each server's share follows its capacity
        assert s["occupancy"] > 0.7 and s["busy_slot_s"] / (e.slots * span) > 0.5  # and each was kept busy


def _build(recipe_path, out) -> subprocess.Popen:
    env = {**os.environ, "COTFORGE_PROGRESS": "0"}
    return subprocess.Popen([sys.executable, "-m", "cotforge.flows.cli", "build", str(recipe_path), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stream_build_stopped_by_a_signal_mid_stream_saves_finished_samples_and_resumes(tmp_path, signum):
    engine = Engine(slots=8, tokens_per_s=400, median_tokens=60, sigma=0.3)
    with EngineServer(engine) as server:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(yaml.safe_dump(_recipe(server.url, n=96, max_concurrency=8)))
        out = tmp_path / "stopped"
        proc = _build(recipe, out)
        parts = out / "_work" / "samples-parts"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(parts.glob("*.done.json"))) < 3:
            time.sleep(0.02)
        proc.send_signal(signum)
        stopped_at = time.monotonic()
        said = proc.communicate(timeout=30)[0].decode()
        assert time.monotonic() - stopped_at < 10, "a signal must end the build within seconds"
        # Ctrl-C exits 130, SIGTERM 143 (128 + the signal), as the README's exit-code table says
        assert proc.returncode == 128 + signum, said[-2000:]
        assert "interrupted" in said and not (out / "0.1.0").exists()
        saved = sum(pl.read_parquet(p).height for p in parts.glob("*.parquet"))
        asked_before = engine.requests
        assert 0 < saved < 96 * 2 and asked_before < 96
        proc = _build(recipe, out)
        assert proc.wait(timeout=300) == 0, proc.stdout.read().decode()[-3000:]
        # Only what was not saved was asked again (a request cancelled in flight is asked again too).
        assert engine.requests - asked_before <= 96 - saved // 2
        clean = tmp_path / "clean"
        proc = _build(recipe, clean)
        assert proc.wait(timeout=300) == 0
    for view in ("sft", "preference", "rlvr"):
        a, b = pl.read_parquet(out / "0.1.0" / view), pl.read_parquet(clean / "0.1.0" / view)
        assert a.height == b.height and a.equals(b), view
