"""BM Dyadic Compose's preview (ui.PreviewVideo of a temp MP4) plays in the real frontend, without Save Video."""

import pytest

from beyond_monologue.comfyui.comfy_client import ComfyClient


@pytest.fixture(scope="module")
def inputs_on_server(frontend_server, assets):
    client = ComfyClient(frontend_server.url)
    return [client.upload_file(assets / name) for name in ("grace_hopper.jpg", "astronaut.png", "sample.wav")]


def test_dyadic_compose_previews_a_playable_video(comfy_page, inputs_on_server):
    page, log = comfy_page
    node_id = page.evaluate("""async ([imageA, imageB, audioName]) => {
        app.graph.clear();
        const make = (type, x, y) => { const n = LiteGraph.createNode(type); n.pos = [x, y]; app.graph.add(n); return n; };
        const a = make("LoadImage", 40, 60), b = make("LoadImage", 40, 460), sound = make("LoadAudio", 40, 860);
        const repeatA = make("RepeatImageBatch", 380, 60), repeatB = make("RepeatImageBatch", 380, 460);
        const compose = make("BMDyadicCompose", 700, 200);
        a.widgets.find(w => w.name === "image").value = imageA;
        b.widgets.find(w => w.name === "image").value = imageB;
        sound.widgets.find(w => w.name === "audio").value = audioName;
        for (const r of [repeatA, repeatB]) r.widgets.find(w => w.name === "amount").value = 25;
        a.connect(0, repeatA, 0); b.connect(0, repeatB, 0);
        repeatA.connect(0, compose, 0); repeatB.connect(0, compose, 1); sound.connect(0, compose, 2);
        await app.queuePrompt(0, 1);
        return compose.id;
    }""", inputs_on_server)
    # the frontend's own video preview (useNodeVideo) of the node's "images" + "animated" output
    video = f"app.graph.getNodeById({node_id}).videoContainer?.querySelector('video')"
    page.wait_for_function(f"() => {video}?.readyState >= 2", timeout=180_000)
    source, duration = page.evaluate(f"() => [{video}.src, {video}.duration]")
    assert "type=temp" in source and ".mp4" in source
    assert duration == pytest.approx(1.0, abs=0.1)  # 25 frames at 25 fps, the conversation trimmed to them
    page.evaluate(f"() => {{ const v = {video}; v.muted = true; return v.play(); }}")
    page.wait_for_function(f"() => {video}.currentTime > 0.2")
    assert log.unexpected() == []
