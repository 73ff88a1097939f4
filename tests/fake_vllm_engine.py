"""A stand-in for `tasks/generate/vllm_engine.py` speaking the same pipe protocol, for fast tests of the parent side.

It simulates a continuous-batching engine: `max_num_seqs` slots, each running sequence gets one token per tick
(FAKE_ENGINE_TICK_S seconds, times one plus the GPU index in CUDA_VISIBLE_DEVICES, so data-parallel engines run at
different speeds), and a request is answered when its n sequences are done. A sample's length and text follow from
(seed + index) only, like a seeded engine. FAKE_ENGINE_EXIT_AFTER=k makes it die after answering k requests.
"""

import json
import os
import queue
import sys
import threading
import time


def sample(request: dict, index: int, device: str) -> dict:
    seed = request["seed"] + index
    tokens = min(request["max_tokens"], 2 + seed % 23)
    return {"text": f"sample seed={seed} device={device}", "finish_reason": "stop", "prompt_tokens": 11,
            "completion_tokens": tokens, "logprobs": None}


def main() -> None:
    options = json.loads(sys.stdin.readline())
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    tick = float(os.environ.get("FAKE_ENGINE_TICK_S", "0.002")) * (1 + int(device.split(",")[0] or 0))
    exit_after = int(os.environ.get("FAKE_ENGINE_EXIT_AFTER", "-1"))
    slots = options["max_num_seqs"]

    def send(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    send({"ready": True, "device": "cpu", "gpus": 0, "vllm": "fake", "options": options})
    inbox: queue.Queue = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            inbox.put(json.loads(line))
        inbox.put(None)

    threading.Thread(target=read, daemon=True).start()
    waiting: list = []  # [tag, request, index] sequences not yet in a slot
    running: dict = {}  # (tag, index) -> tokens left
    left: dict = {}  # tag -> (request, sequences not finished)
    answered = 0
    while True:
        try:
            message = inbox.get(block=not left)
        except queue.Empty:
            message = {}
        while message:
            if "add" in message:
                for request in message["add"]:
                    left[request["tag"]] = (request, request["n"])
                    waiting += [(request["tag"], request, i) for i in range(request["n"])]
            elif "abort" in message:
                gone = set(message["abort"])
                waiting = [w for w in waiting if w[0] not in gone]
                running = {k: v for k, v in running.items() if k[0] not in gone}
                left = {k: v for k, v in left.items() if k not in gone}
            elif "status" in message:
                send({"status": {"unfinished": len(left), "streamed": len(left)}})
            elif "requests" in message:
                send({"results": [[sample(r, i, device) for i in range(r["n"])] for r in message["requests"]]})
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                break
        if message is None:
            return
        while waiting and len(running) < slots:
            tag, request, index = waiting.pop(0)
            running[(tag, index)] = sample(request, index, device)["completion_tokens"]
        time.sleep(tick)
        for key in list(running):
            running[key] -= 1
            if running[key] > 0:
                continue
            del running[key]
            request, remaining = left[key[0]]
            left[key[0]] = (request, remaining - 1)
            if remaining == 1:
                del left[key[0]]
                send({"done": key[0], "outputs": [sample(request, i, device) for i in range(request["n"])]})
                answered += 1
                if answered == exit_after:
                    os._exit(3)


if __name__ == "__main__":
    main()
