"""Write the smoke checkpoints of a model set into a ComfyUI ``models`` folder.

Files get their real names and folders (``models/<folder>/<filename>``), so workflows and loaders
see exactly what they would with real weights. Every file carries safetensors metadata
``bm_smoke`` (it is untrained) plus its builder, seed and dimensions; ``verify`` reports such files
as ``smoke``. Each file is looked up as ``verify`` does (:meth:`.ModelFile.find_in`: alias folders,
sub-folders, alternative spellings). A file found there that is not a smoke checkpoint (a real
model, a partial download, anything else) is never replaced, not even with ``force``; a smoke file
already written by the same builder, seed and format is kept (so a big one is generated once); an
outdated smoke file is rewritten where it was found. Writes go through a temporary file and one
``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ... import __version__
from ..manifest import Manifest, ModelFile
from ..safetensors_info import SafetensorsError, completeness_problem, read_safetensors_info
from ..verify import SMOKE_MARKER, is_smoke
from . import BUILDERS

SMOKE_FORMAT = "4"  # bump when a builder's layout or values change, to regenerate cached files
SMOKE_NOTE = ("untrained: random values (seed {seed}) in the real key layout, dimensions reduced where ComfyUI "
              "allows; for tests and demos only, it renders noise")


@dataclass(frozen=True)
class SmokeResult:
    """What happened to one file: ``written``, ``kept`` (already current), ``not-smoke`` (a file that is
    not a smoke checkpoint is there: left untouched) or ``no-builder``.

    Attributes:
        path: the file written, kept or left untouched (None for ``no-builder``).
        seconds: time spent building and writing (0 unless written).
        size_bytes: file size on disk (0 when there is no file).
    """

    file: ModelFile
    path: Path | None
    outcome: str
    seconds: float = 0.0
    size_bytes: int = 0


def is_current(path: Path, builder_id: str, seed: int) -> bool:
    """True when ``path`` is a complete smoke file from this builder, seed and format."""
    if not path.is_file() or completeness_problem(path):
        return False
    try:
        metadata = read_safetensors_info(path).metadata
    except SafetensorsError:
        return False
    return (SMOKE_MARKER in metadata and metadata.get("bm_smoke_builder") == builder_id
            and metadata.get("bm_smoke_seed") == str(seed) and metadata.get("bm_smoke_format") == SMOKE_FORMAT)


def write_checkpoint(path: Path, state_dict: dict, metadata: dict[str, str]) -> None:
    """Save ``state_dict`` as safetensors with ``metadata`` at ``path`` atomically (temp file + rename)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in state_dict.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def generate_file(file: ModelFile, models_dir: Path, seed: int = 0, force: bool = False) -> SmokeResult:
    """Build and write the smoke checkpoint of one manifest file (see the module docstring for what is kept).

    Args:
        force: rewrite a current smoke file too (never a file that is not a smoke checkpoint).

    Returns:
        The outcome; ``written`` files go where the old smoke file was found, else to
        :meth:`.ModelFile.target_path`.

    Raises:
        OSError: the folder or file cannot be written.
    """
    builder = BUILDERS.get(file.smoke or "")
    if builder is None:
        return SmokeResult(file, None, "no-builder")
    found = file.find_in(models_dir)
    if found is not None and not is_smoke(found):
        return SmokeResult(file, found, "not-smoke", 0.0, found.stat().st_size)
    path = found or file.target_path(models_dir)
    if not force and is_current(path, file.smoke, seed):
        return SmokeResult(file, path, "kept", 0.0, path.stat().st_size)
    start = time.perf_counter()
    state_dict, extra = builder(seed)
    metadata = {**extra, SMOKE_MARKER: SMOKE_NOTE.format(seed=seed), "bm_smoke_builder": file.smoke,
                "bm_smoke_seed": str(seed), "bm_smoke_format": SMOKE_FORMAT,
                "bm_generator": f"comfyui-beyond-monologue {__version__}"}
    write_checkpoint(path, state_dict, metadata)
    return SmokeResult(file, path, "written", time.perf_counter() - start, path.stat().st_size)


def generate_set(manifest: Manifest, set_name: str, models_dir: Path, seed: int = 0, force: bool = False,
                 on_result: Callable[[SmokeResult], None] | None = None) -> list[SmokeResult]:
    """Write the smoke checkpoint of every file of a set that has a builder (optional files included).

    Raises:
        ManifestError: unknown set.
    """
    results = []
    for entry in manifest.get_set(set_name).entries:
        result = generate_file(entry.file, Path(models_dir), seed, force)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
