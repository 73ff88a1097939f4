"""Benchmark: llama.cpp batched decoding (`parallel` sequences per forward pass) against one `create_completion` at a
time, on the same prompts (the sampling stage's requests: arithmetic questions x k samples, the same seeds and
max_tokens), SmolLM2-135M on CPU, in one run. Prints tokens/s of each and their ratio; the last line is for scripts:
`llamacpp: batched_over_one_at_a_time=3.80`.

    python -m tests.bench.bench_llamacpp_batch [--questions 8 --samples 2 --max-tokens 48 --parallel 8 --threads 1]
"""

from __future__ import annotations

import argparse
import time

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.tasks.generate.llamacpp import LlamaCppGenerator
from cotforge.tasks.generate.sample import build_requests


def measure(questions: int, samples: int, max_tokens: int, parallel: int, threads: int, repeats: int) -> dict:
    from tests.test_sample_stage import arithmetic_questions

    config = GenerationConfig(backend="llamacpp", samples_per_question=samples, sampling={"max_tokens": max_tokens})
    requests = build_requests(arithmetic_questions(questions, difficulty=2), config, 7)
    generator = LlamaCppGenerator(n_ctx=512, n_threads=threads, parallel=parallel)
    best, tokens = {}, {}
    try:
        generator.generate(requests[:1])  # warm-up (the batched context is made on first use)
        for _ in range(repeats):  # taken in turn, so a shared machine's load falls on both alike
            for way, slots in (("one_at_a_time", 1), ("batched", parallel)):
                generator.parallel = slots
                began = time.perf_counter()
                completions = generator.generate(requests)
                best[way] = min(best.get(way, float("inf")), time.perf_counter() - began)
                tokens[way] = sum(c.completion_tokens for c in completions)
                assert all(c.error is None for c in completions), [c.error for c in completions if c.error][:1]
    finally:
        generator.close()
    tps = {way: tokens[way] / best[way] for way in best}
    return {"tokens": tokens, "seconds": best, "tps": tps, "ratio": tps["batched"] / tps["one_at_a_time"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    r = measure(args.questions, args.samples, args.max_tokens, args.parallel, args.threads, args.repeats)
    print(f"llamacpp SmolLM2 on CPU ({args.threads} thread(s)): {args.questions} prompts x {args.samples} samples, "
          f"max_tokens {args.max_tokens}")
    for way in ("one_at_a_time", "batched"):
        label = "one create_completion at a time" if way == "one_at_a_time" else f"batched, {args.parallel} slots"
        print(f"  {label:32s} {r['tokens'][way]:6d} tokens in {r['seconds'][way]:7.2f} s = {r['tps'][way]:7.1f} tok/s")
    print(f"llamacpp: batched_over_one_at_a_time={r['ratio']:.2f}")
    return r


if __name__ == "__main__":
    main()
