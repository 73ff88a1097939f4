"""GPU smoke test of the vLLM backend (skipped without CUDA): a GPU machine runs it as is."""

import pytest

from tests.gpu.smoke_vllm import cuda_available, main

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and vllm")]


def test_vllm_gpu_smoke_and_benchmark():
    result = main(["--questions", "64", "--samples", "4", "--max-tokens", "128"])
    assert result is not None and result["raw_tokens"] == result["stage_tokens"] > 0
    assert result["ratio"] > 0
