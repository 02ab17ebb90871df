"""Which manifest files a ComfyUI install has, and which loader inputs read which model folders.

The web extension (``web/bm_weights.js``) shows a download link on a loader node whose selected
file is missing. It needs two things, both built here from data only:

* :data:`LOADER_INPUTS`, the one table of node inputs that name a model file (this pack's loaders
  and the native loaders of our workflows) and the ComfyUI folders (``folder_paths`` keys) each
  reads, and
* :func:`weights_status`, the payload of ``GET /beyond_monologue/weights`` (see
  :mod:`.route`; format in docs/DEVELOPING.md): every manifest file with its folder, URL, size,
  licence and sets, whether it is present, and the table above.

Presence is by file name only (the manifest's name or an alternative spelling, case-insensitive,
in any sub-folder), read from a listing function such as ``folder_paths.get_filename_list``, which
covers ComfyUI's alias folders (``models/unet``, ``models/clip``) and ``extra_model_paths.yaml``.
Nothing is hashed or opened: ``python -m beyond_monologue.weights verify`` checks contents.
Nothing here imports ComfyUI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .manifest import Manifest, ModelFile, load_manifest

PAYLOAD_VERSION = 1


@dataclass(frozen=True)
class LoaderInput:
    """A node input whose value is a file name from ComfyUI model folders.

    Attributes:
        node: node type (``class_type``), e.g. ``"VAELoader"``.
        input: the combo input that names the file, e.g. ``"vae_name"``.
        folders: ``folder_paths`` keys the node lists and loads from, in its search order.
        files: manifest ids this input loads, when several loaders share a folder; None = every
            manifest file in ``folders`` that no row names explicitly.
    """

    node: str
    input: str
    folders: tuple[str, ...]
    files: tuple[str, ...] | None = None


# Keep in step with the nodes: tests/comfy/weights/test_weights_presence.py compares every row with the
# node's real combo options.
LOADER_INPUTS = (
    LoaderInput("BMApplyDuplexAdapter", "adapter", ("beyond_monologue", "model_patches")),  # nodes/model.py
    LoaderInput("BMSeparateSpeech", "model_name", ("diffusion_models",), files=("melband_roformer_fp16",)),
    LoaderInput("UNETLoader", "unet_name", ("diffusion_models",)),
    LoaderInput("VAELoader", "vae_name", ("vae",)),
    LoaderInput("CLIPLoader", "clip_name", ("text_encoders",)),
    LoaderInput("AudioEncoderLoader", "audio_encoder_name", ("audio_encoders",)),
    LoaderInput("CLIPVisionLoader", "clip_name", ("clip_vision",)),
    LoaderInput("LoraLoaderModelOnly", "lora_name", ("loras",)),
    LoaderInput("BMEvaluateAvatar", "syncnet_weights", ("bm_evaluation",), files=("syncnet_v2",)),  # nodes/evaluate.py
    LoaderInput("BMEvaluateAvatar", "face_weights", ("bm_evaluation",), files=("facenet_vggface2",)),
)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def basename(name: str) -> str:
    """The file name of a ``folder_paths`` entry (which may carry sub-folders, with / or \\)."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def input_files(row: LoaderInput, manifest: Manifest, inputs: Iterable[LoaderInput] = LOADER_INPUTS) -> list[ModelFile]:
    """The manifest files ``row`` loads (see :attr:`LoaderInput.files`).

    Raises:
        KeyError: ``row.files`` names an id the manifest does not have.
    """
    if row.files is not None:
        return [manifest.files[file_id] for file_id in row.files]
    claimed = {file_id for other in inputs if other.files for file_id in other.files}
    return [f for f in manifest.files.values() if f.folder in row.folders and f.id not in claimed]


def accepted_folders(file: ModelFile, inputs: Iterable[LoaderInput] = LOADER_INPUTS) -> list[str]:
    """Folders a file counts as present in: its own, plus every folder of a loader that also reads its folder.

    E.g. the adapter (manifest folder ``model_patches``) also counts in ``beyond_monologue``, the
    pack's own folder that BMApplyDuplexAdapter lists too.
    """
    return _unique([file.folder, *(f for row in inputs if file.folder in row.folders for f in row.folders)])


def find_file(file: ModelFile, listings: dict[str, list[str]], folders: Iterable[str]) -> list[dict]:
    """Every listed entry that is ``file`` by name: ``[{"folder": key, "name": entry}, ...]``."""
    wanted = {name.lower() for name in file.names()}
    return [{"folder": folder, "name": entry} for folder in folders for entry in listings.get(folder, ())
            if basename(entry).lower() in wanted]


def file_entry(file: ModelFile, manifest: Manifest, found: list[dict]) -> dict:
    """The payload of one manifest file (JSON types only)."""
    return {
        "id": file.id, "folder": file.folder, "filename": file.filename, "alt_filenames": list(file.alt_filenames),
        "url": file.url, "size_bytes": file.size_bytes, "size": file.size_text(), "licence": file.licence,
        "purpose": file.purpose, "sets": [s.name for s in manifest.sets_using(file)],
        "present": bool(found), "found": found,
    }


def weights_status(list_folder: Callable[[str], list[str]], manifest: Manifest | None = None,
                   inputs: Iterable[LoaderInput] = LOADER_INPUTS) -> dict:
    """The ``GET /beyond_monologue/weights`` payload (version 1, docs/DEVELOPING.md).

    Args:
        list_folder: ``folder_key -> file names`` (relative, as ``folder_paths.get_filename_list``
            gives them; ``[]`` for a folder ComfyUI does not know). Called once per folder.
        manifest: default: the pack's manifest.
        inputs: the loader table (default :data:`LOADER_INPUTS`).

    Returns:
        ``{"version": 1, "files": {id: entry}, "folders": {key: {"present": [ids], "missing": [ids]}},
        "inputs": {node: {input: {"folders": [keys], "files": [ids]}}}}``; ``files`` holds every
        manifest file, ``folders`` every manifest and loader folder (a file is listed under its own
        folder), ``missing`` includes unpublished files (``url`` null).
    """
    manifest = manifest or load_manifest()
    inputs = tuple(inputs)
    folders = _unique([*(f.folder for f in manifest.files.values()), *(f for row in inputs for f in row.folders)])
    listings = {folder: list(list_folder(folder)) for folder in folders}
    files = {}
    by_folder = {folder: {"present": [], "missing": []} for folder in folders}
    for file in manifest.files.values():
        entry = file_entry(file, manifest, find_file(file, listings, accepted_folders(file, inputs)))
        files[file.id] = entry
        by_folder[file.folder]["present" if entry["present"] else "missing"].append(file.id)
    table: dict[str, dict] = {}
    for row in inputs:
        table.setdefault(row.node, {})[row.input] = {
            "folders": list(row.folders), "files": [f.id for f in input_files(row, manifest, inputs)]}
    return {"version": PAYLOAD_VERSION, "files": files, "folders": by_folder, "inputs": table}
