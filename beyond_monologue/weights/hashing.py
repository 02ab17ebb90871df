"""SHA-256 of large files with a progress bar, cached by (size, mtime) so a second check is instant."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

CHUNK_BYTES = 8 * 2**20


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/comfyui-beyond-monologue/sha256.json`` (``~/.cache/...`` when unset)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "comfyui-beyond-monologue" / "sha256.json"


class Sha256Cache:
    """Digests of files keyed by absolute path, valid while the file's size and mtime (ns) are unchanged.

    Args:
        path: JSON file holding the cache (created on :meth:`save`); None keeps it in memory only.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._entries: dict[str, dict] = {}
        if self.path and self.path.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(self.path.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded

    @staticmethod
    def _stamp(file: Path) -> tuple[str, int, int]:
        stat = file.stat()
        return str(file.resolve()), stat.st_size, stat.st_mtime_ns

    def get(self, file: Path) -> str | None:
        """The cached digest of ``file``, or None when absent or stale."""
        key, size, mtime = self._stamp(file)
        entry = self._entries.get(key)
        if entry and entry.get("size") == size and entry.get("mtime_ns") == mtime:
            return entry.get("sha256")
        return None

    def put(self, file: Path, digest: str) -> None:
        """Remember ``digest`` for the file as it is now."""
        key, size, mtime = self._stamp(file)
        self._entries[key] = {"size": size, "mtime_ns": mtime, "sha256": digest}

    def save(self) -> None:
        """Write the cache atomically (no-op for an in-memory cache; a read-only place is ignored)."""
        if self.path is None:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".sha256.", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                json.dump(self._entries, out, indent=1, sort_keys=True)
            os.replace(tmp, self.path)


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0):
    """A tqdm byte counter on stderr (a no-op object when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, file=sys.stderr, leave=False)


def hash_stream_into(digest, path: Path, progress: bool, desc: str | None = None) -> None:
    """Feed the whole file at ``path`` into ``digest`` (a hashlib object), with a progress bar."""
    with open(path, "rb") as src, progress_bar(path.stat().st_size, desc or path.name, progress) as bar:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
            bar.update(len(chunk))


def sha256_file(path: str | Path, cache: Sha256Cache | None = None, progress: bool = False) -> str:
    """Hex SHA-256 of a file, from ``cache`` when its size and mtime match (then stored back in it)."""
    path = Path(path)
    if cache is not None and (hit := cache.get(path)):
        return hit
    digest = hashlib.sha256()
    hash_stream_into(digest, path, progress, f"sha256 {path.name}")
    value = digest.hexdigest()
    if cache is not None:
        cache.put(path, value)
    return value
