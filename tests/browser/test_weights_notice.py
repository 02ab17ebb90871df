"""The missing-weights notice in the real ComfyUI frontend: a loader node whose file is missing shows
the manifest's download link and folder, and the notice goes once the file is in the list."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from beyond_monologue.weights import load_manifest
from beyond_monologue.weights.smoke.generate import generate_file

pytestmark = pytest.mark.timeout(240)  # bounded: a hung server or browser fails, never stalls CI

NOTICE_BACKGROUND_RGB = (0x3D, 0x2A, 0x0C)  # web/lib/weights_notice.js NOTICE_COLOURS.background
NOTICE = ".bm-weights-notice"

ADD_NODE = """([type, values]) => {
    app.graph.clear();
    const node = LiteGraph.createNode(type);
    node.pos = [120, 140];
    app.graph.add(node);
    for (const [name, value] of Object.entries(values)) {
        node.widgets.find(w => w.name === name).setValue(value, {node, canvas: app.canvas});
    }
    app.canvas.setDirty(true, true);
    return node.id;
}"""
# the notice widget's state and its links
NOTICE_STATE = """(id) => {
    const node = app.graph.getNodeById(id);
    const element = node.bmWeights.element;
    return {hidden: node.bmWeights.widget.hidden, kinds: element.dataset.kinds, text: element.textContent,
            links: [...element.querySelectorAll("a")].map(a => ({href: a.href, target: a.target, rel: a.rel})),
            nodeHeight: node.size[1]};
}"""


def notice_pixels(page) -> np.ndarray:
    """Screenshot of the (single) visible notice as uint8 [H, W, 3]."""
    png = page.locator(NOTICE).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def background_share(image: np.ndarray, rgb=NOTICE_BACKGROUND_RGB, tolerance: int = 8) -> float:
    return float((np.abs(image.astype(int) - np.array(rgb)) <= tolerance).all(axis=-1).mean())


def test_missing_adapter_links_its_download_until_the_file_is_listed(comfy_page, frontend_server):
    page, log = comfy_page
    manifest = load_manifest()
    multi, single = manifest.files["infinitetalk_multi_fp16"], manifest.files["infinitetalk_single_fp16"]

    # a fresh server: models/model_patches is empty, so the notice offers every adapter it could load
    node_id = page.evaluate(ADD_NODE, ["BMApplyDuplexAdapter", {}])
    page.locator(NOTICE).wait_for(state="visible")
    state = page.evaluate(NOTICE_STATE, node_id)
    assert state["kinds"] == "empty" and not state["hidden"]
    assert [link["href"] for link in state["links"]] == [multi.url, single.url]
    assert all(link["target"] == "_blank" and "noopener" in link["rel"] for link in state["links"])
    assert "beyond_monologue_wan2.2_5B_adapter: not published yet" in state["text"]
    assert "into models/model_patches/, then press R" in state["text"]
    assert background_share(notice_pixels(page)) > 0.5, "the notice is drawn on the node"

    # a workflow names the multi-speaker patch (picked as the canvas does): one link, to its manifest URL
    page.evaluate("""([id, name]) => {
        const node = app.graph.getNodeById(id);
        node.widgets.find(w => w.name === "adapter").setValue(name, {node, canvas: app.canvas});
    }""", [node_id, multi.filename])
    state = page.evaluate(NOTICE_STATE, node_id)
    assert state["kinds"] == "missing"
    assert state["links"] == [{"href": multi.url, "target": "_blank", "rel": "noopener noreferrer"}]
    assert f"Missing: {multi.filename}" in state["text"] and "into models/model_patches/" in state["text"]
    assert "Download it (about 4.77 GiB)" in state["text"]
    shown_height = state["nodeHeight"]

    # the file arrives; Refresh (R) re-reads the lists and the notice goes, the node shrinks back
    assert generate_file(multi, frontend_server.base_dir / "models").path.is_file()
    page.evaluate("() => app.refreshComboInNodes()")
    page.locator(NOTICE).wait_for(state="hidden")
    state = page.evaluate(NOTICE_STATE, node_id)
    assert state["hidden"] and state["nodeHeight"] < shown_height
    prompt, widgets_values = page.evaluate(f"""async () => {{
        const p = await app.graphToPrompt();
        return [p.output["{node_id}"].inputs, app.graph.getNodeById({node_id}).serialize().widgets_values];
    }}""")
    assert prompt["adapter"] == multi.filename and "bm_weights" not in prompt
    assert len(widgets_values) == 8  # the node's own widgets only
    assert log.unexpected() == []


def test_native_vae_loader_from_a_workflow_and_a_failed_run(comfy_page, frontend_server):
    page, log = comfy_page
    manifest = load_manifest()
    wan22_vae, wan21_vae = manifest.files["wan22_vae"], manifest.files["wan21_vae_bf16_kijai"]
    generate_file(wan21_vae, frontend_server.base_dir / "models")
    page.evaluate("() => app.refreshComboInNodes()")

    # a workflow whose VAE is missing: the link is the manifest's URL of that file
    workflow = {"last_node_id": 1, "last_link_id": 0, "version": 0.4, "links": [], "groups": [], "config": {},
                "nodes": [{"id": 1, "type": "VAELoader", "pos": [120, 140], "size": [320, 60], "flags": {},
                           "order": 0, "mode": 0, "inputs": [], "properties": {},
                           "outputs": [{"name": "VAE", "type": "VAE", "links": None}],
                           "widgets_values": [wan22_vae.filename]}]}
    page.evaluate("(workflow) => app.loadGraphData(workflow)", workflow)
    page.locator(NOTICE).wait_for(state="visible")
    state = page.evaluate(NOTICE_STATE, 1)
    assert state["kinds"] == "missing" and [link["href"] for link in state["links"]] == [wan22_vae.url]
    assert "into models/vae/" in state["text"]

    pick = """(name) => {
        const node = app.graph.getNodeById(1);
        node.widgets.find(w => w.name === "vae_name").setValue(name, {node, canvas: app.canvas});
    }"""
    # a file the manifest does not know: no link, only the folder
    page.evaluate(pick, "my_own_vae.safetensors")
    state = page.evaluate(NOTICE_STATE, 1)
    assert state["kinds"] == "unknown" and state["links"] == [] and "Put it in models/vae/" in state["text"]
    # picking the file that is there hides it
    page.evaluate(pick, wan21_vae.filename)
    page.locator(NOTICE).wait_for(state="hidden")

    # a run that could not find it (the file went after the list was read): ComfyUI's own error event
    message = f"Model in folder 'vae' with filename '{wan21_vae.filename}' not found."
    page.evaluate("""(message) => window.comfyAPI.api.api.dispatchCustomEvent("execution_error", {
        prompt_id: "p", node_id: "1", node_type: "VAELoader", executed: [], exception_message: message,
        exception_type: "FileNotFoundError", traceback: [], current_inputs: {}, current_outputs: {}})""", message)
    page.locator(NOTICE).wait_for(state="visible")
    state = page.evaluate(NOTICE_STATE, 1)
    assert state["kinds"] == "missing" and [link["href"] for link in state["links"]] == [wan21_vae.url]
    assert log.unexpected() == []
