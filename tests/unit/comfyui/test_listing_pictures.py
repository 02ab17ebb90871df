"""The listing's pictures: a thumbnail per example workflow (current) and the registry icon."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from beyond_monologue.comfyui.listing_pictures import (
    ICON_PATH,
    THUMBNAIL_SIZE,
    WORKFLOWS_DIR,
    icon,
    thumbnail_jpeg,
    workflow_thumbnail,
)

WORKFLOWS = sorted(WORKFLOWS_DIR.glob("*.json"))


def test_there_are_example_workflows():
    assert len(WORKFLOWS) >= 4


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.stem)
def test_every_example_workflow_has_its_current_thumbnail(workflow):
    picture = workflow.with_suffix(".jpg")
    assert picture.is_file(), f"run python -m beyond_monologue.comfyui.listing_pictures ({picture.name} missing)"
    shipped = Image.open(picture)
    assert shipped.format == "JPEG" and shipped.size == THUMBNAIL_SIZE
    fresh = Image.open(io.BytesIO(thumbnail_jpeg(workflow)))
    difference = np.abs(np.asarray(shipped, np.int16) - np.asarray(fresh, np.int16)).mean()
    assert difference < 1.0, f"{picture.name} is out of date: run python -m beyond_monologue.comfyui.listing_pictures"


def test_the_thumbnail_draws_the_graph_its_groups_and_links():
    workflow = json.loads((WORKFLOWS_DIR / "dyadic_conversation.json").read_text())
    full = np.asarray(workflow_thumbnail(workflow, "x"), np.int16)
    without_links = np.asarray(workflow_thumbnail(dict(workflow, links=[]), "x"), np.int16)
    without_groups = np.asarray(workflow_thumbnail(dict(workflow, groups=[]), "x"), np.int16)
    assert (np.abs(full - without_links).sum(axis=2) > 30).sum() > 500  # the links are drawn
    assert (np.abs(full - without_groups).sum(axis=2) > 30).sum() > 5000  # the stage groups are drawn
    fewer = dict(workflow, nodes=[n for n in workflow["nodes"] if n["type"] != "SaveVideo"])
    assert (np.abs(full - np.asarray(workflow_thumbnail(fewer, "x"), np.int16)).sum(axis=2) > 30).sum() > 1000


def test_icon_is_current():
    shipped = Image.open(ICON_PATH)
    assert shipped.format == "PNG" and shipped.size == (256, 256)
    assert np.array_equal(np.asarray(shipped.convert("RGB")), np.asarray(icon()))
