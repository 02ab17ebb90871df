"""BM Evaluate Avatar in the real ComfyUI frontend: run on the carphone video (native Load Video), its
plot is fetched and shown as the node's image preview, with no console errors."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from beyond_monologue.comfyui.comfy_client import ComfyClient

pytestmark = pytest.mark.timeout(240)


def test_the_metrics_plot_shows_on_the_node(comfy_page, frontend_server, assets):
    page, log = comfy_page
    video = ComfyClient(frontend_server.url).upload_file(assets / "carphone_pristine.mp4", name="bm_plot_carphone.mp4")
    fetched = []
    page.on("response", lambda r: fetched.append(r) if "/view?" in r.url and "image" in r.headers.get("content-type", "") else None)
    node_id = page.evaluate("""async (videoName) => {
        app.graph.clear();
        const load = LiteGraph.createNode("LoadVideo");
        const parts = LiteGraph.createNode("GetVideoComponents");
        const cut = LiteGraph.createNode("ImageFromBatch");
        const evaluate = LiteGraph.createNode("BMEvaluateAvatar");
        const show = LiteGraph.createNode("PreviewAny");
        load.pos = [20, 100]; parts.pos = [340, 100]; cut.pos = [620, 100]; evaluate.pos = [900, 100]; show.pos = [1250, 100];
        for (const node of [load, parts, cut, evaluate, show]) app.graph.add(node);
        load.widgets.find(w => w.name === "file").value = videoName;
        cut.widgets.find(w => w.name === "length").value = 20;
        load.connect(0, parts, 0);
        parts.connect(0, cut, 0);
        cut.connect(0, evaluate, "frames");
        parts.connect(2, evaluate, "fps");
        evaluate.connect(0, show, 0);
        await app.queuePrompt(0, 1);
        return evaluate.id;
    }""", video)
    page.wait_for_function(f"() => (app.graph.getNodeById({node_id}).imgs || []).some(i => i.complete && i.naturalWidth > 0)",
                           timeout=180_000)
    size = page.evaluate(f"() => {{ const i = app.graph.getNodeById({node_id}).imgs[0]; return [i.naturalWidth, i.naturalHeight]; }}")
    assert size == [960, 600]
    assert fetched and Image.open(io.BytesIO(fetched[-1].body())).size == (960, 600)
    text = page.evaluate("() => app.graph.nodes.find(n => n.type === 'PreviewAny').widgets.map(w => w.value).join('')")
    assert json.loads(text)["video"]["frames"] == 20
    assert log.unexpected() == []
