"""A real ComfyUI server with this pack, shared by every server test of the session."""

from __future__ import annotations

import pytest

from beyond_monologue.comfy_client import ComfyClient
from beyond_monologue.comfy_launcher import ComfyServer


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A started ComfyUI (``--cpu``, free port, temporary base directory); stopped at session end."""
    server = ComfyServer(tmp_path_factory.mktemp("comfy_base"))
    server.start()
    yield server
    code = server.stop()
    assert code == 0, f"ComfyUI did not shut down cleanly (exit code {code}):\n{server.log_tail()}"


@pytest.fixture()
def client(comfy_server) -> ComfyClient:
    """A fresh API client (own client id) for the session's server."""
    return ComfyClient(comfy_server.url)
