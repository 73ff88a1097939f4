"""Benchmark: how busy the sampling stage keeps a continuous-batching engine, streaming vs today's batch-wise feed.

A simulated engine (`tests/sim_engine.py`: N slots, each sequence decoding at a fixed token rate once it holds a
slot, log-normal output lengths with median 150 tokens capped at max_tokens 1024, a FIFO queue) runs behind an
OpenAI-compatible HTTP server started here. The real sampling stage samples 512 arithmetic questions x 4 with the
recipe's defaults (shard_size 64, part_requests 256; `max_concurrency` = the engine's slots, as a user would set it),
at 64 and at 256 slots, two ways in the same run:

- batch-wise (the baseline, the sampler before streaming): shard by shard, `generate` on 32 requests at a time;
- streaming: one stream over every shard, inside a whole build (`run_build`), which also gives build time / sampling
  time (verification and votes run beside sampling; dedup, views and publish after it).

Occupancy = busy slot-seconds / (slots x the engine's busy span). `ceiling` is the occupancy of an oracle feed that
queues every sequence at once (the same lengths, FIFO in question order): all it loses is the drain at the end of a
finite, heavy-tailed workload (the last long sequences run on a nearly empty engine), which no feed can avoid; it is a
reference, not a strict bound (another order drains a little differently). The token rate is scaled up (`--rate`) so
the bench takes a few minutes on a shared machine; the occupancies do not depend on it, build/sampling does (the work
after sampling takes fixed seconds). The last line reads `engine: occupancy=X build_over_sampling=Y`, the worse
of the slot settings.

    python -m tests.bench.bench_engine
    python -m tests.bench.bench_engine --questions 128 --slots 16,64 --rate 800
"""

from __future__ import annotations

import argparse
import heapq
import os
import tempfile
import time

os.environ.setdefault("COTFORGE_PROGRESS", "0")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.generate.openai_server import OpenAIGenerator
from cotforge.tasks.generate.sample import build_requests, sample_shard, sample_shards
from tests.sim_engine import Engine, EngineProcess, sequence_length

MAX_TOKENS = 1024


class BatchOnly:
    """The backend without its `stream`: the sampler falls back to `generate` in batches (today's feed)."""

    def __init__(self, inner):
        self.inner, self.backend, self.model, self.revision = inner, inner.backend, inner.model, inner.revision

    def generate(self, requests):
        return self.inner.generate(requests)

    def close(self):
        pass


def _recipe(name: str, questions: int, samples: int, url: str, slots: int) -> dict:
    return {"name": name, "seed": 3,
            "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": questions, "difficulty": 2}]},
            "generation": {"backend": "openai", "samples_per_question": samples,
                           "sampling": {"max_tokens": MAX_TOKENS},
                           "openai": {"base_url": url, "model": "sim-engine", "max_concurrency": slots}},
            "views": {"prm": {"enabled": False}}}


def ceiling(slots: int, lengths: list[int]) -> float:
    """Occupancy of an oracle feed: every sequence queued at once, FIFO (the end-of-work drain is all it loses)."""
    free = [0.0] * slots
    end = 0.0
    for tokens in lengths:
        start = heapq.heappop(free)
        end = max(end, start + tokens)
        heapq.heappush(free, start + tokens)
    return sum(lengths) / (slots * end)


def _question_refs(store: ShardStore) -> list:
    refs = [store.done("questions", p.split("/")[-1][: -len(".done.json")])
            for p in sorted(store.fs.glob(f"{store.root}/_work/questions/*.done.json"))]
    return [r for r in refs if r.rows]


def _occupancy(engine) -> float:
    return engine.stats()["occupancy"] if isinstance(engine, EngineProcess) else engine.occupancy()


def batchwise_occupancy(engine: Engine, recipe, questions: list, out: str) -> dict:
    """The sampler before streaming: shard by shard, `generate` on `batch_requests` requests at a time."""
    engine.reset()
    store = ShardStore(out)
    generator = BatchOnly(OpenAIGenerator(recipe.generation.openai))
    ctx = BuildContext(store, "bench", seed=recipe.seed)
    began = time.perf_counter()
    for i, table in enumerate(questions):
        sample_shard.fn(ctx, store.write("questions", f"q{i}", table), generator, recipe.generation)
    return {"occupancy": _occupancy(engine), "sampling_s": time.perf_counter() - began}


def streaming_occupancy(engine: Engine, recipe, questions: list, out: str) -> dict:
    """The sampling stage alone (no build), streaming every shard through one window."""
    engine.reset()
    store = ShardStore(out)
    refs = [store.write("questions", f"q{i}", table) for i, table in enumerate(questions)]
    began = time.perf_counter()
    sample_shards.fn(BuildContext(store, "bench", seed=recipe.seed), refs, OpenAIGenerator(recipe.generation.openai),
                     recipe.generation)
    return {"occupancy": _occupancy(engine), "sampling_s": time.perf_counter() - began}


def measure(slots: int, questions: int, samples: int, rate: float, batchwise: bool = True) -> dict:
    from cotforge.flows.build import run_build
    from cotforge.schemas.recipe import Recipe

    # The engine runs in a process of its own: the client under test does not slow it down.
    with EngineProcess(slots, tokens_per_s=rate) as engine, tempfile.TemporaryDirectory() as tmp:
        engine.reset()
        recipe = Recipe.model_validate(_recipe(f"engine{slots}", questions, samples, engine.url, slots))
        # Streaming, inside a whole build.
        began = time.perf_counter()
        result = run_build(recipe, out=f"{tmp}/stream")
        build_s = time.perf_counter() - began
        stream = {"occupancy": _occupancy(engine), "sampling_s": result.timings["sample"], "build_s": build_s,
                  "timings": result.timings}
        # The same question shards batch-wise, as the sampler fed the engine before streaming.
        store = ShardStore(f"{tmp}/stream")
        tables = [store.read(r) for r in _question_refs(store)]
        batch = batchwise_occupancy(engine, recipe, tables, f"{tmp}/batch") if batchwise else \
            {"occupancy": float("nan"), "sampling_s": float("nan")}
        lengths = [sequence_length(r.seed, i, MAX_TOKENS) for table in tables
                   for r in build_requests(table, recipe.generation, recipe.seed) for i in range(r.n)]
    return {"slots": slots, "stream": stream, "batch": batch, "ceiling": ceiling(slots, lengths),
            "sequences": len(lengths)}


def _warm_up() -> None:
    """One tiny build first, so Prefect's embedded server is up before anything is timed."""
    from cotforge.flows.build import run_build
    from cotforge.schemas.recipe import Recipe

    with tempfile.TemporaryDirectory() as tmp:
        run_build(Recipe.model_validate({"name": "warm", "questions": {"sources": [
            {"kind": "family", "family": "arithmetic", "n": 2}]}, "generation": {"backend": "simulated"},
            "views": {"prm": {"enabled": False}}}), out=tmp)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=512)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--slots", default="64,256")
    parser.add_argument("--rate", type=float, default=400.0, help="tokens/s per sequence (200 is the issue's)")
    parser.add_argument("--no-batchwise", action="store_true", help="skip the baseline (e.g. at a slow, real rate)")
    args = parser.parse_args(argv)
    _warm_up()
    results = []
    for slots in [int(s) for s in args.slots.split(",")]:
        r = measure(slots, args.questions, args.samples, args.rate, not args.no_batchwise)
        results.append(r)
        s, b = r["stream"], r["batch"]
        print(f"{slots} slots, {r['sequences']} sequences: batch-wise occupancy {b['occupancy']:.3f} "
              f"(sampling {b['sampling_s']:.1f} s) | streaming occupancy {s['occupancy']:.3f} "
              f"(sampling {s['sampling_s']:.1f} s, build {s['build_s']:.1f} s, build/sampling "
              f"{s['build_s'] / s['sampling_s']:.3f}) | ceiling {r['ceiling']:.3f} | streaming/ceiling "
              f"{s['occupancy'] / r['ceiling']:.3f} | streaming/batch {s['occupancy'] / b['occupancy']:.2f}x",
              flush=True)
        print("   build stages (s): " + ", ".join(f"{k} {v:.2f}" for k, v in s["timings"].items()), flush=True)
    worst = min(results, key=lambda r: r["stream"]["occupancy"])
    ratio = max(r["stream"]["build_s"] / r["stream"]["sampling_s"] for r in results)
    print(f"engine: occupancy={worst['stream']['occupancy']:.2f} build_over_sampling={ratio:.2f}")
    return results


if __name__ == "__main__":
    main()
