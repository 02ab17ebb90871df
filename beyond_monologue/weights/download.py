"""Download the files of a model set: resume, SHA-256 check, atomic rename, never replace a good file.

Only ever started by the user (``python -m beyond_monologue.weights download``); nothing else in
the pack touches the network. Flow per file: a file already present and usable is kept; otherwise
bytes go to ``<name>.part`` (resumed with an HTTP ``Range`` request when a part exists), hashed
while they stream, checked (size, SHA-256 when known, safetensors structure), then renamed over
the target in one ``os.replace``. Before any transfer one ``HEAD`` request per host (short timeout)
tells whether the network works at all; when it does not, :class:`NetworkUnavailable` lists every
file, folder and URL to fetch by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .hashing import CHUNK_BYTES, Sha256Cache, hash_stream_into, progress_bar
from .manifest import Manifest, ModelFile
from .messages import manual_instructions
from .safetensors_info import completeness_problem
from .verify import FileReport, verify_file

USER_AGENT = "comfyui-beyond-monologue-weights/1"
_RETRYABLE = (http.client.IncompleteRead, http.client.RemoteDisconnected, ConnectionError, TimeoutError,
              urllib.error.URLError)


class NetworkUnavailable(RuntimeError):
    """No download host answered; the message lists the files to fetch by hand.

    Attributes:
        files: the files that still need fetching.
    """

    def __init__(self, reason: str, files: list[ModelFile]):
        self.files = files
        super().__init__(f"No network: {reason}\n{manual_instructions(files)}")


class DownloadError(RuntimeError):
    """A download failed (HTTP error, wrong size or hash, no disk space); nothing was replaced."""


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one file: ``kept`` (already usable), ``downloaded``, ``unpublished`` or ``failed``."""

    file: ModelFile
    outcome: str
    path: Path | None
    detail: str


def _open(url: str, timeout_s: float, method: str = "GET", offset: int = 0):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # manifest URLs are https (http only for 127.0.0.1/localhost): checked by the manifest schema
    request = urllib.request.Request(url, headers=headers, method=method)  # noqa: S310
    return urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310


def probe_network(files: list[ModelFile], timeout_s: float = 5.0) -> None:
    """One ``HEAD`` per distinct host of the files' URLs; any answer (even an HTTP error) counts as online.

    Raises:
        NetworkUnavailable: a host could not be reached within ``timeout_s`` (DNS, refused, timed out).
    """
    seen = set()
    for file in files:
        host = urllib.parse.urlsplit(file.url).netloc
        if host in seen:
            continue
        seen.add(host)
        try:
            _open(file.url, timeout_s, method="HEAD").close()
        except urllib.error.HTTPError:
            pass  # the host answered
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise NetworkUnavailable(f"{host} is not reachable ({reason})", files) from None


def _content_total(response, offset: int) -> int | None:
    """Total file size from ``Content-Range`` (206) or ``Content-Length`` (200), if the server sent it."""
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-\d+/(\d+)", content_range)
    if match:
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


class _Part:
    """The ``<name>.part`` file of a download and the running SHA-256 of its bytes."""

    def __init__(self, target: Path, progress: bool):
        self.path = target.with_name(target.name + ".part")
        self.digest = hashlib.sha256()
        if self.size():
            hash_stream_into(self.digest, self.path, progress, f"resume {target.name}: hashing partial")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0


def _transfer(url: str, part: _Part, timeout_s: float, progress: bool) -> int | None:
    """One HTTP attempt: append to the part from its current size (or restart it); returns the total size if known."""
    offset = part.size()
    try:
        response = _open(url, timeout_s, offset=offset)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing after offset: the part is already complete
            return offset
        raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
    with response:
        resumed = offset > 0 and response.status == 206 and \
            response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
        if not resumed:  # the server ignored the range: start over
            offset = 0
            part.digest = hashlib.sha256()
        total = _content_total(response, offset)
        if total is not None:
            free = shutil.disk_usage(part.path.parent).free
            if total - offset > free:
                raise DownloadError(f"not enough disk space in {part.path.parent}: {total - offset:,} bytes needed, "
                                    f"{free:,} free")
        with open(part.path, "ab" if resumed else "wb") as out, \
                progress_bar(total or 0, part.path.name.removesuffix(".part"), progress, initial=offset) as bar:
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                part.digest.update(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    return total


def download_file(file: ModelFile, target: Path, timeout_s: float = 30.0, retries: int = 3,
                  backoff_s: float = 2.0, progress: bool = True, cache: Sha256Cache | None = None) -> str:
    """Download ``file`` to ``target`` through ``target.part``; returns the SHA-256 of what was written.

    Args:
        timeout_s: socket timeout of each request, in seconds.
        retries: further attempts after a dropped connection (each resumes from the part's size).
        backoff_s: seconds to wait before retry n is ``backoff_s * n``.

    Raises:
        DownloadError: HTTP error, size or hash mismatch, incomplete safetensors, no disk space, or
            the connection kept dropping. The ``.part`` file is kept for a later resume unless its
            content is known to be wrong.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _Part(target, progress)
    for attempt in range(retries + 1):
        try:
            total = _transfer(file.url, part, timeout_s, progress)
        except _RETRYABLE as error:
            if attempt == retries:
                raise DownloadError(f"{file.filename}: the connection kept failing ({error}); run the same "
                                    f"command again to resume from {part.size():,} bytes") from None
            time.sleep(backoff_s * (attempt + 1))
            continue
        if total is None or part.size() >= total:
            break
        if attempt == retries:
            raise DownloadError(f"{file.filename}: stopped at {part.size():,} of {total:,} bytes; run the same "
                                "command again to resume")
        time.sleep(backoff_s * (attempt + 1))
    return _finish(file, target, part.path, part.digest.hexdigest(), cache)


def _finish(file: ModelFile, target: Path, part: Path, digest: str, cache: Sha256Cache | None) -> str:
    """Check the complete part and rename it over ``target``; a wrong part is deleted."""
    size = part.stat().st_size
    problem = None
    if file.size_bytes is not None and size != file.size_bytes:
        problem = f"{size:,} bytes downloaded, {file.size_bytes:,} expected"
    elif file.sha256 is not None and digest != file.sha256:
        problem = f"sha256 {digest} differs from the {file.sha256_evidence} {file.sha256}"
    elif target.suffix.lower() == ".safetensors":
        problem = completeness_problem(part)
    if problem:
        part.unlink()
        raise DownloadError(f"{file.filename}: {problem}; the download was deleted and nothing was replaced")
    os.replace(part, target)
    if cache is not None:
        cache.put(target, digest)
    return digest


def download_set(manifest: Manifest, set_name: str, models_dir: Path, include_optional: bool = False,
                 timeout_s: float = 30.0, probe_timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 2.0,
                 progress: bool = True, cache: Sha256Cache | None = None) -> list[DownloadResult]:
    """Fetch every file of a set that is not already usable in ``models_dir``.

    Usable files are kept untouched. Unpublished files are reported, not fetched.

    Raises:
        ManifestError: unknown set.
        NetworkUnavailable: no download host answered (raised before any transfer).

    Returns:
        One result per file; a failed download is a ``failed`` result (the others still ran).
    """
    entries = [e for e in manifest.get_set(set_name).entries if e.required or include_optional]
    reports: list[FileReport] = [verify_file(e.file, models_dir, e.required, cache, progress=progress) for e in entries]
    results, to_fetch = [], []
    for report in reports:
        if report.status.ok:
            results.append(DownloadResult(report.file, "kept", report.path, report.detail))
        elif not report.file.published:
            results.append(DownloadResult(report.file, "unpublished", None, "not published yet"))
        else:
            to_fetch.append(report)
    if to_fetch:
        probe_network([r.file for r in to_fetch], probe_timeout_s)
    for report in to_fetch:
        target = report.path or report.file.target_path(models_dir)
        try:
            digest = download_file(report.file, target, timeout_s, retries, backoff_s, progress, cache)
        except DownloadError as error:
            results.append(DownloadResult(report.file, "failed", None, str(error)))
            continue
        replaced = f" (replaced a {report.status.value} file)" if report.path else ""
        results.append(DownloadResult(report.file, "downloaded", target, f"sha256 {digest}{replaced}"))
    order = {e.file.id: i for i, e in enumerate(entries)}
    return sorted(results, key=lambda r: order[r.file.id])
