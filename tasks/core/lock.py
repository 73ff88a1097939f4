"""One build per output folder at a time: an exclusive `fcntl.flock` on `OUT/.lock`.

The kernel drops a flock when the process holding it ends, however it ends (SIGKILL included), so a killed build
never leaves the folder locked; the file only names the holder (pid, host, start time) for the refusal message.
Local folders only: object stores (s3://, memory://) have no advisory locks, so there one build per output is the
operator's job (README, "Output layout").
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec

LOCK_FILE = ".lock"


class OutputLocked(RuntimeError):
    """Another build holds the output folder."""


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')}, started {started}"


@contextmanager
def output_lock(out: str, wait_s: float = 0.0, poll_s: float = 0.2) -> Iterator[str | None]:
    """Hold `OUT/.lock` for the duration of the block; wait up to `wait_s` seconds for another build to finish,
    then refuse with `OutputLocked` naming it. Yields the lock file's path (None on a non-local filesystem)."""
    fs, root = fsspec.core.url_to_fs(out)
    if "file" not in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        yield None
        return
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputLocked(f"{out} is being written by another build ({_holder(fd)}); one build per "
                                       "output folder at a time: wait for it to finish or build into another "
                                       "--out") from None
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode(),
                  0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
