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


@pytest.fixture
def hub_server(tmp_path):
    """A Hub-compatible server on 127.0.0.1 (tests/hub_server.py) with HF_ENDPOINT/HF_TOKEN and a fresh HF cache
    pointing at it for the duration of the test; Xet is disabled (the server speaks LFS)."""
    from tests.hub_server import HubServer, hub_environment

    with HubServer(tmp_path / "hub-storage") as hub, hub_environment(hub.endpoint, hub.token, tmp_path / "hf-cache"):
        yield hub
