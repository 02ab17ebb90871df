"""Which files of a finished prompt are downloaded, and under which local names.

ComfyUI's history lists each output node's files as ``{"filename", "subfolder", "type"}`` entries
under keys such as ``images``, ``audio``, ``video``/``videos`` and ``gifs`` (``server.py``
``/history``; ``comfy_api/latest/_ui.py`` ``SavedResult``). Files of ``type`` ``output`` are the
saved results; ``temp`` ones are previews (downloaded only when asked).

A job's files go to ``<out>/<job name>/<node id>_<name>`` where ``<name>`` is ComfyUI's file name
without its counter (``talk_00007_.flac`` -> ``talk.flac``). The names are the same whichever run
or server counter produced the files, so a job that is downloaded again (after a crash) replaces
its files instead of adding a second copy. Before a file is written, :func:`local_destination`
checks that its path stays inside the job's folder (node ids come from the server's history).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

_COUNTER_RE = re.compile(r"_\d{5,}_(?=\.[^.]+$)|_\d{5,}_$")


def output_files(outputs: dict, include_temp: bool = False) -> list[dict]:
    """The downloadable files of a history ``outputs`` dict, each with its local name.

    Args:
        outputs: ``{node_id: {key: [entry, ...], ...}}`` from ``/history/{prompt_id}``.
        include_temp: also take ``temp`` files (previews).

    Returns:
        ``[{"node", "filename", "subfolder", "type", "local"}, ...]`` sorted by node id, key and
        position; ``local`` is the path relative to the job's folder.
    """
    wanted = ("output", "temp") if include_temp else ("output",)
    found = []
    for node_id in sorted(outputs, key=str):
        for key in sorted(outputs[node_id]):
            entries = outputs[node_id][key]
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("filename"), str) and entry.get("type") in wanted:
                    found.append({"node": str(node_id), "filename": entry["filename"],
                                  "subfolder": entry.get("subfolder", ""), "type": entry["type"]})
    used: set[str] = set()
    for item in found:
        base = _COUNTER_RE.sub("", PurePosixPath(item["filename"].replace("\\", "/")).name)
        item["local"] = _unique(f"{item['node']}_{base}", used)
    return found


def _unique(name: str, used: set[str]) -> str:
    """``name``, or ``stem_2.ext``, ``stem_3.ext`` ... when it is taken."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    candidate, n = name, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}_{n}{dot}{ext}"
    used.add(candidate)
    return candidate


def local_destination(job_dir: str | Path, local: str) -> Path:
    """The path an output's ``local`` name is written to: ``job_dir / local``, resolved.

    Raises:
        ValueError: the path resolves outside ``job_dir`` or to ``job_dir`` itself (a node id or
            file name with ``..``, a separator or an absolute path in it).
    """
    folder = Path(job_dir).resolve()
    dest = (folder / local).resolve()
    if dest == folder or not dest.is_relative_to(folder):
        raise ValueError(f"its local name {local!r} resolves to {dest}, outside the job's folder {folder}")
    return dest
