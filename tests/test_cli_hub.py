"""`cotforge build --push`, `cotforge pull ORG/NAME` and the refusal to republish a version, as subprocesses that read
HF_ENDPOINT / HF_TOKEN from the environment like huggingface_hub does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"name": "clihub", "seed": 4, "shard_size": 8,
          "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 8, "difficulty": 2}]},
          "generation": {"backend": "simulated", "samples_per_question": 3}}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cotforge.flows.cli", *args], env={**os.environ}, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_build_push_pull_and_refuse_republish(hub_server, tmp_path):
    recipe = tmp_path / "clihub.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    built = _cli("--verbose", "build", str(recipe), "--out", str(tmp_path / "out"), "--push", "org/cli", "--private")
    assert built.returncode == 0, built.stderr[-3000:]
    assert "pushed: org/cli version 0.1.0" in built.stdout
    assert hub_server.token not in built.stdout + built.stderr  # verbose logs included
    assert hub_server.tags("org/cli").keys() == {"0.1.0"}

    pulled = _cli("pull", "org/cli", "--config", "sft", "--version", "0.1.0", "--out", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stderr
    local = pl.read_parquet(tmp_path / "out" / "0.1.0" / "sft" / "*.parquet")
    assert pl.read_parquet(tmp_path / "pulled" / "sft.parquet").height == local.height > 0

    again = _cli("build", str(recipe), "--out", str(tmp_path / "out2"), "--push", "org/cli", "--version", "0.1.0")
    assert again.returncode == 2 and "already has version 0.1.0" in again.stderr  # refusals go to stderr
    assert not (tmp_path / "out2").exists()  # refused before building anything

    missing = _cli("pull", "org/cli", "--config", "sft", "--version", "2.0.0")
    assert missing.returncode == 2 and "no version 2.0.0" in missing.stderr
