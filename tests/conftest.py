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


def missing_component(reason: str) -> None:
    """A real component the test needs is missing. Outside CI that is a skip with its reason; in CI (CI=true, as
    .ci/run runs) the setup should have installed it, so the test fails instead of hiding a broken setup."""
    if IN_CI:
        pytest.fail(f"missing in CI (the setup should have installed it): {reason}", pytrace=False)
    pytest.skip(reason)


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
