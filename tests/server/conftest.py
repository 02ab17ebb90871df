"""A real ComfyUI server with this pack, shared by every server test of the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from beyond_monologue.comfyui.comfy_client import ComfyClient
from beyond_monologue.comfyui.comfy_launcher import ComfyServer

TEST_NODES = Path(__file__).resolve().parent / "bm_test_nodes"  # test-only inputs (see its docstring)


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A started ComfyUI (``--cpu``, free port, temporary base directory) with the pack and the test-only nodes."""
    base = tmp_path_factory.mktemp("comfy_base")
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / TEST_NODES.name).symlink_to(TEST_NODES, target_is_directory=True)
    server = ComfyServer(base)
    server.start()
    yield server
    code = server.stop()
    assert code == 0, f"ComfyUI did not shut down cleanly (exit code {code}):\n{server.log_tail()}"


@pytest.fixture()
def client(comfy_server) -> ComfyClient:
    """A fresh API client (own client id) for the session's server."""
    return ComfyClient(comfy_server.url)


@pytest.fixture(scope="session")
def served(comfy_server, smoke_models):
    """Every smoke checkpoint linked into the server's models folders (ComfyUI re-lists a folder when it changes)."""
    models = comfy_server.base_dir / "models"
    for source in smoke_models.glob("*/*.safetensors"):
        target = models / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source)
    return models
