"""A build killed with SIGKILL and re-run completes with the same rows as an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
import yaml

from tests.conftest import ROOT

RECIPE = {
    "name": "resume",
    "seed": 5,
    "shard_size": 2,  # many small shards, so the kill lands between two of them
    "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 240, "difficulty": 3}]},
    "generation": {"backend": "simulated", "samples_per_question": 3},
}


def _build(recipe, out) -> subprocess.Popen:
    env = {**os.environ, "COTFORGE_PROGRESS": "0"}
    # A session of its own, so the kill takes the build's whole process group (its embedded Prefect server too).
    return subprocess.Popen([sys.executable, "-m", "cotforge.flows.cli", "build", str(recipe), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _rows(out, view):
    files = out / "latest" / view / "*.parquet"  # the build's default version, 0.1.0
    return pl.read_parquet(files).sort(pl.all()).to_dicts() if view != "prm" else \
        pl.read_parquet(files).sort("sample_id").to_dicts()


@pytest.mark.slow
def test_sigkill_then_resume_gives_same_rows(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _build(recipe, killed)
    markers = killed / "_work" / "samples"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(markers.glob("*.done.json"))) < 5:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(markers.glob("*.done.json")))
    assert 5 <= done_at_kill < 120, f"the kill should land mid-stage ({done_at_kill} of 120 shards done)"
    assert not (killed / "0.1.0").exists() and not (killed / "latest").exists()

    for out in (killed, clean):
        proc = _build(recipe, out)
        assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]
    for view in ("sft", "preference", "prm"):
        assert _rows(killed, view) == _rows(clean, view), f"{view} differs after resume"
    assert os.readlink(killed / "latest") == "0.1.0"
    assert len(list(markers.glob("*.done.json"))) == 120
