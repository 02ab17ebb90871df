"""Check the files of a model set inside a ComfyUI models folder.

Per file, in order: present (where ComfyUI lists it: folder aliases, sub-folders and alternative
spellings accepted, see :meth:`.ModelFile.find_in`; the report names the path found), a generated smoke
checkpoint (reported as such), size (when the manifest knows it), safetensors structure (readable
header, file exactly as long as the header says), then SHA-256 (when the manifest knows it; cached by size,
mtime, inode and ctime, see :mod:`.hashing`). A file whose hash is unknown is reported as ``ok-unhashed``:
checked by structure and size only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from .hashing import Sha256Cache, sha256_file
from .manifest import Manifest, ModelFile
from .safetensors_info import SafetensorsError, completeness_problem, read_safetensors_info

SMOKE_MARKER = "bm_smoke"  # safetensors metadata key set on every generated smoke checkpoint


class Status(str, enum.Enum):
    """Outcome of checking one file."""

    OK = "ok"                        # sha256 matches the manifest
    OK_UNHASHED = "ok-unhashed"      # complete; the manifest has no hash to compare
    MISSING = "missing"
    UNPUBLISHED = "unpublished"      # missing, and no download exists yet
    WRONG_SIZE = "wrong-size"
    CORRUPT = "corrupt"              # not a complete safetensors file
    HASH_MISMATCH = "hash-mismatch"
    SMOKE = "smoke"                  # a generated, untrained smoke checkpoint

    @property
    def ok(self) -> bool:
        """True for a usable file."""
        return self in (Status.OK, Status.OK_UNHASHED)


@dataclass(frozen=True)
class FileReport:
    """The check of one file of a set.

    Attributes:
        file: the manifest entry.
        required: whether the set needs it.
        status: the outcome.
        path: where it was found (None when missing).
        detail: one sentence for the user.
    """

    file: ModelFile
    required: bool
    status: Status
    path: Path | None
    detail: str


def models_dir_of(comfyui: str | Path) -> Path:
    """The ``models`` folder of a ComfyUI folder (or of a ``--base-directory``); a ``models`` folder itself is kept."""
    comfyui = Path(comfyui).expanduser()
    if comfyui.name == "models" and not (comfyui / "models").is_dir():
        return comfyui
    return comfyui / "models"


def is_smoke(path: Path) -> bool:
    """True when ``path`` is a generated smoke checkpoint (its safetensors metadata has the smoke marker)."""
    try:
        return SMOKE_MARKER in read_safetensors_info(path).metadata
    except (SafetensorsError, OSError):
        return False


def verify_file(file: ModelFile, models_dir: Path, required: bool = True, cache: Sha256Cache | None = None,
                check_hash: bool = True, progress: bool = False) -> FileReport:
    """Check one manifest file inside ``models_dir``; see the module docstring for the order of checks."""
    path = file.find_in(models_dir)
    if path is None:
        status = Status.MISSING if file.published else Status.UNPUBLISHED
        return FileReport(file, required, status, None, "not found" + ("" if file.published else ", not published yet"))
    is_safetensors = path.suffix.lower() == ".safetensors"
    if is_safetensors and is_smoke(path):
        return FileReport(file, required, Status.SMOKE, path, "generated smoke checkpoint (untrained), not the real model")
    actual = path.stat().st_size
    if file.size_bytes is not None and actual != file.size_bytes:
        kind = "truncated" if actual < file.size_bytes else "too large"
        return FileReport(file, required, Status.WRONG_SIZE, path,
                          f"{kind}: {actual:,} bytes, expected {file.size_bytes:,} ({file.size_evidence})")
    problem = completeness_problem(path) if is_safetensors else None
    if problem:
        return FileReport(file, required, Status.CORRUPT, path, problem)
    if file.sha256 is None or not check_hash:
        reason = "no published sha256" if file.sha256 is None else "hash check skipped"
        known = "size and structure" if file.size_bytes is not None else "structure"
        return FileReport(file, required, Status.OK_UNHASHED, path, f"complete ({known} checked; {reason})")
    digest = sha256_file(path, cache, progress)
    if digest != file.sha256:
        return FileReport(file, required, Status.HASH_MISMATCH, path,
                          f"sha256 {digest} differs from the {file.sha256_evidence} {file.sha256}")
    return FileReport(file, required, Status.OK, path, f"sha256 matches ({file.sha256_evidence})")


def verify_set(manifest: Manifest, set_name: str, models_dir: Path, cache: Sha256Cache | None = None,
               check_hash: bool = True, progress: bool = False) -> list[FileReport]:
    """Check every file of a set (see :func:`verify_file`).

    Raises:
        ManifestError: unknown set name.
    """
    model_set = manifest.get_set(set_name)
    return [verify_file(e.file, models_dir, e.required, cache, check_hash, progress) for e in model_set.entries]


def set_is_usable(reports: list[FileReport]) -> bool:
    """True when every required file of the checked set is usable."""
    return all(r.status.ok for r in reports if r.required)
