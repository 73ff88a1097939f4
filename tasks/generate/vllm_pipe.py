"""The pipe to one vLLM engine process (`vllm_engine.py`): start it, send JSON lines, read them back unblocked."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from collections import deque

ENGINE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vllm_engine.py")


class EngineError(RuntimeError):
    """The engine process could not start (bad model, no vllm in its interpreter, out of memory ...)."""


class EngineProcess:
    """One engine child process and its pipe: JSON lines both ways, read without blocking."""

    def __init__(self, python: str, script: str, options: dict, env: dict[str, str]):
        self.log = tempfile.NamedTemporaryFile(prefix="cotforge-vllm-", suffix=".log", delete=False)
        self.process = subprocess.Popen([python, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.log, env=env,
                                        start_new_session=True)  # its own group: close() can end its workers too
        self.alive, self.load, self.window = True, 0, 0
        self._partial, self._messages = b"", deque()
        self.send(options)

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def send(self, message: dict) -> bool:
        """False when the engine is gone (it is then marked dead)."""
        try:
            self.process.stdin.write((json.dumps(message) + "\n").encode())
            self.process.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            self.alive = False
            return False

    def pump(self) -> None:
        """Read what the pipe holds (call when select says it is readable); an end of file marks the engine dead."""
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            self.alive = False
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        self._messages.extend(json.loads(line) for line in lines if line.strip())

    def take(self) -> list[dict]:
        messages, self._messages = list(self._messages), deque()
        return messages

    def receive(self, timeout: float | None) -> dict | None:
        """The next message; None if the engine exited (or stayed silent past `timeout`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._messages and self.alive:
            if select.select([self], [], [], 1.0)[0]:
                self.pump()
            elif self.process.poll() is not None or (deadline is not None and time.monotonic() > deadline):
                return None
        return self._messages.popleft() if self._messages else None

    def log_tail(self, chars: int = 3000) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-chars:]

    def close(self, wait: bool = True) -> None:
        """Closing its input lets the engine exit cleanly; a stuck one is ended with its whole group."""
        process = self.process
        if process.poll() is not None:
            return
        try:
            process.stdin.close()
            if wait:
                process.wait(timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
