"""The weights manifest: which model files exist, where each goes in ComfyUI, where it comes from.

The data lives in ``weights_manifest/manifest.json`` (format: ``weights_manifest/manifest.schema.json``,
documented in docs/WEIGHTS.md). Every published file is a file of a Hugging Face model repository
(``repo_id``, ``path_in_repo``, pinned ``revision``); a value the public listing does not give is the
literal ``"unknown"`` in the JSON and None here. The full JSON-schema validation of the pack's own manifest runs in
the tests (tests/unit/weights/test_weights_manifest.py, ``jsonschema`` is a test-only dependency), not at
every ComfyUI start. At load time this module checks, without ``jsonschema``, what a file that reaches
disk or the network depends on (folder, file names, repository, path and revision: the patterns are read
from the schema file itself), and what a schema cannot say (every set names existing files, a set's status matches
its files, a value and its evidence level agree). Nothing here touches the network or ComfyUI.
"""

from __future__ import annotations

import functools
import json
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "weights_manifest"
DEFAULT_MANIFEST = MANIFEST_DIR / "manifest.json"
SCHEMA_PATH = MANIFEST_DIR / "manifest.schema.json"

# ComfyUI's folder_paths keys and the extra sub-folders ComfyUI also searches for them
# (folder_paths.py: "unet" for diffusion_models, "clip" for text_encoders). Downloads go to the key's
# own folder; lookups accept both, and their sub-folders (ModelFile.find_in).
FOLDER_ALIASES = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip")}
UNKNOWN = "unknown"  # the manifest's word for a revision, size or sha256 the public listing does not give
HUB_URL = "https://huggingface.co"
STAGING_PREFIX = ".bm_download"  # download.py's staging folders inside models/<folder>; never a model's home


class ManifestError(ValueError):
    """The manifest file is unreadable, breaks its schema or contradicts itself (the message says where)."""


@dataclass(frozen=True)
class ModelFile:
    """One model file: where it goes, where it comes from and how to check it.

    Attributes:
        id: the manifest key (``wan22_vae`` ...).
        folder: ComfyUI model folder (``folder_paths`` key, e.g. ``"vae"``).
        filename: file name inside that folder; ``alt_filenames`` are accepted spellings.
        repo_id / path_in_repo: the Hugging Face model repository and the file's path in it, or None
            while unpublished.
        revision: the pinned commit (40 hex digits), or None when unknown (downloads use ``main``).
        size_bytes / sha256: expected size and hash, or None when unknown.
        size_evidence / sha256_evidence: ``verified``, ``derived``, ``mirror`` or ``unknown``.
        licence, dtype, purpose, source: descriptive text; ``size_note`` a human size hint.
        smoke: id of the smoke-checkpoint builder, or None.
    """

    id: str
    folder: str
    filename: str
    repo_id: str | None
    path_in_repo: str | None
    revision: str | None
    size_bytes: int | None
    size_evidence: str
    sha256: str | None
    sha256_evidence: str
    licence: str
    dtype: str
    purpose: str
    source: str
    smoke: str | None
    alt_filenames: tuple[str, ...] = ()
    size_note: str = ""

    @property
    def published(self) -> bool:
        """True when the file is on the hub (it has a repository)."""
        return self.repo_id is not None

    @property
    def url(self) -> str | None:
        """Its public address on huggingface.co at the pinned revision (``main`` when unknown), or None.

        The address shown in messages, the web notice and workflow ``models`` entries; downloads go
        through ``huggingface_hub``, which sends them to ``HF_ENDPOINT`` when that is set.
        """
        if self.repo_id is None:
            return None
        return (f"{HUB_URL}/{self.repo_id}/resolve/{self.revision or 'main'}/"
                f"{urllib.parse.quote(self.path_in_repo)}")

    def names(self) -> tuple[str, ...]:
        """The file name and its accepted alternative spellings."""
        return (self.filename, *self.alt_filenames)

    def target_path(self, models_dir: Path) -> Path:
        """Where a download puts the file: ``models_dir/<folder>/<filename>``."""
        return Path(models_dir) / self.folder / self.filename

    def find_in(self, models_dir: Path) -> Path | None:
        """The file inside ``models_dir``, or None; found where ComfyUI would list it.

        Searched in the folder and its aliases (``FOLDER_ALIASES``), each with its sub-folders at any
        depth (as ``folder_paths`` lists them: links followed, ``.git`` skipped; also the download
        staging folders ``.bm_download*``, whose files are not checked yet), by the file name or
        an alternative spelling, case-insensitive. Order: the exact target path, then each folder
        top-down with names sorted, so the answer is the same on every run.
        """
        wanted = {name.lower() for name in self.names()}
        for sub in FOLDER_ALIASES.get(self.folder, (self.folder,)):
            folder = Path(models_dir) / sub
            exact = folder / self.filename
            if exact.is_file():
                return exact
            seen = set()
            for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
                real = os.path.realpath(dirpath)
                dirnames[:] = [] if real in seen else sorted(
                    d for d in dirnames if d != ".git" and not d.startswith(STAGING_PREFIX))
                seen.add(real)  # a linked loop is walked once
                for name in sorted(filenames):
                    if name.lower() in wanted and (path := Path(dirpath) / name).is_file():
                        return path
        return None

    def size_text(self) -> str:
        """Size for messages: exact bytes when known, else the manifest's note, else ``"size unknown"``."""
        if self.size_bytes is not None:
            return f"{self.size_bytes:,} bytes = {self.size_bytes / 2**30:.2f} GiB"
        return self.size_note or "size unknown"


@dataclass(frozen=True)
class SetEntry:
    """A file as part of a set; optional files (``required=False``) may be absent."""

    file: ModelFile
    required: bool


@dataclass(frozen=True)
class ModelSet:
    """A named group of files that together run one pipeline.

    Attributes:
        name: set name (``beyond-monologue-wan22-5b`` ...).
        description: what it is for.
        status: ``ready`` (every required file is published) or ``waiting-for-weights``.
        entries: its files, in manifest order.
    """

    name: str
    description: str
    status: str
    entries: tuple[SetEntry, ...]

    def files(self, required_only: bool = False) -> list[ModelFile]:
        """The set's files (only the required ones when asked)."""
        return [e.file for e in self.entries if e.required or not required_only]


@dataclass(frozen=True)
class Manifest:
    """All model files and sets of one manifest file (see :func:`load_manifest`)."""

    path: Path
    files: dict[str, ModelFile]
    sets: dict[str, ModelSet]

    def get_set(self, name: str) -> ModelSet:
        """The set called ``name``.

        Raises:
            ManifestError: no such set (the message lists the known ones).
        """
        if name not in self.sets:
            raise ManifestError(f"unknown model set {name!r}; known sets: {', '.join(sorted(self.sets))}")
        return self.sets[name]

    def sets_using(self, file: ModelFile) -> list[ModelSet]:
        """Every set that lists ``file``."""
        return [s for s in self.sets.values() if any(e.file.id == file.id for e in s.entries)]

    def lookup(self, folder: str, filename: str) -> ModelFile | None:
        """The manifest file with this ComfyUI folder (or alias) and name (case-insensitive), or None."""
        name = Path(filename).name.lower()
        for file in self.files.values():
            folders = FOLDER_ALIASES.get(file.folder, (file.folder,))
            if folder in folders and name in {n.lower() for n in file.names()}:
                return file
        return None


def _schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _safety_problem(document: dict) -> str | None:
    """The first file field that could send a file or a request elsewhere, checked with the schema's own patterns."""
    defs = _schema()["$defs"]["file"]["properties"]
    folders = set(defs["folder"]["enum"])
    name_pattern = re.compile(defs["filename"]["pattern"])
    hub_patterns = {field: re.compile(defs[field]["pattern"]) for field in ("repo_id", "path_in_repo", "revision")}
    if not isinstance(document.get("files"), dict) or not isinstance(document.get("sets"), dict):
        return "(top level): needs the objects 'files' and 'sets'"
    for file_id, entry in document["files"].items():
        if not isinstance(entry, dict):
            return f"files/{file_id}: is not an object"
        if entry.get("folder") not in folders:
            return f"files/{file_id}/folder: {entry.get('folder')!r} is not one of {sorted(folders)}"
        for i, name in enumerate([entry.get("filename"), *entry.get("alt_filenames", [])]):
            if not isinstance(name, str) or not name_pattern.search(name) or "\n" in name:
                where = "filename" if i == 0 else f"alt_filenames/{i - 1}"
                return f"files/{file_id}/{where}: {name!r} does not match {name_pattern.pattern!r}"
        for field, pattern in hub_patterns.items():
            value = entry.get(field)
            if (value is not None or field == "revision") and (
                    not isinstance(value, str) or not pattern.search(value) or "\n" in value):
                return f"files/{file_id}/{field}: {value!r} does not match {pattern.pattern!r}"
    return None


def validate_document(document: dict, where: str = "manifest") -> None:
    """Check a parsed manifest's safety-relevant fields and its internal consistency (no ``jsonschema``).

    The complete schema check of the shipped manifest is a test; a hand-edited manifest that breaks
    the schema elsewhere fails in :func:`parse_manifest` with a :class:`ManifestError`.

    Raises:
        ManifestError: the first problem found, with its JSON path.
    """
    problem = _safety_problem(document)
    if problem:
        raise ManifestError(f"{where}: {problem}")
    try:
        _check_consistency(document, where)
    except (KeyError, TypeError, AttributeError) as error:
        raise ManifestError(f"{where}: does not follow {SCHEMA_PATH.name} ({type(error).__name__}: {error}); "
                            f"check it with the schema") from None


def _check_consistency(document: dict, where: str) -> None:
    for file_id, entry in document["files"].items():
        for field in ("size_bytes", "sha256"):
            evidence = entry[field.split("_")[0] + "_evidence"]
            if (entry[field] == UNKNOWN) != (evidence == UNKNOWN):
                raise ManifestError(f"{where}: files/{file_id}: {field} is {entry[field]!r} but its evidence is "
                                    f"{evidence!r} (a value needs verified/derived/mirror, 'unknown' needs unknown)")
        if (entry["repo_id"] is None) != (entry["path_in_repo"] is None):
            raise ManifestError(f"{where}: files/{file_id}: repo_id and path_in_repo are both set (published) "
                                "or both null (unpublished)")
    for set_name, entry in document["sets"].items():
        ids = [f["id"] for f in entry["files"]]
        if len(set(ids)) != len(ids):
            raise ManifestError(f"{where}: sets/{set_name}: a file is listed twice")
        for file_id in ids:
            if file_id not in document["files"]:
                raise ManifestError(f"{where}: sets/{set_name}: unknown file id {file_id!r}")
        unpublished = [f["id"] for f in entry["files"]
                       if f["required"] and document["files"][f["id"]]["repo_id"] is None]
        status = "waiting-for-weights" if unpublished else "ready"
        if entry["status"] != status:
            raise ManifestError(f"{where}: sets/{set_name}: status is {entry['status']!r} but should be {status!r} "
                                f"(unpublished required files: {unpublished or 'none'})")


def parse_manifest(document: dict, path: Path) -> Manifest:
    """Build a :class:`Manifest` from a parsed (and validated) document.

    Raises:
        ManifestError: a field is missing or of the wrong kind (the document breaks manifest.schema.json).
    """
    try:
        return _parse(document, path)
    except (KeyError, TypeError, AttributeError) as error:
        raise ManifestError(f"{path}: does not follow {SCHEMA_PATH.name} ({type(error).__name__}: {error}); "
                            f"check it with the schema") from None


def _parse(document: dict, path: Path) -> Manifest:
    files = {}
    for file_id, entry in document["files"].items():
        fields = {key: None if key in ("revision", "size_bytes", "sha256") and value == UNKNOWN else value
                  for key, value in entry.items()}
        fields["alt_filenames"] = tuple(fields.get("alt_filenames", ()))
        files[file_id] = ModelFile(id=file_id, **fields)
    sets = {
        name: ModelSet(name, entry["description"], entry["status"],
                       tuple(SetEntry(files[f["id"]], f["required"]) for f in entry["files"]))
        for name, entry in document["sets"].items()
    }
    return Manifest(Path(path), files, sets)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Load and validate a manifest (default: the pack's ``weights_manifest/manifest.json``, cached).

    Raises:
        ManifestError: unreadable JSON, a schema violation or an inconsistency.
    """
    if path is None:
        return _load_default()
    return _load(Path(path).resolve())


@functools.lru_cache(maxsize=1)
def _load_default() -> Manifest:
    return _load(DEFAULT_MANIFEST)


def _load(path: Path) -> Manifest:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ManifestError(f"cannot read the weights manifest {path}: {error}") from None
    validate_document(document, str(path))
    return parse_manifest(document, path)
