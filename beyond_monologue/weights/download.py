"""Download the files of a model set: resume, SHA-256 check, atomic rename, never replace a good file.

Only ever started by the user (``python -m beyond_monologue.weights download``); nothing else in
the pack touches the network. Flow per file: a file already present and usable is kept; otherwise
bytes go to ``<name>.part``, hashed while they stream, checked (size, SHA-256 when known,
safetensors structure), then renamed over the target in one ``os.replace``.

A part is resumed (HTTP ``Range``) only when it is known to hold the start of the same upstream
version: ``<name>.part.etag`` records the version it came from (Hugging Face's ``X-Linked-Etag``,
the SHA-256 of an LFS file, which its redirect carries; else the ``ETag``) and the ``ETag`` sent
back as ``If-Range``. A part without that record, or an answer of another version (200, or a
206 whose version differs), starts the file again from zero.

Before any transfer one ``HEAD`` request per host (short timeout) tells whether the network works
at all; when it does not, :class:`NetworkUnavailable` lists every file, folder and URL to fetch by
hand. A dropped or broken connection (any ``OSError`` or ``http.client.HTTPException`` while
connecting or reading, TLS errors included) is retried; a local error (disk full, no permission)
is a :class:`DownloadError` naming the file and its folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .hashing import CHUNK_BYTES, Sha256Cache, hash_stream_into, progress_bar
from .manifest import Manifest, ModelFile
from .messages import manual_instructions
from .safetensors_info import completeness_problem
from .verify import FileReport, verify_file

USER_AGENT = "comfyui-beyond-monologue-weights/1"
# network trouble while connecting or reading: connection errors, timeouts, URLError, ssl.SSLError
# (all OSError) and broken HTTP (IncompleteRead, RemoteDisconnected, ...). HTTP error answers are
# turned into DownloadError first, and local file errors are DownloadError too, so neither is retried.
_RETRYABLE = (http.client.HTTPException, OSError)


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


class _Version(NamedTuple):
    """Which upstream version an answer is.

    Attributes:
        id: ``X-Linked-Etag`` (of the answer or of a redirect on the way), else ``ETag``; None when
            the server sent neither (such a download cannot be resumed).
        etag: the answering server's strong ``ETag``, the ``If-Range`` value of a resume; None when
            absent or weak.
    """

    id: str | None
    etag: str | None


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib's own handler (``Range`` and ``If-Range`` go along) and keeps the
    ``X-Linked-Etag`` a redirect carried (Hugging Face puts the LFS file's SHA-256 on its 302)."""

    linked_etag: str | None = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.linked_etag = headers.get("X-Linked-Etag") or self.linked_etag
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _open(url: str, timeout_s: float, method: str = "GET", offset: int = 0,
          if_range: str | None = None) -> tuple[http.client.HTTPResponse, _Version]:
    """Send one request (``Range`` from ``offset``, ``If-Range`` when given); returns the answer and its version.

    Raises:
        urllib.error.HTTPError: the server answered an HTTP error.
        OSError: the server could not be reached or the connection broke (URLError, timeout, TLS).
    """
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if if_range:
            headers["If-Range"] = if_range
    # manifest URLs are https (http only for 127.0.0.1/localhost): checked by the manifest schema
    request = urllib.request.Request(url, headers=headers, method=method)  # noqa: S310
    redirects = _Redirects()
    response = urllib.request.build_opener(redirects).open(request, timeout=timeout_s)
    etag = response.headers.get("ETag")
    strong = etag if etag and not etag.startswith("W/") else None
    return response, _Version(response.headers.get("X-Linked-Etag") or redirects.linked_etag or etag, strong)


@contextlib.contextmanager
def _local(path: Path, action: str):
    """Turn an ``OSError`` of local file work on ``path`` (disk full, no permission) into a :class:`DownloadError`."""
    try:
        yield
    except OSError as error:
        raise DownloadError(f"{path.name}: cannot {action} it in {path.parent}: {error}; nothing was replaced") \
            from None


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
            _open(file.url, timeout_s, method="HEAD")[0].close()
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
    """The ``<name>.part`` file of a download, the running SHA-256 of its bytes, and the upstream
    version it holds (``<name>.part.etag``, JSON ``{"version": id, "etag": etag}``).

    A part without a version record (left by an older tool, or from a server that sends no
    ``ETag``) is deleted at once: its bytes cannot be shown to belong to what the server has now.

    Raises:
        DownloadError: the part or its record cannot be read or deleted.
    """

    def __init__(self, target: Path, progress: bool):
        self.path = target.with_name(target.name + ".part")
        self.version_path = target.with_name(target.name + ".part.etag")
        self.digest = hashlib.sha256()
        if self.size() and self.version() is None:
            self.discard()
        if self.size():
            with _local(self.path, "read the partial download"):
                hash_stream_into(self.digest, self.path, progress, f"resume {target.name}: hashing partial")

    def size(self) -> int:
        with _local(self.path, "read the size of"):
            return self.path.stat().st_size if self.path.exists() else 0

    def version(self) -> _Version | None:
        """The recorded upstream version of the part, or None when there is no usable record."""
        try:
            stored = json.loads(self.version_path.read_text())
            version = _Version(stored["version"], stored.get("etag"))
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return version if isinstance(version.id, str) and version.id else None

    def discard(self) -> None:
        """Delete the part and its version record; the digest starts again."""
        with _local(self.path, "delete"):
            self.path.unlink(missing_ok=True)
            self.version_path.unlink(missing_ok=True)
        self.digest = hashlib.sha256()

    def restart(self, version: _Version) -> None:
        """Start an empty part for ``version`` (its record is written only when the version has an id)."""
        self.discard()
        if version.id:
            with _local(self.version_path, "write"):
                self.version_path.write_text(json.dumps({"version": version.id, "etag": version.etag}))


def _start(url: str, part: _Part, timeout_s: float) -> tuple[http.client.HTTPResponse, bool]:
    """Open the download; returns the answer and whether it continues the part (else the whole file follows).

    Raises:
        urllib.error.HTTPError, OSError: as :func:`_open`.
    """
    offset = part.size()
    stored = part.version() if offset else None
    if offset and stored is None:
        part.discard()
        offset = 0
    response, version = _open(url, timeout_s, offset=offset, if_range=stored.etag if stored else None)
    if offset and response.status == 206 and version.id == stored.id and \
            response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
        return response, True
    if response.status == 206:  # a range of another version (the server ignored If-Range): ask for all of it
        response.close()
        response, version = _open(url, timeout_s)
    part.restart(version)
    return response, False


def _transfer(url: str, part: _Part, timeout_s: float, progress: bool) -> int | None:
    """One HTTP attempt: append to the part from its current size (or restart it); returns the total size if known.

    Raises:
        DownloadError: an HTTP error answer, too little disk space, or a local write error.
        OSError, http.client.HTTPException: the connection failed or broke (retryable).
    """
    try:
        response, resumed = _start(url, part, timeout_s)
    except urllib.error.HTTPError as error:
        if error.code == 416 and part.size():  # nothing after offset: the part is already complete
            return part.size()
        raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}") from None
    with response:
        offset = part.size() if resumed else 0
        total = _content_total(response, offset)
        if total is not None:
            with _local(part.path, "check the free space for"):
                free = shutil.disk_usage(part.path.parent).free
            if total - offset > free:
                raise DownloadError(f"not enough disk space in {part.path.parent}: {total - offset:,} bytes needed, "
                                    f"{free:,} free")
        with _local(part.path, "open"):
            out = open(part.path, "ab")  # noqa: SIM115 -- closed by the with below; only its opening is local
        with out, progress_bar(total or 0, part.path.name.removesuffix(".part"), progress, initial=offset) as bar:
            while chunk := response.read(CHUNK_BYTES):  # an OSError here is the network's: retried
                with _local(part.path, "write"):
                    out.write(chunk)
                    out.flush()  # on disk before it counts, so digest and part agree after any error
                part.digest.update(chunk)
                bar.update(len(chunk))
            with _local(part.path, "write"):
                os.fsync(out.fileno())
    return total


def download_file(file: ModelFile, target: Path, timeout_s: float = 30.0, retries: int = 3,
                  backoff_s: float = 2.0, progress: bool = True, cache: Sha256Cache | None = None) -> str:
    """Download ``file`` to ``target`` through ``target.part``; returns the SHA-256 of what was written.

    Args:
        timeout_s: socket timeout of each request, in seconds.
        retries: further attempts after a dropped or broken connection (each resumes from the part's
            size while the server still has the same version, see the module docstring).
        backoff_s: seconds to wait before retry n is ``backoff_s * n``.

    Raises:
        DownloadError: HTTP error, size or hash mismatch, incomplete safetensors, no disk space, a
            local file error (named with its folder), or the connection kept failing. The ``.part``
            file and its ``.part.etag`` record are kept for a later resume unless the content is
            known to be wrong.
    """
    with _local(target, "create the folder for"):
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
    return _finish(file, target, part, cache)


def _finish(file: ModelFile, target: Path, part: _Part, cache: Sha256Cache | None) -> str:
    """Check the complete part and rename it over ``target``; a wrong part is deleted (with its version record)."""
    size = part.size()
    digest = part.digest.hexdigest()
    problem = None
    if file.size_bytes is not None and size != file.size_bytes:
        problem = f"{size:,} bytes downloaded, {file.size_bytes:,} expected"
    elif file.sha256 is not None and digest != file.sha256:
        problem = f"sha256 {digest} differs from the {file.sha256_evidence} {file.sha256}"
    elif target.suffix.lower() == ".safetensors":
        problem = completeness_problem(part.path)
    if problem:
        part.discard()
        raise DownloadError(f"{file.filename}: {problem}; the download was deleted and nothing was replaced")
    with _local(target, "replace"):
        os.replace(part.path, target)
    part.discard()  # the version record; the part itself is now the target
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
