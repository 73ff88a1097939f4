"""Shared test setup: Prefect runs on its embedded server with a startup timeout fit for a 2-core machine."""

import os
import sys
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("COTFORGE_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_component(reason: str, module: bool = False) -> None:
    """A real component the test needs is missing. Outside CI that is a skip with its reason; in CI (CI=true, as
    .ci/run runs) the setup should have installed it, so the test fails instead of hiding a broken setup.
    `module`: called at a test module's top level (the whole module is skipped or fails)."""
    if IN_CI:
        pytest.fail(f"missing in CI (the setup should have installed it): {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=module)


def require_module(name: str, reason: str = ""):
    """Import a module the test needs (an extra the README's test command installs), or `missing_component`."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        missing_component(f"cannot import {name} ({error}){': ' + reason if reason else ''}")


@pytest.fixture
def hub_server(tmp_path):
    """A Hub-compatible server on 127.0.0.1 (tests/hub_server.py) with HF_ENDPOINT/HF_TOKEN and a fresh HF cache
    pointing at it for the duration of the test; Xet is disabled (the server speaks LFS)."""
    from tests.hub_server import HubServer, hub_environment

    with HubServer(tmp_path / "hub-storage") as hub, hub_environment(hub.endpoint, hub.token, tmp_path / "hf-cache"):
        yield hub


VERSION_RECIPE = {"name": "versions", "seed": 11, "shard_size": 5,  # shard 3 of 0.2.0 holds old and new questions
                  "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 12, "difficulty": 2}]},
                  "generation": {"backend": "simulated", "samples_per_question": 3}}
# 0.2.0: the same 12 questions (old: carried, not sampled again) plus 6 new ones from another source.
VERSION_RECIPE_2 = {**VERSION_RECIPE, "questions": {"sources": [
    *VERSION_RECIPE["questions"]["sources"], {"kind": "family", "family": "linear", "n": 6, "difficulty": 2}]}}


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory):
    """One output folder with versions 0.1.0 and 0.2.0 of VERSION_RECIPE / VERSION_RECIPE_2 (read-only: copy it
    before changing anything) and their build results."""
    from cotforge.flows.build import build
    from cotforge.schemas.recipe import parse_recipe

    out = tmp_path_factory.mktemp("versions") / "out"
    first = build(parse_recipe(VERSION_RECIPE), out=str(out), version="0.1.0")
    second = build(parse_recipe(VERSION_RECIPE_2), out=str(out), version="0.2.0")
    return out, first, second


def kill_once_parts_written(script: str, parts_dir, count: int, poll_s: float = 0.05) -> None:
    """Run `script` in a real Python process and SIGKILL it once `count` parts are finished in `parts_dir` (or after
    60 s): a stage killed mid-way, for the resume tests."""
    import signal
    import subprocess
    import sys
    import time

    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(parts_dir.glob("*.done.json"))) < count:
        time.sleep(poll_s)
    process.send_signal(signal.SIGKILL)
    process.wait()


# The export tests' builds: every usable question is an RL prompt (the pass-rate band [0, 1], ends included), so the
# verl reward can be checked against every published generation of them.
EXPORT_MATH_RECIPE = {"name": "export-math", "seed": 21, "shard_size": 10,
                      "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 10, "difficulty": 2},
                                                {"kind": "family", "family": "linear", "n": 6, "difficulty": 2}]},
                      "generation": {"backend": "simulated", "samples_per_question": 4,
                                     "simulated": {"step_error_rate": 0.3}},
                      "views": {"rlvr": {"exclusive": False}}}
EXPORT_GYM_RECIPE = {"name": "export-gym", "seed": 5, "shard_size": 8,
                     "questions": {"total": 16, "sources": [
                         {"kind": "reasoning_gym", "task": "chain_sum", "weight": 2, "level": 0},
                         {"kind": "reasoning_gym", "task": "leg_counting", "weight": 1, "level": 1},
                         {"kind": "reasoning_gym", "task": "word_sorting", "weight": 1,
                          "config": {"min_words": 3, "max_words": 4}}]},
                     "generation": {"backend": "simulated", "samples_per_question": 4,
                                    "simulated": {"step_error_rate": 0.3}},
                     "views": {"rlvr": {"exclusive": False}}}


@pytest.fixture(scope="session")
def export_builds(tmp_path_factory):
    """{"math": OUT, "gym": OUT}: version 0.1.0 of each export recipe (read-only: copy before changing anything)."""
    from cotforge.flows.build import build
    from cotforge.schemas.recipe import parse_recipe

    outs = {}
    for kind, recipe in (("math", EXPORT_MATH_RECIPE), ("gym", EXPORT_GYM_RECIPE)):
        outs[kind] = tmp_path_factory.mktemp(f"export-{kind}") / "out"
        build(parse_recipe(recipe), out=str(outs[kind]), version="0.1.0")
    return outs
