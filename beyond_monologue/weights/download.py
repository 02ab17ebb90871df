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
   structure), then renamed over ``models/<folder>/<filename>`` in one ``os.replace``; the staging
   folder is removed whatever happened. A file that fails a check is deleted, and the file it was
   meant to replace stays as it was.

Why ``local_dir`` staging and not the hub cache (``~/.cache/huggingface/hub``) plus a copy or a
link: a copy doubles the disk space and the time of 5-30 GB files; a link into the cache breaks the
ComfyUI model as soon as the cache is cleaned (``hf cache delete``) and the cache is often on
another disk than ComfyUI's models. A staging folder inside the target folder is on the same file
system, so the checked file arrives with one atomic rename; ComfyUI never lists the
``.incomplete`` files huggingface_hub writes meanwhile (not a model extension), and
:meth:`.ModelFile.find_in` skips the staging folders.

Resume: ``huggingface_hub`` resumes a transfer whose connection drops (``Range`` from the bytes it
has, up to 5 attempts without progress). Since huggingface_hub 1.x it writes each transfer to a
process-unique temporary file that it deletes when the call fails (huggingface/huggingface_hub
PR #4228), so a download that was killed (Ctrl-C, crash) starts that file again on the next run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
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
        Exception: any other exception means the hub could not be reached; its class depends on the
            installed huggingface_hub (requests in 0.x, httpx in 1.x, httpx2 in 2.x).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    if file.revision is None:
        log.warning("%s: the manifest pins no revision; using the hub's current 'main'", file.filename)
    url = hf_hub_url(file.repo_id, file.path_in_repo, revision=file.revision or "main", endpoint=endpoint)
    meta = get_hf_file_metadata(url, timeout=timeout_s, endpoint=endpoint)
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


def download_file(file: ModelFile, target: Path, hub: HubFile | None = None, timeout_s: float = 10.0,
                  endpoint: str | None = None, progress: bool = True, cache: Sha256Cache | None = None) -> tuple[str, str]:
    """Download ``file`` from the hub and put it at ``target`` once it is checked.

    Returns:
        (sha256 of the new file, the commit it was downloaded from).

    Args:
        hub: the file's metadata when already asked (:func:`hub_metadata`); else it is asked here.
        timeout_s: seconds to wait for the hub's metadata answer (the transfer itself uses
            ``HF_HUB_DOWNLOAD_TIMEOUT``, huggingface_hub's setting).
        endpoint: hub address; None lets huggingface_hub use ``HF_ENDPOINT`` (else huggingface.co).
        cache: receives the sha256 of the new file.

    Raises:
        DownloadError: the hub refused or lacks the file, its sha256 or size differs from the
            manifest's, the transfer failed, or a local error (disk full, no permission); the message
            names the file and its folder. ``target`` is untouched in every case.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    try:
        hub = hub or hub_metadata(file, timeout_s, endpoint)
    except HfHubHTTPError as error:
        raise _failed(file, target, f"the hub answered {_first_line(error)}{_token_hint(error)}") from None
    except Exception as error:  # noqa: BLE001 -- transport errors differ by huggingface_hub version (see hub_metadata)
        raise _failed(file, target, f"the hub could not be reached ({_first_line(error)})") from None
    if problem := _hub_disagrees(file, hub):
        raise _failed(file, target, problem)
    stage = target.parent / f"{STAGING_PREFIX}-{file.id}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _hub_progress(progress):
            staged = Path(hf_hub_download(file.repo_id, file.path_in_repo, revision=hub.commit, local_dir=stage,
                                          endpoint=endpoint))
        problem, digest = _check_staged(file, hub, staged, progress)
        if problem:
            raise _failed(file, target, f"{problem}; the download was deleted")
        os.replace(staged, target)
    except DownloadError:
        raise
    except HfHubHTTPError as error:
        raise _failed(file, target, f"the hub answered {_first_line(error)}{_token_hint(error)}") from None
    except Exception as error:  # noqa: BLE001 -- local OSErrors and huggingface_hub's transport errors (see above)
        raise _failed(file, target, f"{type(error).__name__}: {_first_line(error)}; run the same command again") \
            from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
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
                 progress: bool = True, cache: Sha256Cache | None = None) -> list[DownloadResult]:
    """Fetch every file of a set that is not already usable in ``models_dir``.

    Usable files are kept untouched (no request). Unpublished files are reported, not fetched.

    Args:
        timeout_s: seconds to wait for each file's metadata answer.
        probe_timeout_s: seconds to wait for the first one, which tells whether the hub is reachable.
        endpoint: hub address; None lets huggingface_hub use ``HF_ENDPOINT`` (else huggingface.co).

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
        except Exception as error:  # noqa: BLE001 -- transport errors differ by huggingface_hub version
            where = endpoint or constants.ENDPOINT
            raise NetworkUnavailable(f"{where} did not answer ({_first_line(error)})", files) from None
    for i, report in enumerate(to_fetch):
        target = report.path or report.file.target_path(models_dir)
        try:
            digest, commit = download_file(report.file, target, first_hub if i == 0 else None, timeout_s, endpoint,
                                           progress, cache)
        except DownloadError as error:
            results.append(DownloadResult(report.file, "failed", None, str(error)))
            continue
        pinned = "" if report.file.revision else " (the manifest pins no revision: this is 'main' today)"
        replaced = f" (replaced a {report.status.value} file)" if report.path else ""
        results.append(DownloadResult(report.file, "downloaded", target,
                                      f"sha256 {digest}, commit {commit}{pinned}{replaced}"))
    order = {e.file.id: i for i, e in enumerate(entries)}
    return sorted(results, key=lambda r: order[r.file.id])
