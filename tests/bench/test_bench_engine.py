"""Smoke test of the engine benchmark at a small size (no build, no Prefect server): against the same simulated
16-slot engine, the streaming sampler keeps it busier than the batch-wise feed, and close to the oracle's ceiling."""

from cotforge.schemas.recipe import Recipe
from cotforge.tasks.generate.sample import build_requests
from tests.bench.bench_engine import MAX_TOKENS, _recipe, batchwise_occupancy, ceiling, streaming_occupancy
from tests.sim_engine import Engine, EngineServer
from tests.test_sample_stage import arithmetic_questions


def test_stream_bench_engine_streaming_beats_batchwise_occupancy(tmp_path):
    engine = Engine(16, tokens_per_s=3000)
    table = arithmetic_questions(96, difficulty=2)
    shards = [table.slice(i, 32) for i in range(0, 96, 32)]
    with EngineServer(engine) as server:
        recipe = Recipe.model_validate(_recipe("smoke", 96, 2, server.url, 16))
        batch = batchwise_occupancy(engine, recipe, shards, str(tmp_path / "batch"))
        stream = streaming_occupancy(engine, recipe, shards, str(tmp_path / "stream"))
    lengths = [engine.length(r.seed, i, MAX_TOKENS) for s in shards
               for r in build_requests(s, recipe.generation, recipe.seed) for i in range(r.n)]
    best = ceiling(engine.slots, lengths)
    assert stream["occupancy"] > batch["occupancy"] + 0.1
    assert stream["occupancy"] > 0.85 * best
