"""vLLM streaming on a real GPU (skipped without CUDA): the sampling stage's tokens/s and `VllmGenerator.stream`'s,
each divided by one `LLM.generate` call over the same requests on the same engine (vLLM's own schedule).

The engine occupancy measurement of the streaming sampler is tests/bench/bench_engine.py's (a simulated engine); this
is the real-engine counterpart: 512 questions x 4 samples of up to 256 tokens against max_num_seqs 256, so the work
is eight times the engine's batch and every batch boundary of a non-streaming stage would show. Printed in the bench's
form (`vllm: stream_over_generate=... stage_over_generate=...`); the goal is 0.95, asserted with a margin for a
shared machine's noise: `pytest tests/gpu -s` on a GPU machine, or
`python -m tests.bench.bench_vllm_stream --questions 512 --max-tokens 256 --max-num-seqs 256` with the gpu extra.
"""

import pytest

from tests.gpu.smoke_vllm import cuda_available

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and vllm")]


def test_vllm_gpu_stream_and_stage_keep_up_with_one_generate_call():
    from tests.bench.bench_vllm_stream import bench_config, measure, report

    config = bench_config(samples=4, max_tokens=256, max_num_seqs=256, vllm={})  # the engine's GPU defaults
    result = measure(config, questions=512, repeats=2)
    report(result, config)
    assert result["device"] == "cuda"
    # (same seeds, but a GPU's kernels are not batch-invariant: the texts, so the token counts, may differ a little)
    assert min(result["tokens"].values()) > 0.9 * max(result["tokens"].values()) > 0
    assert result["stream_over_generate"] >= 0.9, result
    assert result["stage_over_generate"] >= 0.9, result
