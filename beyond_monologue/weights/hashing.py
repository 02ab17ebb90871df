"""SHA-256 of large files with a progress bar, cached by the file's stat so a second check is instant.

A cached digest is valid while the file's size, mtime, inode and ctime (ns) are unchanged: a copy
with preserved mtime (``cp -p``) or a replacement of the same size gets another inode or ctime.
The stat is taken before hashing and compared after; a file that changed meanwhile is not cached.
"""

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
    """Digests of files keyed by absolute path, valid while the file's :func:`stamp_of` is unchanged.

    Args:
        path: JSON file holding the cache (created on :meth:`save`); None keeps it in memory only.
            Entries written by older versions (without inode and ctime) count as stale.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._entries: dict[str, dict] = {}
        if self.path and self.path.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(self.path.read_text())
                if isinstance(loaded, dict):
                    self._entries = loaded

    def get(self, file: Path) -> str | None:
        """The cached digest of ``file``, or None when absent or stale.

        Raises:
            OSError: the file cannot be stat'ed.
        """
        key, stamp = stamp_of(file)
        entry = self._entries.get(key)
        if entry and {k: entry.get(k) for k in stamp} == stamp:
            return entry.get("sha256")
        return None

    def put(self, file: Path, digest: str, before: tuple[str, dict] | None = None) -> bool:
        """Remember ``digest`` for the file as it is now; returns whether it was stored.

        Args:
            before: :func:`stamp_of` the file taken before ``digest`` was computed; when it differs
                from the file now (it changed while being hashed) nothing is stored.

        Raises:
            OSError: the file cannot be stat'ed.
        """
        key, stamp = stamp_of(file)
        if before is not None and before != (key, stamp):
            self._entries.pop(key, None)
            return False
        self._entries[key] = {**stamp, "sha256": digest}
        return True

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


def stamp_of(file: Path) -> tuple[str, dict]:
    """``(absolute path, {"size", "mtime_ns", "ino", "ctime_ns"})`` of a file: what a cached digest is valid for.

    Raises:
        OSError: the file cannot be stat'ed.
    """
    stat = file.stat()
    return str(file.resolve()), {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ino": stat.st_ino,
                                 "ctime_ns": stat.st_ctime_ns}


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
    """Hex SHA-256 of a file, from ``cache`` when its stamp matches; a fresh digest is stored back in the
    cache only when the file did not change while it was read (see the module docstring).

    Raises:
        OSError: the file cannot be read.
    """
    path = Path(path)
    if cache is not None and (hit := cache.get(path)):
        return hit
    before = stamp_of(path)
    digest = hashlib.sha256()
    hash_stream_into(digest, path, progress, f"sha256 {path.name}")
    value = digest.hexdigest()
    if cache is not None:
        cache.put(path, value, before)
    return value
