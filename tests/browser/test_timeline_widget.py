"""The pack's web extension in the real ComfyUI frontend: it loads cleanly and its timeline widget
draws a real BMSplitConversation result (checked on screenshots by pixel statistics)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from beyond_monologue.comfyui.comfy_client import ComfyClient
from beyond_monologue.comfyui.comfy_launcher import PACK_DIR_NAME

pytestmark = pytest.mark.timeout(240)  # bounded: a hung server or browser fails, never stalls CI

EXTENSION_URL_PREFIX = f"/extensions/{PACK_DIR_NAME}/"

EXTENSION = "BeyondMonologue.Timeline"
TALK_RGB = (0xFF, 0x8C, 0x1A)  # web/lib/timeline_view.js LANE_COLOURS
LISTEN_RGB = (0x1A, 0xB2, 0xFF)
CURSOR_RGB = (0xFF, 0xFF, 0xFF)
LANE_BACKGROUND_RGB = (0x2B, 0x2B, 0x33)


def colour_mask(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 10) -> np.ndarray:
    """Pixels of ``image`` [H, W, 3] within ``tolerance`` of ``rgb`` on every channel -> bool [H, W]."""
    return (np.abs(image.astype(int) - np.array(rgb)) <= tolerance).all(axis=-1)


def canvas_pixels(page) -> np.ndarray:
    """Screenshot of the timeline canvas as uint8 [H, W, 3]."""
    png = page.locator(".bm-timeline-canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def covered_fraction(turns: list[list[float]], duration: float) -> float:
    return sum(e - s for s, e in turns) / duration


def lane_coverage(image: np.ndarray, rgb: tuple[int, int, int]) -> tuple[float, np.ndarray]:
    """Fraction of the track covered by a lane colour on the lane's fullest row, and the lane's rows."""
    mask = colour_mask(image, rgb)
    rows = np.nonzero(mask.sum(axis=1))[0]
    row = int(np.argmax(mask.sum(axis=1)))
    track = mask[row] | colour_mask(image[row : row + 1], LANE_BACKGROUND_RGB)[0]
    columns = np.nonzero(track)[0]
    return mask[row, columns[0] : columns[-1] + 1].mean(), rows


@pytest.fixture()
def conversation_on_server(frontend_server, assets):
    """The real sample.wav uploaded to the server, and its ground-truth RTTM text."""
    name = ComfyClient(frontend_server.url).upload_file(assets / "sample.wav")
    return name, (assets / "sample.rttm").read_text()


def test_extension_modules_load_without_console_errors(comfy_page, frontend_server):
    page, log = comfy_page
    listed = [p for p in ComfyClient(frontend_server.url).get_json("/extensions") if p.startswith(EXTENSION_URL_PREFIX)]
    assert sorted(listed) == [f"{EXTENSION_URL_PREFIX}{name}" for name in (
        "bm_timeline.js", "bm_weights.js", "lib/timeline_view.js", "lib/weights_notice.js")]
    page.wait_for_function(f"() => app.extensions.some(e => e.name === '{EXTENSION}')")
    assert log.extension_responses == dict.fromkeys(listed, 200)
    # the widget comes with the node type, and the node's own widgets are untouched
    widgets = page.evaluate("""() => {
        const node = LiteGraph.createNode("BMSplitConversation");
        app.graph.add(node);
        return node.widgets.map(w => w.name);
    }""")
    assert widgets == ["mode", "avatar_speaker", "turns", "bm_timeline"]
    page.wait_for_timeout(500)
    assert log.unexpected() == []


def test_timeline_draws_a_real_split_result_and_seeks(comfy_page, conversation_on_server):
    page, log = comfy_page
    audio_name, rttm = conversation_on_server
    node_id = page.evaluate("""async ([audioName, rttm]) => {
        app.graph.clear();
        const load = LiteGraph.createNode("LoadAudio");
        const split = LiteGraph.createNode("BMSplitConversation");
        const show = LiteGraph.createNode("PreviewAny");
        load.pos = [40, 120]; split.pos = [420, 120]; show.pos = [950, 120];
        for (const node of [load, split, show]) app.graph.add(node);
        load.widgets.find(w => w.name === "audio").value = audioName;
        split.widgets.find(w => w.name === "mode").value = "turns";
        split.widgets.find(w => w.name === "avatar_speaker").value = "speaker_2";
        split.widgets.find(w => w.name === "turns").value = rttm;
        load.connect(0, split, 0);
        split.connect(2, show, 0);
        await app.queuePrompt(0, 1);
        return split.id;
    }""", [audio_name, rttm])
    view = f"app.graph.getNodeById({node_id}).bmTimeline"
    page.wait_for_function(f"() => {view}.payload !== null && {view}.audio.readyState >= 1")
    payload = page.evaluate(f"() => {view}.payload")
    assert [lane["id"] for lane in payload["lanes"]] == ["talk", "listen"]
    assert payload["duration_s"] == pytest.approx(30.0, abs=0.01)
    assert page.evaluate(f"() => {view}.audio.duration") == pytest.approx(30.0, abs=0.05)

    image = canvas_pixels(page)
    talk_fraction, talk_rows = lane_coverage(image, TALK_RGB)
    listen_fraction, listen_rows = lane_coverage(image, LISTEN_RGB)
    assert len(talk_rows) > 10 and len(listen_rows) > 10, "both lanes are drawn"
    assert talk_rows.max() < listen_rows.min(), "talk lane above the listen lane"
    # avatar = speaker_2 = speaker91 in the RTTM: its turns cover ~11.9 s of 30 s, speaker90's ~11.3 s
    for fraction, lane in ((talk_fraction, payload["lanes"][0]), (listen_fraction, payload["lanes"][1])):
        assert fraction == pytest.approx(covered_fraction(lane["turns"], payload["duration_s"]), abs=0.03)
    cursor_columns = np.nonzero(colour_mask(image, CURSOR_RGB, 30).sum(axis=0) > image.shape[0] // 2)[0]
    assert cursor_columns.size and cursor_columns.max() < 0.05 * image.shape[1], "cursor starts at 0 s"

    box = page.locator(".bm-timeline-canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    time_s, audio_s = page.evaluate(f"() => [{view}.time, {view}.audio.currentTime]")
    assert time_s == pytest.approx(15.0, abs=0.5) and audio_s == pytest.approx(time_s, abs=0.05)
    image = canvas_pixels(page)
    cursor_columns = np.nonzero(colour_mask(image, CURSOR_RGB, 30).sum(axis=0) > image.shape[0] // 2)[0]
    assert cursor_columns.size and abs(cursor_columns.mean() - image.shape[1] / 2) < 4, "cursor moved to the click"

    # the widget never enters the prompt or the saved workflow
    prompt, widgets_values = page.evaluate(f"""async () => {{
        const p = await app.graphToPrompt();
        return [p.output["{node_id}"].inputs, app.graph.getNodeById({node_id}).serialize().widgets_values];
    }}""")
    assert "bm_timeline" not in prompt and len(widgets_values) == 3
    assert log.unexpected() == []
