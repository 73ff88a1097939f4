"""One build per output folder at a time (`pytest -k lock`): a second build is refused (or waits), naming the build
that holds the folder, and a build killed with SIGKILL leaves no lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from cotforge.tasks.core.lock import OutputLocked, output_lock
from tests.conftest import ROOT, VERSION_RECIPE

HOLDER = """
import sys, time
from cotforge.tasks.core.lock import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(out, seconds: float) -> subprocess.Popen:
    """A process that holds the output lock for `seconds` (it stands in for a running build)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(seconds)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_lock_refuses_a_second_build_and_a_killed_build_leaves_none(tmp_path):
    from cotforge.flows.build import build
    from cotforge.schemas.recipe import parse_recipe

    out = tmp_path / "out"
    holder = _holder(out, 300)
    try:
        with pytest.raises(OutputLocked, match=f"being written by another build \\(pid {holder.pid} on "), \
                output_lock(str(out)):
            pass
        # The real build flow takes the lock before any work: refused, nothing written.
        with pytest.raises(OutputLocked, match=f"pid {holder.pid}"):
            build(parse_recipe(VERSION_RECIPE), out=str(out), version="0.1.0")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # a build killed at any moment
        holder.wait()
    start = time.monotonic()
    with output_lock(str(out)) as path:  # the kernel dropped the killed holder's lock: no stale lock to clear
        assert path == str(out / ".lock") and str(os.getpid()) in (out / ".lock").read_text()
    assert time.monotonic() - start < 1.0


def test_lock_waits_for_the_running_build_when_asked(tmp_path):
    out = tmp_path / "out"
    holder = _holder(out, 1.5)
    start = time.monotonic()
    with output_lock(str(out), wait_s=60, poll_s=0.05):
        waited = time.monotonic() - start
    assert 1.0 < waited < 30  # it got the lock only once the other build (holding it 1.5 s) had finished
    assert holder.wait(timeout=30) == 0


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with output_lock(str(tmp_path)), pytest.raises(OutputLocked), output_lock(str(tmp_path)):
        pass
    with output_lock(str(tmp_path)):  # released on leaving the block
        pass
