"""Download the files of a model set through ``huggingface_hub``; check them; never replace a good file.

Only ever started by the user (``python -m beyond_monologue.weights download``); nothing else in
the pack touches the network. Every published manifest file is a file of a Hugging Face model
repository, so ``huggingface_hub`` does the transfer and brings what it honours: ``HF_TOKEN`` (or
the token of ``hf auth login``) for gated or private repositories, ``HF_ENDPOINT`` for a mirror,
``HF_HUB_DOWNLOAD_TIMEOUT``/``HF_HUB_ETAG_TIMEOUT``, Xet transfers when ``hf_xet`` is installed, and a
dropped connection resumed with an HTTP ``Range`` request. Per file:

1. A file already present and usable (:func:`.verify_file`) is kept without a request.
2. :func:`huggingface_hub.get_hf_file_metadata` (one ``HEAD``) asks the hub for the file at the
   manifest's pinned ``revision`` (``main``, with a log line, where the manifest says ``unknown``):
   the commit it resolves to, the LFS sha256 and the size. The first answer doubles as the network
   check: no answer raises :class:`NetworkUnavailable`, which lists every file to fetch by hand. A
   hub sha256 or size that differs from the manifest's refuses the file before any byte moves.
3. :func:`huggingface_hub.hf_hub_download` fetches that commit (so a ``main`` that moves in between
   changes nothing) with ``local_dir`` = a staging folder ``models/<folder>/.bm_download-<id>/``.
4. The staged file is checked (size, sha256 against the manifest and the hub, safetensors
   structure), then renamed over ``models/<folder>/<filename>`` in one ``os.replace`` and the
   staging folder removed. A file that fails a check is deleted, and the file it was meant to
   replace stays as it was.

Why ``local_dir`` staging and not the hub cache (``~/.cache/huggingface/hub``) plus a copy or a
link: a copy doubles the disk space and the time of 5-30 GB files; a link into the cache breaks the
ComfyUI model as soon as the cache is cleaned (``hf cache delete``) and the cache is often on
another disk than ComfyUI's models. A staging folder inside the target folder is on the same file
system, so the checked file arrives with one atomic rename; ComfyUI never lists the
``.incomplete`` files huggingface_hub writes meanwhile (not a model extension), and
:meth:`.ModelFile.find_in` skips the staging folders.

Resume: huggingface_hub 1.x/2.x resumes a connection that drops inside the call (``Range`` from
the bytes it has, up to 5 attempts without progress) but deletes its partial file when the call
fails (a process-unique temporary file, huggingface/huggingface_hub PR #4228), so a download that
was killed (Ctrl-C, crash) starts that file again on the next run. huggingface_hub 0.x keeps the
partial file (``.incomplete``, named by the file's etag, so only the same upstream version is
continued) and resumes it on the next call: the pack calls again after a dropped connection
(``retries``) and leaves the staging folder in place after a failed transfer, so running the
command again resumes there too. Tested with huggingface_hub 0.26.5, 0.36.0 and 2.4.0.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .hashing import Sha256Cache, sha256_file
from .manifest import STAGING_PREFIX, Manifest, ModelFile
from .messages import manual_instructions
from .safetensors_info import completeness_problem
from .verify import FileReport, verify_file

log = logging.getLogger(__name__)


class NetworkUnavailable(RuntimeError):
    """The hub did not answer (or ``HF_HUB_OFFLINE`` is set); the message lists the files to fetch by hand.

    Attributes:
        files: the files that still need fetching.
    """

    def __init__(self, reason: str, files: list[ModelFile]):
        self.files = files
        super().__init__(f"No network: {reason}\n{manual_instructions(files)}")


class DownloadError(RuntimeError):
    """One file could not be downloaded or failed its checks; the message names the file and its folder.
    Nothing was replaced."""


@dataclass(frozen=True)
class DownloadResult:
    """What happened to one file: ``kept`` (already usable), ``downloaded``, ``unpublished`` or ``failed``."""

    file: ModelFile
    outcome: str
    path: Path | None
    detail: str


@dataclass(frozen=True)
class HubFile:
    """What the hub says about one file (from :func:`huggingface_hub.get_hf_file_metadata`).

    Attributes:
        commit: the 40-hex commit the asked revision resolved to (``X-Repo-Commit``).
        sha256: the LFS sha256 (``X-Linked-Etag``), or None when the etag is not a sha256 (a non-LFS file).
        size_bytes: the size (``X-Linked-Size`` / ``Content-Length``), or None.
    """

    commit: str
    sha256: str | None
    size_bytes: int | None


def _failed(file: ModelFile, target: Path, problem: str) -> DownloadError:
    return DownloadError(f"{file.filename} (into {target.parent}): {problem}; nothing was replaced")


def hub_metadata(file: ModelFile, timeout_s: float, endpoint: str | None = None) -> HubFile:
    """Ask the hub (one ``HEAD``) about ``file`` at its pinned revision (``main`` when unknown).

    Args:
        timeout_s: seconds to wait for the answer.
        endpoint: hub address; None lets huggingface_hub use ``HF_ENDPOINT`` (else huggingface.co).

    Raises:
        huggingface_hub.utils.HfHubHTTPError: the hub answered with an error (not found, gated, ...).
        Exception: the hub could not be reached (see :func:`_is_transport_error`: the class depends
            on the installed huggingface_hub).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    if file.revision is None:
        log.warning("%s: the manifest pins no revision; using the hub's current 'main'", file.filename)
    url = hf_hub_url(file.repo_id, file.path_in_repo, revision=file.revision or "main", endpoint=endpoint)
    meta = get_hf_file_metadata(url, timeout=timeout_s)
    etag = (meta.etag or "").strip('"').lower()
    is_sha256 = len(etag) == 64 and all(c in "0123456789abcdef" for c in etag)
    return HubFile(meta.commit_hash, etag if is_sha256 else None, meta.size)


def _hub_disagrees(file: ModelFile, hub: HubFile) -> str | None:
    """Why the hub's file is not the manifest's (sha256 or size differ), or None."""
    if file.sha256 is not None and hub.sha256 is not None and hub.sha256 != file.sha256:
        return (f"the hub's file at commit {hub.commit} has sha256 {hub.sha256}, the manifest expects the "
                f"{file.sha256_evidence} {file.sha256}; nothing was downloaded")
    if file.size_bytes is not None and hub.size_bytes is not None and hub.size_bytes != file.size_bytes:
        return (f"the hub's file at commit {hub.commit} has {hub.size_bytes:,} bytes, the manifest expects "
                f"{file.size_bytes:,}; nothing was downloaded")
    return None


@contextlib.contextmanager
def _hub_progress(enabled: bool):
    """huggingface_hub's progress bars on or off for the duration (its switch is global)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    if not enabled:
        disable_progress_bars()
    try:
        yield
    finally:
        if not enabled and not was_disabled:
            enable_progress_bars()


def _check_staged(file: ModelFile, hub: HubFile, staged: Path, progress: bool) -> tuple[str | None, str]:
    """(problem or None, sha256) of a downloaded file, against the manifest and the hub."""
    size = staged.stat().st_size
    expected = file.size_bytes if file.size_bytes is not None else hub.size_bytes
    if expected is not None and size != expected:
        return f"{size:,} bytes downloaded, {expected:,} expected", ""
    digest = sha256_file(staged, None, progress)
    for sha, source in ((file.sha256, f"the manifest's {file.sha256_evidence}"), (hub.sha256, "the hub's LFS")):
        if sha is not None and digest != sha:
            return f"sha256 {digest} differs from {source} {sha}", digest
    return completeness_problem(staged) if staged.suffix.lower() == ".safetensors" else None, digest


def _is_transport_error(error: BaseException) -> bool:
    """True when ``error`` says the hub could not be reached or the connection broke.

    huggingface_hub raises its HTTP client's own exceptions for these (requests/urllib3 in 0.x,
    httpx in 1.x, httpx2 in 2.x), so they are told apart by module, not by class; an HTTP error
    answer (:class:`HfHubHTTPError`) is not one, nor is a local file error (disk full, no permission).
    """
    from huggingface_hub.utils import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        return False
    if isinstance(error, OSError) and error.errno in _LOCAL_ERRNOS:
        return False
    return isinstance(error, OSError) or any(
        cls.__module__.split(".")[0] in _TRANSPORT_MODULES for cls in type(error).__mro__)


_TRANSPORT_MODULES = ("requests", "urllib3", "httpx", "httpx2", "httpcore", "ssl", "socket")
_LOCAL_ERRNOS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EACCES", "EPERM", "EROFS", "EEXIST", "ENOTDIR",
                                                 "EISDIR") if hasattr(errno, name)}  # EDQUOT: not on Windows


def _transfer(file: ModelFile, hub: HubFile, stage: Path, endpoint: str | None, retries: int,
              backoff_s: float) -> Path:
    """``hf_hub_download`` into ``stage``, again after a dropped connection (up to ``retries`` more times).

    huggingface_hub 2.x resumes a dropped connection inside the call; 0.x does not, but keeps the
    partial file in ``stage`` (``.incomplete``, keyed by the file's etag) and resumes it on the next call.
    """
    from huggingface_hub import hf_hub_download

    attempt = 0
    while True:
        try:
            return Path(hf_hub_download(file.repo_id, file.path_in_repo, revision=hub.commit, local_dir=stage,
                                        endpoint=endpoint))
        except Exception as error:
            if attempt == retries or not _is_transport_error(error):
                raise
            attempt += 1
            log.warning("%s: %s; trying again", file.filename, _first_line(error))
            time.sleep(backoff_s * attempt)


def download_file(file: ModelFile, target: Path, hub: HubFile | None = None, timeout_s: float = 10.0,
                  endpoint: str | None = None, retries: int = 3, backoff_s: float = 2.0, progress: bool = True,
                  cache: Sha256Cache | None = None) -> tuple[str, str]:
    """Download ``file`` from the hub and put it at ``target`` once it is checked.

    Args:
        hub: the file's metadata when already asked (:func:`hub_metadata`); else it is asked here.
        timeout_s: seconds to wait for the hub's metadata answer (the transfer itself uses
            ``HF_HUB_DOWNLOAD_TIMEOUT``, huggingface_hub's setting).
        endpoint: hub address; None lets huggingface_hub use ``HF_ENDPOINT`` (else huggingface.co).
        retries: further ``hf_hub_download`` calls after a dropped connection; ``backoff_s * n``
            seconds before call n.
        cache: receives the sha256 of the new file.

    Returns:
        (sha256 of the new file, the commit it was downloaded from).

    Raises:
        DownloadError: the hub refused or lacks the file, its sha256 or size differs from the
            manifest's, the transfer failed, or a local error (disk full, no permission); the message
            names the file and its folder. ``target`` is untouched in every case.
    """
    from huggingface_hub.utils import HfHubHTTPError

    stage = target.parent / f"{STAGING_PREFIX}-{file.id}"
    try:
        hub = hub or hub_metadata(file, timeout_s, endpoint)
        if not hub.commit:
            raise _failed(file, target, "the answer has no X-Repo-Commit header: HF_ENDPOINT does not point to a "
                                        "Hugging Face hub or mirror")
        if problem := _hub_disagrees(file, hub):
            raise _failed(file, target, problem)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _hub_progress(progress):
            staged = _transfer(file, hub, stage, endpoint, retries, backoff_s)
        problem, digest = _check_staged(file, hub, staged, progress)
        if problem:
            shutil.rmtree(stage, ignore_errors=True)
            raise _failed(file, target, f"{problem}; the download was deleted")
        os.replace(staged, target)
    except HfHubHTTPError as error:
        raise _failed(file, target, f"the hub answered {_first_line(error)}{_token_hint(error)}") from None
    except Exception as error:
        if not isinstance(error, OSError) and not _is_transport_error(error):
            raise  # a DownloadError from above, or a bug: not a download problem to report per file
        again = "run the same command again" if _is_transport_error(error) else "fix that and run the command again"
        raise _failed(file, target, f"{type(error).__name__}: {_first_line(error)}; {again}") from None
    shutil.rmtree(stage, ignore_errors=True)  # kept after a failed transfer: huggingface_hub 0.x resumes from it
    if cache is not None:
        cache.put(target, digest)
    return digest, hub.commit


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _token_hint(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    return " (a gated or private repository: set HF_TOKEN or run `hf auth login`)" if status in (401, 403) else ""


def download_set(manifest: Manifest, set_name: str, models_dir: Path, include_optional: bool = False,
                 timeout_s: float = 10.0, probe_timeout_s: float = 5.0, endpoint: str | None = None,
                 retries: int = 3, backoff_s: float = 2.0, progress: bool = True,
                 cache: Sha256Cache | None = None) -> list[DownloadResult]:
    """Fetch every file of a set that is not already usable in ``models_dir``.

    Usable files are kept untouched (no request). Unpublished files are reported, not fetched.

    Args:
        timeout_s: seconds to wait for each file's metadata answer.
        probe_timeout_s: seconds to wait for the first one, which tells whether the hub is reachable.
        endpoint: hub address; None lets huggingface_hub use ``HF_ENDPOINT`` (else huggingface.co).
        retries, backoff_s: as :func:`download_file`.

    Raises:
        ManifestError: unknown set.
        NetworkUnavailable: the hub did not answer the first request, or ``HF_HUB_OFFLINE`` is set
            (raised before any transfer; nothing is created).

    Returns:
        One result per file, in manifest order; a failed download is a ``failed`` result (the others still ran).
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import HfHubHTTPError

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
    first_hub = None
    if to_fetch:
        files = [r.file for r in to_fetch]
        if constants.HF_HUB_OFFLINE:
            raise NetworkUnavailable("HF_HUB_OFFLINE is set", files)
        try:
            first_hub = hub_metadata(files[0], probe_timeout_s, endpoint)
        except HfHubHTTPError:
            pass  # the hub answered: download_file reports the error for that file
        except Exception as error:
            if not _is_transport_error(error):
                raise
            where = endpoint or constants.ENDPOINT
            raise NetworkUnavailable(f"{where} did not answer ({_first_line(error)})", files) from None
    for i, report in enumerate(to_fetch):
        target = report.path or report.file.target_path(models_dir)
        try:
            digest, commit = download_file(report.file, target, first_hub if i == 0 else None, timeout_s, endpoint,
                                           retries, backoff_s, progress, cache)
        except DownloadError as error:
            results.append(DownloadResult(report.file, "failed", None, str(error)))
            continue
        pinned = "" if report.file.revision else " (the manifest pins no revision: this is 'main' today)"
        replaced = f" (replaced a {report.status.value} file)" if report.path else ""
        results.append(DownloadResult(report.file, "downloaded", target,
                                      f"sha256 {digest}, commit {commit}{pinned}{replaced}"))
    order = {e.file.id: i for i, e in enumerate(entries)}
    return sorted(results, key=lambda r: order[r.file.id])
