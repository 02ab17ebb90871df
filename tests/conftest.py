"""Shared test set-up.

Tiers (marker given by folder, see ``pytest_collection_modifyitems``):

* ``unit``   -- tests/unit: pure torch/numpy, no ComfyUI; seconds.
* ``comfy``  -- tests/comfy: import the pinned ComfyUI in-process and load the pack as a package.
* ``server`` -- tests/server: a real ComfyUI server (child process) with the pack in custom_nodes.
* ``browser``-- tests/browser: the ComfyUI frontend in headless Chromium.
* ``install``-- tests/install: the requirements resolved in a fresh venv beside ComfyUI's (needs PyPI).

Unit tests import the core as ``beyond_monologue`` (the repo root is appended to sys.path, after
ComfyUI's folder, so that ComfyUI's own top-level ``nodes`` module is never shadowed by this
pack's ``nodes/`` package). Comfy-tier tests import everything through the ``pack`` fixture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / ".cache" / "assets"
SMOKE_DIR = ROOT / ".cache" / "smoke-weights"  # generated once, reused across sessions (see smoke_models)
TIERS = ("unit", "comfy", "server", "browser", "install")
pytest_plugins = ["comfy_inprocess", "audio_fixtures"]

if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


# Run order: the cheap tiers first, the shared server last, so that its session teardown (a clean
# shutdown, asserted) follows the server tests at once and a ~10 GB idle server does not sit through
# the unit tier on a 24 GB machine.
RUN_ORDER = ("unit", "install", "comfy", "browser", "server")


def _tier(item) -> str:
    parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
    return parts[0] if parts and parts[0] in TIERS else ""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _tier(item):
            item.add_marker(getattr(pytest.mark, _tier(item)))
    items.sort(key=lambda item: RUN_ORDER.index(_tier(item)) if _tier(item) in RUN_ORDER else len(RUN_ORDER))


@pytest.fixture(scope="session")
def assets() -> Path:
    """Folder with the real inputs of scripts/fetch_assets.py (fetched on first use)."""
    wanted = ["sample.wav", "sample.rttm", "grace_hopper.jpg", "astronaut.png", "carphone_pristine.mp4"]
    if not all((ASSETS / name).is_file() for name in wanted):
        import subprocess
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_assets.py"), "--dest", str(ASSETS)], check=True)
    return ASSETS


@pytest.fixture(scope="session")
def smoke_models() -> Path:
    """A ComfyUI ``models`` folder holding the smoke checkpoints of every manifest set (real names and folders).

    Generated once into ``.cache/smoke-weights`` (or ``$BM_SMOKE_DIR``) and reused while current
    (same builder, seed and format); about 2.9 GB, ~30 s to generate on 2 cores.
    """
    import os

    from beyond_monologue.weights import load_manifest
    from beyond_monologue.weights.smoke.generate import generate_set

    base = Path(os.environ.get("BM_SMOKE_DIR") or SMOKE_DIR)
    manifest = load_manifest()
    for name in manifest.sets:
        generate_set(manifest, name, base / "models")
    return base / "models"
