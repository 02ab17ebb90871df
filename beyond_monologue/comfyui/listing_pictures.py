"""Pictures of the pack's listing, drawn by the pack's own code with Pillow (ComfyUI's own image library).

* ``workflows/<name>.jpg``: the template browser's thumbnail of each example workflow (ComfyUI serves
  the pack's ``workflows/`` folder at ``/api/workflow_templates/<pack>/`` and the frontend shows
  ``<name>.jpg`` next to ``<name>.json``). It is a drawing of the workflow itself: its groups (the
  stages: models, audio, avatar A/B, output ...) in their colours, every node at its place with its
  title, and the links between them, read from the UI-format JSON.
* ``docs/images/icon.png``: the registry icon (``[tool.comfy] Icon``): two avatars, one talking and
  one listening, joined by the two audio streams.

Regenerate after changing a workflow: ``python -m beyond_monologue.comfyui.listing_pictures``
(tests/unit/comfyui/test_listing_pictures.py fails while a picture is missing or out of date).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .comfy_launcher import PACK_ROOT

WORKFLOWS_DIR = PACK_ROOT / "workflows"
ICON_PATH = PACK_ROOT / "docs" / "images" / "icon.png"
THUMBNAIL_SIZE = (640, 400)  # pixels, the 16:10 of ComfyUI's template cards
HEADER_PX = 56
BACKGROUND = (32, 32, 36)
NODE_FILL = (53, 53, 58)
NODE_TITLE = (70, 70, 78)
TEXT = (230, 230, 230)
LINK = (150, 170, 200)
BM_TITLE = (90, 60, 130)  # the pack's own nodes stand out from ComfyUI's
NOTE_TYPES = {"MarkdownNote", "Note"}


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no system font needed


def _rgb(colour: str | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
    if not colour or not colour.startswith("#"):
        return default
    digits = colour[1:]
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return tuple(int(digits[i:i + 2], 16) for i in (0, 2, 4))


def _fit(text: str, font: ImageFont.ImageFont, width: float) -> str:
    """``text`` shortened with an ellipsis to at most ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…" if text else ""


def workflow_thumbnail(workflow: dict, title: str) -> Image.Image:
    """The thumbnail of a UI-format workflow (version 0.4): groups, nodes, links and a title band.

    Args:
        workflow: the parsed ``workflows/<name>.json`` (``nodes`` with ``pos``/``size``, ``links``, ``groups``).
        title: the text of the title band (e.g. "dyadic conversation").

    Returns:
        RGB image of :data:`THUMBNAIL_SIZE`.
    """
    width, height = THUMBNAIL_SIZE
    image = Image.new("RGB", THUMBNAIL_SIZE, BACKGROUND)
    draw = ImageDraw.Draw(image, "RGBA")
    draw.text((16, HEADER_PX // 2), title, fill=TEXT, font=_font(28), anchor="lm")

    nodes = [n for n in workflow["nodes"] if n["type"] not in NOTE_TYPES]
    boxes = [(n["pos"][0], n["pos"][1], n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1]) for n in nodes]
    boxes += [(g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2], g["bounding"][1] + g["bounding"][3])
              for g in workflow.get("groups", [])]
    left, top = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, bottom = max(b[2] for b in boxes), max(b[3] for b in boxes)
    margin = 12
    scale = min((width - 2 * margin) / (right - left), (height - HEADER_PX - margin) / (bottom - top))
    offset = ((width - (right - left) * scale) / 2, HEADER_PX + (height - HEADER_PX - margin - (bottom - top) * scale) / 2)

    def at(x: float, y: float) -> tuple[float, float]:
        return offset[0] + (x - left) * scale, offset[1] + (y - top) * scale

    label = _font(max(8, round(22 * scale)))
    for group in workflow.get("groups", []):
        x, y, w, h = group["bounding"]
        colour = _rgb(group.get("color"), (90, 90, 90))
        draw.rectangle([at(x, y), at(x + w, y + h)], fill=(*colour, 70), outline=(*colour, 200))
        draw.text(at(x + 8, y + 6), _fit(group["title"], label, w * scale - 10), fill=TEXT, font=label)

    by_id = {n["id"]: n for n in nodes}
    for link in workflow.get("links", []):
        _, source, out_slot, target, in_slot, _ = link[:6]
        if source in by_id and target in by_id:
            s, t = by_id[source], by_id[target]
            start = at(s["pos"][0] + s["size"][0], s["pos"][1] + 40 + 20 * out_slot)
            end = at(t["pos"][0], t["pos"][1] + 40 + 20 * in_slot)
            middle = (start[0] + end[0]) / 2
            draw.line([start, (middle, start[1]), (middle, end[1]), end], fill=LINK, width=1)

    title_px = max(6, round(30 * scale))
    for node in nodes:
        x0, y0 = at(*node["pos"])
        x1, y1 = at(node["pos"][0] + node["size"][0], node["pos"][1] + node["size"][1])
        head = BM_TITLE if node["type"].startswith("BM") else _rgb(node.get("color"), NODE_TITLE)
        draw.rounded_rectangle([x0, y0 - title_px, x1, y1], radius=3, fill=NODE_FILL, outline=(0, 0, 0))
        draw.rounded_rectangle([x0, y0 - title_px, x1, y0], radius=3, fill=head)
        draw.text((x0 + 3, y0 - title_px / 2), _fit(node.get("title") or node["type"], label, x1 - x0 - 6),
                  fill=TEXT, font=label, anchor="lm")
    return image


def icon(size: int = 256) -> Image.Image:
    """The registry icon: a talking avatar (left, lips open, speech waves) and a listening one (right).

    Returns:
        RGB image ``size`` x ``size``.
    """
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    u = size / 256
    for cx, colour in ((70, (161, 48, 155)), (186, (136, 136, 170))):
        draw.ellipse([(cx - 38) * u, 60 * u, (cx + 38) * u, 136 * u], fill=colour)  # head
        draw.pieslice([(cx - 58) * u, 146 * u, (cx + 58) * u, 262 * u], 180, 360, fill=colour)  # shoulders
    draw.ellipse([62 * u, 112 * u, 80 * u, 124 * u], fill=BACKGROUND)  # the talking avatar's open mouth
    draw.line([178 * u, 118 * u, 194 * u, 118 * u], fill=BACKGROUND, width=max(1, round(3 * u)))  # closed mouth
    for i, radius in enumerate((14, 26, 38)):  # talk stream: waves leaving the speaker
        box = [(100 - radius) * u, (98 - radius) * u, (100 + radius) * u, (98 + radius) * u]
        draw.arc(box, -40, 40, fill=(230, 230, 230), width=max(1, round((4 - i) * u)))
    draw.text((size / 2, 22 * u), "talk  |  listen", fill=TEXT, font=_font(round(20 * u)), anchor="mm")
    return image


def thumbnail_jpeg(workflow_path: Path) -> bytes:
    """The JPEG bytes of a workflow file's thumbnail (title: the file name with spaces)."""
    image = workflow_thumbnail(json.loads(workflow_path.read_text()), workflow_path.stem.replace("_", " "))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def write_all(workflows_dir: Path = WORKFLOWS_DIR, icon_path: Path = ICON_PATH) -> list[Path]:
    """Write ``<name>.jpg`` next to every ``workflows/*.json`` and the icon; returns the files written."""
    written = []
    for path in sorted(workflows_dir.glob("*.json")):
        target = path.with_suffix(".jpg")
        target.write_bytes(thumbnail_jpeg(path))
        written.append(target)
    icon_path.parent.mkdir(parents=True, exist_ok=True)
    icon().save(icon_path, format="PNG")
    return [*written, icon_path]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    for path in write_all():
        print(path.relative_to(PACK_ROOT))


if __name__ == "__main__":
    main()
