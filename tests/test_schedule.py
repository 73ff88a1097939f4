"""Scheduled builds against a real Prefect server on 127.0.0.1: `cotforge schedule` + `cotforge serve` (pytest -k schedule)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {"name": "scheduled", "seed": 3, "shard_size": 8,
          "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 8, "difficulty": 2}]},
          "generation": {"backend": "simulated", "samples_per_question": 4}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, data: dict | None = None) -> object:
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                     headers={"Content-Type": "application/json"},
                                     method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real Prefect server (`prefect server start`) on 127.0.0.1 with its own PREFECT_HOME and SQLite database."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
           # The scheduler service makes runs from schedules; its default 60 s loop is too slow for a test.
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
           "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false"}
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    log = open(home / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home)
    try:
        deadline = time.time() + 180
        while True:
            try:
                _get(f"{api}/health")
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"Prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
                time.sleep(1)
        yield {"api": api, "env": {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}, "home": home}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cotforge.flows.cli", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_schedule_fires_a_run_that_produces_a_version(prefect_server, tmp_path):
    recipe = tmp_path / "scheduled.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    target = tmp_path / "versions"
    env = prefect_server["env"]

    made = _cli(["schedule", str(recipe), "--interval", "4", "--out", str(target)], env)
    assert made.returncode == 0, made.stderr
    assert "scheduled" in made.stdout
    deployments = _get(f"{prefect_server['api']}/deployments/filter", {})
    ours = [d for d in deployments if d["parameters"].get("recipe_path") == str(recipe.resolve())]
    assert len(ours) == 1 and ours[0]["schedules"][0]["schedule"]["interval"] == 4.0

    bad = _cli(["schedule", str(recipe)], env)  # neither --cron nor --interval
    assert bad.returncode == 2

    log = open(tmp_path / "serve.log", "w")
    # INFO: the runs' own outcome lines (the flow prints them) must reach the server's logs, read below.
    serve = subprocess.Popen([sys.executable, "-m", "cotforge.flows.cli", "serve"],
                             env={**env, "PREFECT_LOGGING_LEVEL": "INFO"}, cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 400
        while not (target / "0.1.0" / "README.md").is_file() or not _completed_runs(prefect_server["api"]):
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
        # Later runs keep firing on the interval; with the same seed they find no new rows and publish nothing.
        while len(_completed_runs(prefect_server["api"])) < 2:
            assert time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
        # What each run said, from the server's logs of its runs (the flow prints its outcome; log_prints=True),
        # read while `serve` still runs: the last lines are shipped a little after a run ends.
        said = ""
        while "-> skipped" not in said and time.time() < deadline:
            runs = _completed_runs(prefect_server["api"])
            logs = _get(f"{prefect_server['api']}/logs/filter",
                        {"logs": {"flow_run_id": {"any_": [r["id"] for r in runs]}}, "limit": 200})
            said = "\n".join(entry["message"] for entry in logs)
            time.sleep(0 if "-> skipped" in said else 2)
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        log.close()
    runs = _completed_runs(prefect_server["api"])
    assert len(runs) >= 2 and all(r["deployment_id"] == ours[0]["id"] for r in runs)
    assert (target / "0.1.0" / "sft").is_dir()
    # The later runs published nothing: no second version (folder or otherwise), and each said why.
    versions = sorted(p.name for p in target.iterdir() if not p.name.startswith(("_", ".")) and p.name != "latest")
    assert versions == ["0.1.0"] and (target / "latest").resolve().name == "0.1.0"
    assert said.count("-> published") == 1, said[-3000:]
    assert "-> skipped (0 new rows) no new rows against 1 published version(s)" in said, said[-3000:]
    report = json.loads((target / "0.1.0" / "report" / "report.json").read_text())
    assert report["version"] == "0.1.0"


def _completed_runs(api: str) -> list[dict]:
    try:
        runs = _get(f"{api}/flow_runs/filter", {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                                                "sort": "START_TIME_ASC"})
    except OSError:  # the server is busy running the build on the same 2 cores: ask again on the next poll
        return []
    return [r for r in runs if r.get("deployment_id")]


@pytest.mark.slow
def test_schedule_versions_bump_dedup_against_published_and_skip_without_new_rows(tmp_path):
    """The scheduled flow itself (Prefect's ephemeral API), in the one-off build's layout: 0.1.0, then no new rows ->
    nothing, then a reseeded 0.1.1 that is a full snapshot (0.1.0's rows carried, plus the new ones)."""
    from cotforge.flows.schedule import scheduled_build
    from cotforge.tasks.publish.write import read_view

    recipe = tmp_path / "scheduled.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    target = tmp_path / "versions"
    first = scheduled_build(str(recipe), out=str(target))
    assert first["published"] and first["version"] == "0.1.0" and first["earlier_versions"] == []
    assert first["out"] == f"{target}/0.1.0" and first["carried_rows"] == 0
    again = scheduled_build(str(recipe), out=str(target))
    assert again["version"] == "0.1.1" and again["earlier_versions"] == ["0.1.0"]
    assert not again["published"] and again["new_rows"] == 0, again
    assert not (target / "0.1.1").exists()
    fresh = scheduled_build(str(recipe), out=str(target), reseed=True)
    assert fresh["published"] and fresh["version"] == "0.1.1" and fresh["new_rows"] > 0
    assert fresh["previous"] == f"{target}/0.1.0" and fresh["carried_rows"] > 0
    sft_0, sft_1 = read_view(str(target / "0.1.0"), "sft"), read_view(str(target / "0.1.1"), "sft")
    assert sft_1.head(sft_0.height).equals(sft_0) and set(sft_1["added_in"]) == {"0.1.0", "0.1.1"}
    assert sorted(p.name for p in target.iterdir() if p.name[0].isdigit()) == ["0.1.0", "0.1.1"]
    assert os.readlink(target / "latest") == "0.1.1"
