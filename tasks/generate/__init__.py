"""Generation backends behind one `Generator` protocol; `make_generator` picks one from the recipe."""

from __future__ import annotations

from cotforge.schemas.config_generation import GenerationConfig
from cotforge.tasks.generate.base import Completion, GenerationRequest, Generator, SamplingParams

__all__ = ["Completion", "GenerationRequest", "Generator", "SamplingParams", "make_generator", "reference_model"]


def make_generator(config: GenerationConfig) -> Generator:
    """The backend the recipe names. Heavy backends are imported only when chosen."""
    if config.backend == "simulated":
        from cotforge.tasks.generate.simulated import SimulatedGenerator

        return SimulatedGenerator(config.simulated.step_error_rate, config.simulated.format_error_rate)
    if config.backend == "llamacpp":
        from cotforge.tasks.generate.llamacpp import LlamaCppGenerator

        c = config.llamacpp
        return LlamaCppGenerator(c.model_path, n_ctx=c.n_ctx, n_threads=c.n_threads, parallel=c.parallel)
    if config.backend == "vllm":
        from cotforge.tasks.generate.vllm_offline import VllmGenerator

        return VllmGenerator(config.vllm)
    if config.backend == "openai":
        from cotforge.tasks.generate.openai_server import OpenAIGenerator

        return OpenAIGenerator(config.openai)
    raise ValueError(f"unknown generation backend {config.backend!r}")


def reference_model(config: GenerationConfig) -> str:
    """The model whose pass rates the votes record, as `backend:model`, named as the backend names it on each sample
    row (so votes and samples agree), without starting the backend."""
    if config.backend == "simulated":
        from cotforge.tasks.generate.simulated import model_name

        model = model_name(config.simulated.step_error_rate)
    elif config.backend == "llamacpp":
        from cotforge.tasks.generate.llamacpp import model_name

        model = model_name(config.llamacpp.model_path)
    elif config.backend == "vllm":
        from cotforge.tasks.generate.vllm_offline import model_name

        model = model_name(config.vllm)
    else:
        model = config.openai.model  # the OpenAI backend sends and records the recipe's model name as it is
    return f"{config.backend}:{model}"
