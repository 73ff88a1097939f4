"""Progress bars for long stages (rich), shared by every stage so they stack in one live display."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

_lock = threading.Lock()
_progress: Progress | None = None
console = Console(stderr=True)


def _shared() -> Progress:
    global _progress
    with _lock:
        if _progress is None:
            _progress = Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                                 disable=os.environ.get("COTFORGE_PROGRESS", "1") == "0")
            _progress.start()
        return _progress


@contextlib.contextmanager
def stage_bar(description: str, total: int) -> Iterator[callable]:
    """A bar for one stage; yields `advance(n=1)`."""
    progress = _shared()
    bar = progress.add_task(description, total=total)
    yield lambda n=1: progress.advance(bar, n)


def stop_progress() -> None:
    """End the live display (the build calls this before printing its summary)."""
    global _progress
    with _lock:
        if _progress is not None:
            _progress.stop()
            _progress = None
