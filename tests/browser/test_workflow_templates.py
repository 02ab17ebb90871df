"""The pack's example workflows in the real ComfyUI frontend: each template the server lists loads
with every node type known (no red nodes), and the frontend's own Queue conversion
(``app.graphToPrompt``) gives exactly the API twin in workflows/api/."""

from __future__ import annotations

import json

import pytest

from beyond_monologue.comfyui import demo
from beyond_monologue.comfyui.comfy_client import ComfyClient
from beyond_monologue.comfyui.comfy_launcher import PACK_DIR_NAME
from beyond_monologue.comfyui.example_workflows import WORKFLOWS_DIR

pytestmark = pytest.mark.timeout(240)  # bounded: a hung server or browser fails, never stalls CI

FRONTEND_ONLY_INPUTS = {"audioUI"}  # Load Audio's player widget: the frontend sends it, ComfyUI ignores it

LOAD_AND_CONVERT = """async ([module, name]) => {
  const workflow = await (await fetch(`/api/workflow_templates/${module}/${name}.json`)).json();
  await window.app.loadGraphData(workflow, true, true, null, {showMissingModelsDialog: false});
  const unknown = window.app.graph._nodes.map(n => n.type).filter(t => !window.LiteGraph.registered_node_types[t]);
  const prompt = await window.app.graphToPrompt();
  return {unknown, nodes: window.app.graph._nodes.length, expected: workflow.nodes.length, output: prompt.output};
}"""


@pytest.fixture(scope="module")
def inputs_on_server(frontend_server, assets):
    """The example inputs in the server's input folder, so the graphs' file widgets find their files."""
    return demo.place_inputs(ComfyClient(frontend_server.url), assets)


def test_every_template_loads_and_converts_to_its_api_twin(comfy_page, frontend_server, inputs_on_server):
    page, log = comfy_page
    listed = ComfyClient(frontend_server.url).get_json("/workflow_templates")[PACK_DIR_NAME]
    assert sorted(listed) == sorted(p.stem for p in WORKFLOWS_DIR.glob("*.json"))  # every template is served
    for name in listed:
        result = page.evaluate(LOAD_AND_CONVERT, [PACK_DIR_NAME, name])
        assert result["unknown"] == [] and result["nodes"] == result["expected"], name
        output = {node_id: {**node, "inputs": {k: v for k, v in node["inputs"].items() if k not in FRONTEND_ONLY_INPUTS}}
                  for node_id, node in result["output"].items()}
        assert output == json.loads((WORKFLOWS_DIR / "api" / f"{name}.json").read_text()), name
    assert log.unexpected() == []
