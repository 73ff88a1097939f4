"""CPU stages beside the engine: each finished sample shard is verified and voted on a worker thread while the
engine samples the next shards, so a build where sampling dominates ends soon after its last sample."""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable


class ShardWorker:
    """Runs `work(position, ref)` for each submitted shard, in submission order, on one thread that shares the
    flow's Prefect context (its task calls are task runs of the flow). The first error stops it and is raised by
    `finish`."""

    def __init__(self, work: Callable[[int, object], object]):
        self.work = work
        self.queue: queue.Queue = queue.Queue()
        self.results: dict[int, object] = {}
        self.error: BaseException | None = None
        self.busy_s = 0.0
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,), daemon=True,
                                       name="cotforge-cpu-stages")
        self.thread.start()

    def submit(self, position: int, ref) -> None:
        self.queue.put((position, ref))

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain: after an error nothing more is worth doing
            began = time.perf_counter()
            try:
                self.results[item[0]] = self.work(*item)
            except BaseException as error:  # noqa: BLE001 - raised in the flow's thread by finish()
                self.error = error
            self.busy_s += time.perf_counter() - began

    def finish(self) -> dict[int, object]:
        """Wait for every submitted shard; the results by position."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.results

    def stop(self) -> None:
        """Stop after the shard in hand (the build is failing or interrupted); its errors are not raised."""
        self.error = self.error or RuntimeError("stopped")
        self.queue.put(None)
        self.thread.join(timeout=30)
