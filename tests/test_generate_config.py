"""The `generation` recipe section: one field switches backend; bad values name the field."""

import pytest

from cotforge.schemas.config_generation import VllmConfig
from cotforge.schemas.recipe import RecipeError, load_recipe, parse_recipe


def _recipe(generation: dict) -> dict:
    return {"name": "t", "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 2}]},
            "generation": generation}


@pytest.mark.parametrize("backend", ["simulated", "llamacpp", "vllm", "openai"])
def test_one_field_switches_backend(backend):
    recipe = parse_recipe(_recipe({"backend": backend}))
    assert recipe.generation.backend == backend
    assert recipe.generation.vllm.enable_prefix_caching  # prefix caching on by default


def test_shipped_recipe_runs_on_another_backend_by_changing_one_field():
    recipe = load_recipe("data/recipes/simulated.yaml")
    data = recipe.model_dump(mode="json")
    data["generation"]["backend"] = "openai"
    switched = parse_recipe(data)
    assert switched.generation.backend == "openai" and switched.questions == recipe.questions


@pytest.mark.parametrize("generation, field", [
    ({"backend": "tgi"}, "generation.backend"),
    ({"vllm": {"gpu_memory_utilization": 1.5}}, "generation.vllm.gpu_memory_utilization"),
    ({"openai": {"max_concurrency": 0}}, "generation.openai.max_concurrency"),
    ({"openai": {"api_key": "sk-x"}}, "generation.openai.api_key"),  # keys never go in recipes: unknown field
    ({"adaptive": {"quota": 0}}, "generation.adaptive.quota"),
    ({"guidance": {"mode": "answer"}}, "generation.guidance.mode"),
])
def test_bad_generation_fields_are_named(generation, field):
    with pytest.raises(RecipeError, match=f"field '{field}'"):
        parse_recipe(_recipe(generation))


def test_vllm_cpu_defaults_turn_chunked_prefill_off_unless_the_recipe_says():
    from cotforge.tasks.generate.vllm_engine import with_device_defaults
    from cotforge.tasks.generate.vllm_offline import engine_options

    options = engine_options(VllmConfig(max_model_len=4096), "m")
    assert "enable_chunked_prefill" not in options  # the recipe left it to the device
    on_cpu = with_device_defaults(options, on_cpu=True)
    assert on_cpu["enable_chunked_prefill"] is False and on_cpu["max_num_batched_tokens"] == 4096
    assert with_device_defaults(engine_options(VllmConfig(max_model_len=512), "m"), True)["max_num_batched_tokens"] \
        == 2048  # never below vLLM's usual budget: short prompts still batch together
    assert with_device_defaults(options, on_cpu=False) == options  # GPUs keep vLLM's own defaults
    chosen = engine_options(VllmConfig(enable_chunked_prefill=True, max_num_batched_tokens=1024), "m")
    assert with_device_defaults(chosen, on_cpu=True) == chosen  # the recipe's word wins
    no_length = with_device_defaults(engine_options(VllmConfig(max_model_len=None), "m"), on_cpu=True)
    assert no_length["enable_chunked_prefill"] is False and "max_num_batched_tokens" not in no_length


@pytest.mark.parametrize("backend", ["simulated", "llamacpp", "openai"])
def test_votes_name_the_model_as_the_backend_names_it_on_samples(backend):
    """reference_model (on vote rows) and Generator.model (on sample rows) must agree for every backend."""
    from cotforge.schemas.config_generation import GenerationConfig
    from cotforge.tasks.generate import make_generator, reference_model

    config = GenerationConfig(backend=backend)
    generator = make_generator(config)
    try:
        assert reference_model(config) == f"{backend}:{generator.model}"
    finally:
        generator.close()


def test_vllm_model_name_without_starting_an_engine(tmp_path):
    from cotforge.tasks.generate.convert import smollm2_hf_name
    from cotforge.tasks.generate.vllm_offline import model_name

    assert model_name(VllmConfig(model="org/some-model")) == "org/some-model"
    (tmp_path / "my-model").mkdir()
    assert model_name(VllmConfig(model=str(tmp_path / "my-model") + "/")) == "my-model"
    assert model_name(VllmConfig()) == smollm2_hf_name() and smollm2_hf_name().startswith("SmolLM2-135M-Instruct-")
