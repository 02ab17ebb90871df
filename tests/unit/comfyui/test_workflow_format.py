"""UI-format -> API-format conversion and the UI builder on a small /object_info (the real server's is
checked in tests/server/test_workflows.py, the frontend's own conversion in tests/browser)."""

import pytest

from beyond_monologue.comfyui.workflow_builder import UIGraph
from beyond_monologue.comfyui.workflow_format import (
    WorkflowFormatError,
    get_inputs,
    missing_node_types,
    set_inputs,
    ui_to_api,
)

OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}]}},
                  "input_order": {"required": ["image"]}, "output": ["IMAGE", "MASK"], "output_name": ["IMAGE", "MASK"],
                  "display_name": "Load Image"},
    "LoadAudio": {"input": {"required": {"audio": [["talk.wav"], {"audio_upload": True}]}},
                  "output": ["AUDIO"], "output_name": ["AUDIO"], "display_name": "Load Audio"},
    "Sampler": {"input": {"required": {"image": ["IMAGE", {}], "seed": ["INT", {"default": 0, "control_after_generate": True}],
                                       "steps": ["INT", {"default": 20}], "mode": ["COMBO", {"options": ["x", "y"]}]},
                          "optional": {"audio": ["AUDIO", {}], "note": ["STRING", {"default": ""}]}},
                "input_order": {"required": ["image", "seed", "steps", "mode"], "optional": ["audio", "note"]},
                "output": ["LATENT"], "output_name": ["LATENT"], "display_name": "Sampler"},
    "Number": {"input": {"required": {"value": ["INT", {}]}}, "output": ["INT"], "output_name": ["INT"],
               "display_name": "Int"},
}


def graph() -> dict:
    g = UIGraph(OBJECT_INFO, ("comfyui-beyond-monologue", "0.1.0"), "test")
    image = g.node("LoadImage", (0, 0), {"image": "b.png"})
    audio = g.node("LoadAudio", (0, 400), {"audio": "talk.wav"})
    steps = g.node("Number", (0, 600), {"value": 7})
    sampler = g.node("Sampler", (400, 0), {"seed": 5}, title="My sampler")
    g.link(image, "IMAGE", sampler, "image")
    g.link(audio, 0, sampler, "audio")
    g.link(steps, 0, sampler, "steps")  # a widget driven by another node
    g.note("# read me", (-400, 0), (300, 200), "Notes")
    g.group("All", [image, sampler], "#444")
    return g.to_json()


def test_builder_writes_the_frontends_layout():
    ui = graph()
    sampler = next(n for n in ui["nodes"] if n["type"] == "Sampler")
    assert [i["name"] for i in sampler["inputs"]] == ["image", "audio", "seed", "steps", "mode", "note"]  # sockets first
    assert sampler["widgets_values"] == [5, "fixed", 20, "x", ""]  # control value after the seed; combo: first option
    assert sampler["inputs"][1]["shape"] == 7 and sampler["inputs"][3]["widget"] == {"name": "steps"}
    assert next(n for n in ui["nodes"] if n["type"] == "LoadAudio")["widgets_values"] == ["talk.wav", None, ""]
    assert [link[3:5] for link in ui["links"]] == [[4, 0], [4, 1], [4, 3]]  # target slots index the inputs list
    assert [n["order"] for n in ui["nodes"]] == [0, 1, 2, 4, 3]  # the sampler runs after its inputs
    assert ui["groups"][0]["bounding"][1] < 0 and ui["version"] == 0.4


def test_ui_graph_converts_like_the_frontend():
    assert ui_to_api(graph(), OBJECT_INFO) == {
        "1": {"inputs": {"image": "b.png"}, "class_type": "LoadImage", "_meta": {"title": "Load Image"}},
        "2": {"inputs": {"audio": "talk.wav"}, "class_type": "LoadAudio", "_meta": {"title": "Load Audio"}},
        "3": {"inputs": {"value": 7}, "class_type": "Number", "_meta": {"title": "Int"}},
        "4": {"inputs": {"image": ["1", 0], "audio": ["2", 0], "seed": 5, "steps": ["3", 0], "mode": "x", "note": ""},
              "class_type": "Sampler", "_meta": {"title": "My sampler"}},
    }


def test_unknown_nodes_and_mismatched_widgets_are_refused():
    ui = graph()
    ui["nodes"].append({"id": 9, "type": "SomePackNode", "inputs": [], "widgets_values": []})
    assert missing_node_types(ui, OBJECT_INFO) == ["SomePackNode"]
    with pytest.raises(WorkflowFormatError, match="SomePackNode"):
        ui_to_api(ui, OBJECT_INFO)
    ui = graph()
    next(n for n in ui["nodes"] if n["type"] == "Sampler")["widgets_values"].append("extra")
    with pytest.raises(WorkflowFormatError, match=r"node 4 .*6 values but its widgets take 5"):
        ui_to_api(ui, OBJECT_INFO)


def test_muted_nodes_are_left_out_and_bypassed_ones_refused():
    ui = graph()
    next(n for n in ui["nodes"] if n["type"] == "Sampler")["mode"] = 2
    assert "4" not in ui_to_api(ui, OBJECT_INFO)
    next(n for n in ui["nodes"] if n["type"] == "Sampler")["mode"] = 4
    with pytest.raises(WorkflowFormatError, match="bypassed"):
        ui_to_api(ui, OBJECT_INFO)


def test_set_inputs_patches_a_copy_through_the_map():
    api = ui_to_api(graph(), OBJECT_INFO)
    patched = set_inputs(api, {"seed": "4.seed", "portrait": "1.image"}, {"seed": 9, "portrait": "a.png"})
    assert patched["4"]["inputs"]["seed"] == 9 and patched["1"]["inputs"]["image"] == "a.png"
    assert api["4"]["inputs"]["seed"] == 5  # the original is untouched
    with pytest.raises(KeyError, match="not in the workflow's map"):
        set_inputs(api, {}, {"seed": 1})
    with pytest.raises(KeyError, match="no such node input"):
        set_inputs(api, {"seed": "4.sead"}, {"seed": 1})
    assert get_inputs(patched, {"seed": "4.seed", "portrait": "1.image"}, ["seed", "portrait"]) == {
        "seed": 9, "portrait": "a.png"}
    with pytest.raises(KeyError, match="is a link"):
        get_inputs(api, {"steps": "4.steps"}, ["steps"])
