"""Every node has a help page where ComfyUI's node docs panel looks for it, naming every input and output.

The frontend (comfyui-frontend-package 1.32, ``NodeHelpService.fetchCustomNodeHelp``) fetches
``/extensions/<pack>/docs/<node id>/<locale>.md``, then ``/extensions/<pack>/docs/<node id>.md``;
the server serves the pack's ``WEB_DIRECTORY`` (``./web``) at ``/extensions/<pack>/``, so a page is
``web/docs/<node id>.md`` (tests/server/test_pack_in_server.py fetches them from a running server).
"""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "web" / "docs"


def output_name(output) -> str:
    """An output's name as the page shows it: its id, or its socket type for an unnamed output (``_0_MODEL_``)."""
    return output.io_type if re.fullmatch(r"_\d+_.+_", output.id) else output.id


def test_web_directory_is_web(pack):
    assert Path(pack.WEB_DIRECTORY).name == "web"


def test_every_node_has_a_page_and_every_page_a_node(pack_nodes):
    pages = {path.stem for path in DOCS.glob("*.md")}
    assert pages == set(pack_nodes)


@pytest.mark.parametrize("part", ["inputs", "outputs"])
def test_each_page_names_every_input_and_output_of_its_node(pack_nodes, part):
    missing = []
    for node_id, node in pack_nodes.items():
        schema = node.GET_SCHEMA()
        page = (DOCS / f"{node_id}.md").read_text()
        assert page.startswith(f"# {schema.display_name}\n"), node_id
        names = [item.id for item in schema.inputs] if part == "inputs" else [output_name(o) for o in schema.outputs]
        missing += [f"{node_id}.{name}" for name in names if f"| `{name}` |" not in page]
    assert not missing, f"not in the page's {part} table: {missing}"


def test_pages_have_inputs_and_outputs_sections_with_typical_values(pack_nodes):
    for node_id in pack_nodes:
        page = (DOCS / f"{node_id}.md").read_text()
        assert "## Inputs" in page and "## Outputs" in page, node_id
        assert "| input | type | unit / range | typical | what it does |" in page, node_id


def test_experimental_nodes_say_so_on_their_page(pack_nodes):
    for node_id, node in pack_nodes.items():
        if node.GET_SCHEMA().is_experimental:
            assert "**Experimental" in (DOCS / f"{node_id}.md").read_text(), node_id
