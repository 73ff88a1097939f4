"""GPU smoke run and benchmark of the vLLM backend: `python -m tests.gpu.smoke_vllm [--model M] [--questions N]`.

Needs CUDA and the `gpu` extra (vllm in this interpreter). Starts one engine, samples arithmetic questions through the
sampling stage, checks the rows, and prints tokens/s of the stage and of the raw engine call on the same prompts (the
stage/raw ratio) plus accepted samples per GPU-hour. Without CUDA it says so and exits 0 (the pytest wrapper skips).
"""

from __future__ import annotations

import argparse
import sys


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="HF folder or Hub id; default: SmolLM2 converted from GGUF")
    parser.add_argument("--questions", type=int, default=256)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    args = parser.parse_args(argv)
    if not cuda_available():
        print("no CUDA device: GPU smoke skipped")
        return None
    import polars as pl

    from cotforge.schemas.config_generation import GenerationConfig
    from cotforge.tasks.generate import make_generator
    from cotforge.tasks.generate.accounting import SamplingStats
    from cotforge.tasks.generate.sample import sample_questions
    from cotforge.tasks.generate.vllm_offline import VllmGenerator
    from tests.bench.bench_sampling import measure
    from tests.test_sample_stage import arithmetic_questions

    config = GenerationConfig(backend="vllm", samples_per_question=args.samples,
                              sampling={"max_tokens": args.max_tokens}, batch_requests=args.questions,
                              vllm={"model": args.model, "tensor_parallel_size": args.tensor_parallel_size})
    generator = make_generator(config)
    assert isinstance(generator, VllmGenerator) and generator.device == "cuda", generator.device
    try:
        stats = SamplingStats()
        table = pl.from_arrow(sample_questions(arithmetic_questions(args.questions), generator, config, 1, "rh",
                                               "gpu-smoke", stats=stats))
    finally:
        generator.close()
    assert table.height == args.questions * args.samples and table["error"].null_count() == table.height
    from cotforge.schemas.records import Sample
    from cotforge.tasks.generate.adaptive import accepted_flags

    accepted = sum(f is True for f in accepted_flags([Sample(**r) for r in table.to_dicts()],
                                                     arithmetic_questions(args.questions)))
    gpu_hours = stats.gpus * stats.stage_s / 3600
    print(f"vllm on {stats.gpus} GPU(s): {stats.completion_tokens} completion tokens in {stats.stage_s:.1f} s = "
          f"{stats.completion_tokens / stats.stage_s:.0f} tok/s; accepted {accepted} = "
          f"{accepted / gpu_hours:.0f} accepted samples per GPU-hour")
    # The same comparison the CPU benchmark prints, at GPU size (its own engine; the first one is closed).
    import tests.bench.bench_sampling as bench

    bench_config = bench._config
    bench._config = lambda backend, samples, max_tokens: config.model_copy(
        update={"samples_per_question": samples, "part_requests": 256})
    try:
        r = measure("vllm", args.questions, args.samples, args.max_tokens, repeats=2)
    finally:
        bench._config = bench_config
    print(f"vllm GPU stage/raw throughput ratio {r['ratio']:.3f} (raw {r['raw_tps']:.0f} tok/s, "
          f"stage {r['stage_tps']:.0f} tok/s)")
    return r


if __name__ == "__main__":
    main(sys.argv[1:])
