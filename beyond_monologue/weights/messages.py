"""User-facing text about model files: what is missing or wrong, and exactly how to get it.

The nodes' loaders, ``verify`` and ``download`` all build their messages here from the manifest,
so a missing or broken file is always reported with its model set, its ComfyUI folder and its URL.
"""

from __future__ import annotations

from ..errors import BMInputError
from .manifest import Manifest, ModelFile, load_manifest

CLI = "python -m beyond_monologue.weights"


def where_to_get(file: ModelFile, manifest: Manifest) -> str:
    """One sentence: the file's set(s), its URL and size, and the download command (or why there is none)."""
    sets = manifest.sets_using(file)
    set_names = ", ".join(f"'{s.name}'" for s in sets) or "no set"
    if not file.published:
        return (f"It belongs to model set {set_names} and has not been published yet; when it is, put it in "
                f"ComfyUI/models/{file.folder}/{file.filename}.")
    command = f", or in the pack's folder run `{CLI} download --set {sets[0].name}`" if sets else ""
    return (f"Download it from {file.url} into ComfyUI/models/{file.folder}/ (model set {set_names}; "
            f"{file.size_text()}){command}.")


def missing_file_error(input_name: str, folder: str, filename: str, manifest: Manifest | None = None) -> BMInputError:
    """The error a node raises when ``filename`` is not in ComfyUI's ``models/<folder>``.

    Args:
        input_name: the node input that names the file.
        folder: ComfyUI folder (``folder_paths`` key).
        filename: the file name asked for.
        manifest: default: the pack's manifest.
    """
    manifest = manifest or load_manifest()
    problem = f"'{filename}' is not in ComfyUI's models/{folder} folder."
    known = manifest.lookup(folder, filename)
    if known is None:
        fix = (f"put the file into ComfyUI/models/{folder}/ or pick a file that is there; `{CLI} list` shows "
               "every file this pack knows and where it comes from.")
    else:
        fix = where_to_get(known, manifest)
    return BMInputError(input_name, problem, fix)


def bad_file_error(input_name: str, folder: str, filename: str, problem: str,
                   manifest: Manifest | None = None) -> BMInputError:
    """The error a node raises when a file exists but cannot be used (truncated, wrong model family ...).

    Args:
        problem: what is wrong with the file, in one sentence.
    """
    manifest = manifest or load_manifest()
    known = manifest.lookup(folder, filename)
    if known is None:
        fix = f"replace ComfyUI/models/{folder}/{filename} with a correct copy, or pick another file."
    else:
        fix = (f"delete ComfyUI/models/{folder}/{filename} and get it again. {where_to_get(known, manifest)} "
               f"`{CLI} verify --set <set>` (run in the pack's folder) checks it.")
    return BMInputError(f"{input_name} (models/{folder}/{filename})", problem, fix)


def missing_file_message(folder: str, filename: str, manifest: Manifest | None = None) -> str:
    """The text of :func:`missing_file_error` without a node input name (for logs and the CLI)."""
    error = missing_file_error(filename, folder, filename, manifest)
    return f"{error.problem} {error.fix}"


def manual_instructions(files: list[ModelFile]) -> str:
    """A list of files to fetch by hand: for each its ComfyUI folder and name, URL, size and hash."""
    lines = ["Fetch these files by hand and put each into the named folder of your ComfyUI:"]
    for file in files:
        lines.append(f"  models/{file.folder}/{file.filename}")
        lines.append(f"      from   {file.url or 'not published yet'}")
        lines.append(f"      size   {file.size_text()}")
        if file.sha256:
            lines.append(f"      sha256 {file.sha256} ({file.sha256_evidence})")
    return "\n".join(lines)
