"""Smoke test of the engine benchmark at a small size (no build, no Prefect server): against the same simulated
16-slot engine, the streaming sampler keeps it busier than the batch-wise feed, and close to the oracle's ceiling.

The engine runs in its own process, as in the bench, at a per-sequence rate the client can feed on a loaded 2-core
machine (about 30 requests/s): at rates where the test process itself is the bottleneck, occupancy measures the
machine's load, not the feed."""

from cotforge.schemas.recipe import Recipe
from cotforge.tasks.generate.sample import build_requests
from tests.bench.bench_engine import MAX_TOKENS, _recipe, batchwise_occupancy, ceiling, streaming_occupancy
from tests.sim_engine import EngineProcess, sequence_length
from tests.test_sample_stage import arithmetic_questions


def test_stream_bench_engine_streaming_beats_batchwise_occupancy(tmp_path):
    table = arithmetic_questions(96, difficulty=2)
    shards = [table.slice(i, 32) for i in range(0, 96, 32)]
    with EngineProcess(16, tokens_per_s=400) as engine:
        recipe = Recipe.model_validate(_recipe("smoke", 96, 2, engine.url, 16))
        batch = batchwise_occupancy(engine, recipe, shards, str(tmp_path / "batch"))
        stream = streaming_occupancy(engine, recipe, shards, str(tmp_path / "stream"))
    lengths = [sequence_length(r.seed, i, MAX_TOKENS) for s in shards
               for r in build_requests(s, recipe.generation, recipe.seed) for i in range(r.n)]
    best = ceiling(engine.slots, lengths)
    print(f"occupancy: batch-wise {batch['occupancy']:.3f}, streaming {stream['occupancy']:.3f}, ceiling {best:.3f}")
    assert stream["occupancy"] > batch["occupancy"] + 0.1
    assert stream["occupancy"] > 0.85 * best
