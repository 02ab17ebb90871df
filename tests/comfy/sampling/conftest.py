"""Fixtures shared by the sampling stage's comfy-tier tests."""

import pytest
import torch
from sampler_fixtures import core


@pytest.fixture
def comfy_inference_mode():
    """Run the test inside ``torch.inference_mode`` (as ComfyUI runs nodes); modules opt in with ``usefixtures``."""
    with torch.inference_mode():
        yield


@pytest.fixture(scope="module")
def bm(pack):
    """The pack's core modules (``sampler_fixtures.core``)."""
    return core(pack)
