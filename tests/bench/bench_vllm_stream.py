"""Benchmark: does sampling keep a vLLM engine as busy as vLLM's own schedule? (vLLM on CPU, SmolLM2, one engine.)

Three ways over the same requests (the sampling stage's own: arithmetic questions x k samples, its seeds), on one
warm engine, in one run:
- the baseline: one `LLM.chat` call over every request (`VllmGenerator.generate_in_one_call`): vLLM sees all the
  work at once and schedules it itself, the best it can do;
- `VllmGenerator.stream`: requests pulled as the engine frees room (max_num_seqs plus a little queue);
- the sampling stage's kernel `sample_questions` with the recipe's defaults (batches of `batch_requests` where the
  stage calls `generate`; streamed where it calls `stream`).
It prints tokens/s of each and their ratios to the baseline (goal >= 0.95); the last line is for scripts:
`vllm: stream_over_generate=0.97 stage_over_generate=0.96`. All three generate the same tokens (same seeds). Before
measuring, one pass over the same prompts with max_tokens=1 fills the prefix cache, so that no way is favoured by
running after another. `max_num_seqs` is set below the sequences asked for, so streaming has to refill the engine.

    COTFORGE_VLLM_PYTHON=.venv-vllm/bin/python python -m tests.bench.bench_vllm_stream [--questions 64 --samples 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.tasks.generate import make_generator
from cotforge.tasks.generate.sample import build_requests, sample_questions


def bench_config(samples: int, max_tokens: int, max_num_seqs: int, vllm: dict | None = None) -> GenerationConfig:
    """The recipe's defaults for everything but the sizes; CPU test settings for the engine unless `vllm` is given."""
    if vllm is None:
        from tests.test_vllm_backend import VLLM_TEST_CONFIG, vllm_python

        vllm = {**VLLM_TEST_CONFIG, "python": vllm_python()}
    return GenerationConfig(backend="vllm", samples_per_question=samples, sampling={"max_tokens": max_tokens},
                            vllm={**vllm, "max_num_seqs": max_num_seqs})


def measure(config: GenerationConfig, questions: int, repeats: int = 1) -> dict:
    """Tokens/s of one engine call, of `stream` and of the stage over the same requests (each the best of
    `repeats`, taken in turn to spread a shared machine's noise)."""
    from tests.test_sample_stage import arithmetic_questions

    table = arithmetic_questions(questions, difficulty=2)
    requests = build_requests(table, config, 7)
    generator = make_generator(config)
    best = {"generate": float("inf"), "stream": float("inf"), "stage": float("inf")}
    tokens = {}
    try:
        warm = [dataclasses.replace(r, params=dataclasses.replace(r.params, max_tokens=1)) for r in requests]
        generator.generate_in_one_call(warm)  # prefix cache filled, first-call costs paid
        for _ in range(repeats):
            began = time.perf_counter()
            completions = generator.generate_in_one_call(requests)
            best["generate"] = min(best["generate"], time.perf_counter() - began)
            tokens["generate"] = sum(c.completion_tokens for c in completions)
            began = time.perf_counter()
            completions = [c for cs in generator.stream(iter(requests)) for c in cs]
            best["stream"] = min(best["stream"], time.perf_counter() - began)
            tokens["stream"] = sum(c.completion_tokens for c in completions)
            began = time.perf_counter()
            samples = sample_questions(table, generator, config, 7, "rh", "bench")
            best["stage"] = min(best["stage"], time.perf_counter() - began)
            tokens["stage"] = sum(samples.column("completion_tokens").to_pylist())
            assert samples.column("error").null_count == len(samples), "the stage had generation errors"
    finally:
        generator.close()
    tps = {way: tokens[way] / best[way] for way in best}
    return {"device": generator.device, "prompts": questions, "sequences": len(requests) * config.samples_per_question,
            "tokens": tokens, "seconds": best, "tps": tps, "stream_over_generate": tps["stream"] / tps["generate"],
            "stage_over_generate": tps["stage"] / tps["generate"]}


def report(r: dict, config: GenerationConfig) -> None:
    print(f"vllm on {r['device']}: {r['prompts']} prompts x {config.samples_per_question} samples = {r['sequences']} "
          f"sequences, max_tokens {config.sampling.max_tokens}, max_num_seqs {config.vllm.max_num_seqs}, "
          f"batch_requests {config.batch_requests}")
    for way, label in (("generate", "one LLM.generate call"), ("stream", "VllmGenerator.stream"),
                       ("stage", "sample_questions (stage)")):
        print(f"  {label:26s} {r['tokens'][way]:7d} tokens in {r['seconds'][way]:7.2f} s = {r['tps'][way]:8.1f} tok/s")
    print(f"vllm: stream_over_generate={r['stream_over_generate']:.2f} "
          f"stage_over_generate={r['stage_over_generate']:.2f}")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    from tests.test_vllm_backend import vllm_python

    if vllm_python() is None:
        print("vllm: skipped (no interpreter with vllm; run scripts/install_vllm_cpu.sh or set COTFORGE_VLLM_PYTHON)")
        return None
    config = bench_config(args.samples, args.max_tokens, args.max_num_seqs)
    result = measure(config, args.questions, args.repeats)
    report(result, config)
    return result


if __name__ == "__main__":
    main()
