"""ComfyUI's two workflow formats: read a UI-format graph as the API-format prompt ComfyUI runs.

UI format (what the frontend saves and the template browser opens, version 0.4): ``nodes[]``, each
with ``inputs`` (``{"name", "type", "link", "widget"?}``: sockets first, then one entry per widget),
``outputs`` and *positional* ``widgets_values``; ``links[]`` as ``[id, from_node, from_slot, to_node,
to_slot, type]``. API format (what ``POST /prompt`` takes): ``{"<id>": {"class_type", "inputs":
{name: value | [from_id, from_slot]}}}``.

The conversion follows the frontend's ``graphToPrompt`` (comfyui-frontend-package 1.32, checked
in a browser test): widget values are matched to the node's widget inputs in ``/object_info``
order; an input with ``control_after_generate`` is followed by the frontend's control value
(``fixed``/``randomize``...), an ``image_upload`` combo by its upload button's value and an
``audio_upload`` combo by its player's and upload button's values, none of which ComfyUI reads; a
widget that is linked takes the link instead of its value; frontend-only nodes (notes) and muted
nodes are left out. Nothing here imports ComfyUI: the node definitions come from ``GET
/object_info``.
"""

from __future__ import annotations

FRONTEND_ONLY_NODES = frozenset({"Note", "MarkdownNote"})  # drawn by the frontend, never sent to the server
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
# Values the frontend stores after a widget in widgets_values, per flag of the widget's /object_info options
# (as a fresh node of frontend 1.32 saves them: the control mode, the upload button, the audio player).
FRONTEND_EXTRA_VALUES = {"control_after_generate": ("fixed",), "image_upload": ("image",), "audio_upload": (None, "")}
MODE_ALWAYS, MODE_NEVER, MODE_BYPASS = 0, 2, 4


class WorkflowFormatError(ValueError):
    """A UI-format workflow that cannot be read as a prompt (the message names the node and what is wrong)."""


def is_widget(spec: list) -> bool:
    """True when an ``/object_info`` input spec ``[type_or_options, {options}]`` is drawn as a widget."""
    kind = spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput", False)


def extra_values(spec: list) -> tuple:
    """The frontend-only values that follow this widget's value in ``widgets_values`` (defaults, in order)."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return tuple(value for flag, values in FRONTEND_EXTRA_VALUES.items() if options.get(flag) for value in values)


def node_inputs(node_info: dict) -> list[tuple[str, list, bool]]:
    """``(name, spec, optional)`` of every input of one ``/object_info`` entry, in the node's declared order."""
    declared = node_info.get("input", {})
    order = node_info.get("input_order") or {section: list(declared.get(section, {})) for section in ("required", "optional")}
    return [(name, declared[section][name], section == "optional")
            for section in ("required", "optional") for name in order.get(section, []) if name in declared.get(section, {})]


def widget_inputs(node_info: dict) -> list[tuple[str, list]]:
    """``(name, spec)`` of the node's widgets, in the order of its ``widgets_values``."""
    return [(name, spec) for name, spec, _ in node_inputs(node_info) if is_widget(spec)]


def missing_node_types(workflow: dict, object_info: dict) -> list[str]:
    """Node types of a UI-format workflow that the server does not have (the frontend's red nodes), sorted."""
    types = {node["type"] for node in workflow.get("nodes", [])}
    return sorted(t for t in types if t not in object_info and t not in FRONTEND_ONLY_NODES)


def _widget_values(node: dict, node_info: dict) -> dict:
    values = list(node.get("widgets_values") or [])
    out, position = {}, 0
    for name, spec in widget_inputs(node_info):
        if position >= len(values):
            raise WorkflowFormatError(f"node {node['id']} ({node['type']}): widgets_values has {len(values)} values, "
                                      f"none left for widget {name!r}")
        out[name] = values[position]
        position += 1 + len(extra_values(spec))
    if position != len(values):
        raise WorkflowFormatError(f"node {node['id']} ({node['type']}): widgets_values has {len(values)} values but its "
                                  f"widgets take {position}: the workflow was saved for another version of the node")
    return out


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """The API-format prompt of a UI-format workflow, as the frontend's Queue button sends it.

    Args:
        workflow: UI-format workflow (``nodes``, ``links``, ...).
        object_info: ``GET /object_info`` of the server that will run it.

    Returns:
        ``{"<node id>": {"class_type", "inputs", "_meta": {"title"}}}`` without notes and muted nodes.

    Raises:
        WorkflowFormatError: unknown node types, a bypassed node (not supported), a link to a node
            that is left out, or ``widgets_values`` that do not fit the node's widgets.
    """
    missing = missing_node_types(workflow, object_info)
    if missing:
        raise WorkflowFormatError(f"node types not on this server: {', '.join(missing)} (install their node packs)")
    nodes = {node["id"]: node for node in workflow.get("nodes", [])}
    sources = {link[0]: (link[1], link[2]) for link in workflow.get("links", [])}
    kept = {nid for nid, node in nodes.items() if node["type"] not in FRONTEND_ONLY_NODES and node.get("mode", 0) != MODE_NEVER}
    prompt = {}
    for nid in sorted(kept):
        node = nodes[nid]
        if node.get("mode", 0) == MODE_BYPASS:
            raise WorkflowFormatError(f"node {nid} ({node['type']}) is bypassed; bypassed nodes are not supported here")
        info = object_info[node["type"]]
        inputs = _widget_values(node, info)
        for entry in node.get("inputs", []):
            link = entry.get("link")
            if link is None:
                continue
            source, slot = sources[link]
            if source not in kept:
                raise WorkflowFormatError(f"node {nid} ({node['type']}) input {entry['name']!r} comes from node {source}, "
                                          "which is muted or frontend-only")
            inputs[entry["name"]] = [str(source), slot]
        title = node.get("title") or info.get("display_name") or node["type"]
        prompt[str(nid)] = {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}
    return prompt


def set_inputs(prompt: dict, mapping: dict[str, str], values: dict) -> dict:
    """A copy of an API-format prompt with ``values`` set through a batch map (column -> ``"node_id.input"``).

    The same addressing as the batch client's ``--map`` (docs/BATCH.md): node id, then the input's
    name (which may itself contain dots).

    Raises:
        KeyError: a value whose column the map does not name, or a target node or input the prompt lacks.
    """
    patched = {node_id: {**node, "inputs": dict(node["inputs"])} for node_id, node in prompt.items()}
    for column, value in values.items():
        if column not in mapping:
            raise KeyError(f"{column!r} is not in the workflow's map (columns: {', '.join(mapping)})")
        node_id, input_name = mapping[column].split(".", 1)
        if node_id not in patched or input_name not in patched[node_id]["inputs"]:
            raise KeyError(f"{column!r} -> {mapping[column]}: the workflow has no such node input")
        patched[node_id]["inputs"][input_name] = value
    return patched


def get_inputs(prompt: dict, mapping: dict[str, str], columns: list[str]) -> dict:
    """The values of ``columns`` (batch-map names) in an API-format prompt.

    Raises:
        KeyError: a column the map does not name, or a target that is a link, not a value.
    """
    values = {}
    for column in columns:
        node_id, input_name = mapping[column].split(".", 1)
        value = prompt[node_id]["inputs"][input_name]
        if isinstance(value, list):
            raise KeyError(f"{column!r} -> {mapping[column]} is a link, not a value")
        values[column] = value
    return values
