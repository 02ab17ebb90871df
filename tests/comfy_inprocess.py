"""Fixtures for in-process ComfyUI: the pinned ComfyUI on sys.path (CPU) and this pack loaded as a package.

Registered for every tier by ``pytest_plugins`` in tests/conftest.py; nothing is imported until a
test asks for a fixture, so unit tests never load ComfyUI.

Use the ``pack`` fixture to reach the pack's modules (``pack.beyond_monologue.model.mhgk``,
``pack.nodes.audio`` ...), never ``import beyond_monologue`` directly in this tier: objects
must come from the same module copy that the nodes use.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT, find_comfyui

PACK_MODULE = "bm_pack"


def _load_comfy():
    comfy_dir = str(find_comfyui())
    if comfy_dir not in sys.path:
        sys.path.insert(0, comfy_dir)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management

    return comfy_dir


def _load_pack():
    if PACK_MODULE in sys.modules:
        return sys.modules[PACK_MODULE]
    spec = importlib.util.spec_from_file_location(PACK_MODULE, PACK_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(PACK_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_MODULE] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI's folder on sys.path, CPU device selected; returns that folder."""
    return _load_comfy()


@pytest.fixture(scope="session")
def pack(comfy):
    """The pack imported the way ComfyUI imports it (a package with relative imports)."""
    return _load_pack()


@pytest.fixture(scope="session")
def pack_nodes(pack):
    """Every node class of the pack's extension, by node id."""
    import asyncio

    extension = asyncio.run(pack.comfy_entrypoint())
    return {node.GET_SCHEMA().node_id: node for node in asyncio.run(extension.get_node_list())}
