"""Write UI-format ComfyUI workflows from code: nodes, links, groups and notes, laid out for a creator.

The graph is what the frontend (comfyui-frontend-package 1.32) itself saves: each node lists its
sockets first and then one input per widget (``"widget": {"name": ...}``), ``widgets_values`` is
positional in ``/object_info`` order with the frontend's extra values (see
:mod:`.workflow_format`), ``properties`` carry ``cnr_id``/``ver`` (so ComfyUI-Manager can offer the
pack when it is missing) and, on loaders, ``models`` entries (name, URL, folder, hash) that the
frontend's missing-models dialog reads. Node and link ids are small integers in creation order, so
the API twin (:func:`.workflow_format.ui_to_api`) uses the same ids.
"""

from __future__ import annotations

import uuid

from .workflow_format import extra_values, is_widget, node_inputs

CORE_PACK = ("comfy-core", "0.3.75")
NOTE_COLOURS = {"color": "#432", "bgcolor": "#653"}
GROUP_PADDING = 20
GROUP_TITLE_HEIGHT = 40
NODE_TITLE_HEIGHT = 30  # drawn above a node's pos
ROW_HEIGHT = 24  # height the frontend gives one socket row or one widget
MULTILINE_HEIGHT = 96
# image preview, audio player, the pack's talk/listen timeline (web/bm_timeline.js)
EXTRA_HEIGHT = {"LoadImage": 260, "LoadAudio": 60, "BMSplitConversation": 110, "BMDualStreamEncode": 110}
FRONTEND_VERSION = "1.32.9"


def _combo_options(spec: list) -> list:
    """The options of a combo input spec (V1: the type is the list; V3: ``COMBO`` with ``options``)."""
    if isinstance(spec[0], list):
        return spec[0]
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return list(options.get("options", [])) if spec[0] == "COMBO" else []


class UINode:
    """One node of a :class:`UIGraph` (use :meth:`UIGraph.node`); ``id`` is its node id in both formats."""

    def __init__(self, node_id: int, class_type: str, info: dict | None):
        self.id, self.type, self.info = node_id, class_type, info
        self.widgets: dict = {}
        self.links_in: dict[str, int] = {}
        self.links_out: dict[int, list[int]] = {}
        self.data: dict = {}

    def output_slot(self, output: str | int) -> int:
        """Index of an output given by its name (``object_info`` ``output_name``) or index."""
        if isinstance(output, int):
            return output
        names = self.info.get("output_name") or self.info["output"]
        if output not in names:
            raise KeyError(f"{self.type} has no output {output!r} (outputs: {', '.join(names)})")
        return list(names).index(output)

    def input_slots(self) -> list[tuple[str, list, bool]]:
        """Inputs in the frontend's slot order: sockets (declared order), then widgets."""
        entries = node_inputs(self.info)
        return [e for e in entries if not is_widget(e[1])] + [e for e in entries if is_widget(e[1])]


class UIGraph:
    """A UI-format workflow under construction.

    Args:
        object_info: ``GET /object_info`` of a server with the pack (input order, outputs, defaults).
        pack: ``(cnr_id, version)`` written on the pack's own nodes (``BM*``).
        name: workflow name; the workflow id is derived from it, so a rebuild writes the same file.
    """

    def __init__(self, object_info: dict, pack: tuple[str, str], name: str):
        self.object_info, self.pack, self.name = object_info, pack, name
        self.nodes: list[UINode] = []
        self.links: list[list] = []
        self.groups: list[dict] = []

    def node(self, class_type: str, pos: tuple[float, float], widgets: dict | None = None, title: str | None = None,
             size: tuple[float, float] | None = None, models: list[dict] | None = None, colour: dict | None = None) -> UINode:
        """Add a node at ``pos`` with widget values by name (others take their ``/object_info`` default).

        ``models``: ``properties.models`` entries ``{"name", "url", "directory"[, "hash", "hash_type"]}``.

        Raises:
            KeyError: the server has no such node type, or a widget name it does not declare.
        """
        if class_type not in self.object_info:
            raise KeyError(f"node type {class_type!r} is not in /object_info")
        node = UINode(len(self.nodes) + 1, class_type, self.object_info[class_type])
        declared = {name for name, spec, _ in node.input_slots() if is_widget(spec)}
        unknown = set(widgets or {}) - declared
        if unknown:
            raise KeyError(f"{class_type} has no widget(s) {', '.join(sorted(unknown))}")
        node.widgets = dict(widgets or {})
        node.data = {"pos": list(pos), "size": list(size) if size else None, "title": title, "models": models,
                     "colour": colour}
        self.nodes.append(node)
        return node

    def note(self, text: str, pos: tuple[float, float], size: tuple[float, float], title: str) -> None:
        """Add a MarkdownNote (frontend-only: it is not part of the API prompt)."""
        node = UINode(len(self.nodes) + 1, "MarkdownNote", None)
        node.data = {"pos": list(pos), "size": list(size), "title": title, "text": text}
        self.nodes.append(node)

    def link(self, source: UINode, output: str | int, target: UINode, input_name: str) -> None:
        """Connect ``source``'s output (name or index) to ``target``'s input (a socket or a widget)."""
        slot = source.output_slot(output)
        names = [name for name, _, _ in target.input_slots()]
        if input_name not in names:
            raise KeyError(f"{target.type} has no input {input_name!r}")
        link_id = len(self.links) + 1
        self.links.append([link_id, source.id, slot, target.id, names.index(input_name),
                           source.info["output"][slot]])
        target.links_in[input_name] = link_id
        source.links_out.setdefault(slot, []).append(link_id)

    def group(self, title: str, members: list[UINode], colour: str) -> None:
        """A titled box around ``members`` (their positions and sizes plus padding)."""
        boxes = [(*n.data["pos"], *self._size(n)) for n in members]
        left = min(x for x, _, _, _ in boxes) - GROUP_PADDING
        top = min(y for _, y, _, _ in boxes) - NODE_TITLE_HEIGHT - GROUP_PADDING - GROUP_TITLE_HEIGHT
        right = max(x + w for x, _, w, _ in boxes) + GROUP_PADDING
        bottom = max(y + h for _, y, _, h in boxes) + GROUP_PADDING
        self.groups.append({"id": len(self.groups) + 1, "title": title, "bounding": [left, top, right - left, bottom - top],
                            "color": colour, "font_size": 24, "flags": {}})

    # -- serialisation ----------------------------------------------------------------------------
    def _size(self, node: UINode) -> list[float]:
        if node.data.get("size"):
            return node.data["size"]
        slots = node.input_slots()
        sockets = sum(1 for _, spec, _ in slots if not is_widget(spec))
        outputs = len(node.info["output"])
        widget_rows = sum(MULTILINE_HEIGHT if (spec[1] if len(spec) > 1 else {}).get("multiline") else ROW_HEIGHT
                          for _, spec, _ in slots if is_widget(spec))
        return [320, 36 + ROW_HEIGHT * max(sockets, outputs) + widget_rows + EXTRA_HEIGHT.get(node.type, 0)]

    def _widget_values(self, node: UINode) -> list:
        values = []
        for name, spec, _ in node.input_slots():
            if not is_widget(spec):
                continue
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if name in node.widgets:
                values.append(node.widgets[name])
            elif "default" in options:
                values.append(options["default"])
            elif _combo_options(spec):
                values.append(_combo_options(spec)[0])  # what the frontend shows for a combo without a default
            else:
                raise KeyError(f"{node.type} widget {name!r} has no default: give its value")
            values.extend(extra_values(spec))
        return values

    def _node_json(self, node: UINode, order: int) -> dict:
        if node.type == "MarkdownNote":
            return {"id": node.id, "type": "MarkdownNote", "pos": node.data["pos"], "size": node.data["size"],
                    "flags": {}, "order": order, "mode": 0, "inputs": [], "outputs": [], "title": node.data["title"],
                    "properties": {}, "widgets_values": [node.data["text"]], **NOTE_COLOURS}
        inputs = []
        for name, spec, optional in node.input_slots():
            entry = {"name": name, "type": "COMBO" if isinstance(spec[0], list) else spec[0],
                     "link": node.links_in.get(name)}
            if is_widget(spec):
                entry["widget"] = {"name": name}
            elif optional:
                entry["shape"] = 7  # the frontend's hollow dot for an optional socket
            inputs.append(entry)
        names = node.info.get("output_name") or node.info["output"]
        outputs = [{"name": name, "type": kind, "links": node.links_out.get(slot) or None}
                   for slot, (name, kind) in enumerate(zip(names, node.info["output"], strict=True))]
        cnr, version = self.pack if node.type.startswith("BM") else CORE_PACK
        properties = {"cnr_id": cnr, "ver": version, "Node name for S&R": node.type}
        if node.data.get("models"):
            properties["models"] = node.data["models"]
        out = {"id": node.id, "type": node.type, "pos": node.data["pos"], "size": self._size(node), "flags": {},
               "order": order, "mode": 0, "inputs": inputs, "outputs": outputs}
        if node.data.get("title"):
            out["title"] = node.data["title"]
        out["properties"] = properties
        out["widgets_values"] = self._widget_values(node)
        if node.data.get("colour"):
            out.update(node.data["colour"])
        return out

    def _execution_order(self) -> dict[int, int]:
        """Each node's position in a topological order (the frontend's ``order`` field)."""
        parents = {n.id: set() for n in self.nodes}
        for _, source, _, target, _, _ in self.links:
            parents[target].add(source)
        order: dict[int, int] = {}
        while len(order) < len(self.nodes):
            ready = sorted(nid for nid, ps in parents.items() if nid not in order and ps <= set(order))
            if not ready:
                raise ValueError("the graph has a cycle")
            for nid in ready:
                order[nid] = len(order)
        return order

    def to_json(self, view: tuple[float, float, float] = (0.5, 0.0, 0.0)) -> dict:
        """The UI-format workflow (version 0.4). ``view``: the canvas scale and offset when it opens."""
        order = self._execution_order()
        scale, dx, dy = view
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-beyond-monologue/workflows/{self.name}")),
            "revision": 0, "last_node_id": len(self.nodes), "last_link_id": len(self.links),
            "nodes": [self._node_json(n, order[n.id]) for n in self.nodes],
            "links": self.links, "groups": self.groups, "config": {},
            "extra": {"ds": {"scale": scale, "offset": [dx, dy]}, "frontendVersion": FRONTEND_VERSION},
            "version": 0.4,
        }
