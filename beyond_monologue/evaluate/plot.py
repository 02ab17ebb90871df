"""The metrics over time as one image (drawn with Pillow; the pack does not depend on matplotlib).

Three panels on a shared time axis in seconds: per-second SyncNet confidence (the public
"framewise conf", averaged per second), per-second head motion (face sizes per second), and the
talk/listen voice activity (0..1). The title line carries LSE-C, LSE-D, offset and CSIM.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
AXIS = (90, 90, 90)
COLOURS = {"sync_confidence": (31, 119, 180), "head_motion": (214, 39, 40),
           "talk_activity": (44, 160, 44), "listen_activity": (255, 127, 14)}
PANELS = (("sync confidence (median - distance)", ("sync_confidence",)), ("head motion (face sizes/s)", ("head_motion",)),
          ("talk / listen activity", ("talk_activity", "listen_activity")))


def _title(report: dict) -> str:
    parts = []
    sync = report.get("lip_sync", {})
    if "lse_c" in sync:
        parts.append(f"LSE-C {sync['lse_c']:.2f}  LSE-D {sync['lse_d']:.2f}  offset {sync['offset_frames']}")
    else:
        parts.append("lip sync unavailable")
    identity = report.get("identity", {})
    parts.append(f"CSIM {identity['csim_mean']:.3f} (min {identity['csim_min']:.3f})" if "csim_mean" in identity
                 else "CSIM unavailable")
    return "   ".join(parts)


def metrics_plot(report: dict, width: int = 960, height: int = 600) -> torch.Tensor:
    """``report`` of :func:`.avatar_metrics.evaluate_avatar` -> ``[1, height, width, 3]`` float32 RGB 0..1
    (a ComfyUI IMAGE). Series missing from the report leave their panel empty with a note."""
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((10, 8), _title(report), fill=(0, 0, 0), font=font)
    series = report.get("series", {})
    seconds = series.get("seconds", [0])
    left, right, top = 60, width - 20, 36
    panel_h = (height - top - 30) // len(PANELS)
    span = max(1, len(seconds))
    for p, (label, keys) in enumerate(PANELS):
        y0 = top + p * panel_h
        y1 = y0 + panel_h - 22
        draw.rectangle((left, y0, right, y1), outline=AXIS)
        draw.text((left + 4, y0 + 2), label, fill=AXIS, font=font)
        values = [np.array([np.nan if v is None else v for v in series[k]], dtype=np.float64)
                  for k in keys if k in series]
        if not values or all(np.isnan(v).all() for v in values):
            draw.text((left + 4, y0 + 16), "unavailable", fill=AXIS, font=font)
            continue
        low = min(0.0, min(np.nanmin(v) for v in values if not np.isnan(v).all()))
        high = max(np.nanmax(v) for v in values if not np.isnan(v).all())
        high = high if high > low else low + 1.0
        draw.text((4, y0), f"{high:.2g}", fill=AXIS, font=font)
        draw.text((4, y1 - 10), f"{low:.2g}", fill=AXIS, font=font)
        for key in keys:
            if key not in series:
                continue
            points = [(left + (i + 0.5) * (right - left) / span, y1 - (v - low) / (high - low) * (y1 - y0 - 16))
                      for i, v in enumerate(series[key]) if v is not None]
            colour = COLOURS[key]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
        if len(keys) > 1:
            for k, key in enumerate(keys):
                draw.text((right - 150, y0 + 2 + 12 * k), key.replace("_activity", ""), fill=COLOURS[key], font=font)
    step = max(1, span // 10)
    for i in range(0, span, step):
        x = left + (i + 0.5) * (right - left) / span
        draw.text((x - 4, height - 22), f"{seconds[i]}", fill=AXIS, font=font)
    draw.text((right - 60, height - 22), "seconds", fill=AXIS, font=font)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]
