"""download: resume over HTTP Range from a local server, sha256 check, atomic rename, no-network fast failure."""

import errno
import hashlib
import json
import re
import socket
import ssl
import time

import pytest
from weights_testing import RangeServer, make_manifest, sha256_of, write_safetensors

from beyond_monologue.weights import download
from beyond_monologue.weights.cli import EXIT_NO_NETWORK, EXIT_OK, main
from beyond_monologue.weights.download import DownloadError, NetworkUnavailable, download_file, download_set
from beyond_monologue.weights.verify import Status, verify_set

pytestmark = pytest.mark.timeout(60)
NAME = "big.safetensors"


@pytest.fixture()
def payload(tmp_path):
    """A 2.5 MB safetensors file (bytes) and its sha256."""
    source = write_safetensors(tmp_path / "source" / NAME, values=1_250_000, seed=3)
    return source.read_bytes(), sha256_of(source)


class EtagServer(RangeServer):
    """RangeServer plus what Hugging Face does: a strong ``ETag`` (the sha256 of the content) on every
    answer, ``If-Range`` (a range is served only while the ETag still matches, else the whole file
    with 200), and ``/redirect/<path>``: a 302 to ``/<path>`` carrying ``X-Linked-Etag``.

    Attributes:
        honor_if_range: False answers a range even when ``If-Range`` no longer matches (a broken server).
        if_ranges: the ``If-Range`` header of every GET (None when absent).
    """

    def __init__(self):
        super().__init__()
        self.honor_if_range = True
        self.if_ranges: list[str | None] = []
        outer = self
        base = self.httpd.RequestHandlerClass

        class Handler(base):
            def _serve(self, with_body: bool):
                redirect = re.fullmatch(r"/redirect(/.*)", self.path)
                data = outer.files.get(redirect.group(1) if redirect else self.path)
                if redirect and data is not None:
                    outer.requests.append((self.command, self.path, self.headers.get("Range")))
                    self.send_response(302)
                    self.send_header("Location", redirect.group(1))
                    self.send_header("X-Linked-Etag", f'"linked-{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if self.command == "GET":
                    outer.if_ranges.append(self.headers.get("If-Range"))
                stale = data is not None and self.headers.get("If-Range") not in (None, etag_of(data))
                ignore_range, outer.ignore_range = outer.ignore_range, outer.ignore_range or (
                    stale and outer.honor_if_range)  # RFC 9110 13.1.5: another version, so the whole file
                try:
                    super()._serve(with_body)
                finally:
                    outer.ignore_range = ignore_range

            def end_headers(self):
                data = outer.files.get(self.path)
                if data is not None:
                    self.send_header("ETag", etag_of(data))
                super().end_headers()

        self.httpd.RequestHandlerClass = Handler


def etag_of(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()}"'


@pytest.fixture()
def server(payload):
    with EtagServer() as running:
        running.files["/" + NAME] = payload[0]
        yield running


def manifest_for(tmp_path, server, payload, sha=True, path=NAME):
    fields = {"folder": "diffusion_models", "filename": NAME, "url": f"{server.url}/{path}",
              "size_bytes": len(payload[0]), "sha256": payload[1] if sha else None}
    return make_manifest(tmp_path, {"big": fields})


def fetch(manifest, models, retries=0):
    file = manifest.files["big"]
    return download_file(file, file.target_path(models), timeout_s=5, retries=retries, backoff_s=0, progress=False)


def test_an_interrupted_download_resumes_from_the_part_file(tmp_path, server, payload):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"
    target = models / "diffusion_models" / NAME
    part = target.with_name(NAME + ".part")
    server.fail_after, server.fail_times = 1_000_000, 1
    with pytest.raises(DownloadError, match=r"1,000,000 .*run the same command again to resume"):
        fetch(manifest, models)
    assert part.stat().st_size == 1_000_000 and not target.exists()  # nothing half-written under the real name

    assert fetch(manifest, models) == payload[1]
    assert server.gets()[-1] == ("/" + NAME, "bytes=1000000-")  # the second request asked only for the rest
    assert target.read_bytes() == payload[0] and not part.exists()
    (report,) = verify_set(manifest, "test-set", models)
    assert report.status == Status.OK


def test_retries_resume_within_one_call(tmp_path, server, payload):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"
    server.fail_after, server.fail_times = 700_000, 2
    assert fetch(manifest, models, retries=3) == payload[1]
    assert [rng for _, rng in server.gets()] == [None, "bytes=700000-", "bytes=1400000-"]


def test_a_server_ignoring_range_restarts_cleanly(tmp_path, server, payload):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"
    server.fail_after, server.fail_times = 500_000, 1
    with pytest.raises(DownloadError):
        fetch(manifest, models)
    server.ignore_range = True
    assert fetch(manifest, models) == payload[1]
    assert (models / "diffusion_models" / NAME).read_bytes() == payload[0]


def interrupted(tmp_path, server, payload, **manifest_options):
    """A download stopped after 1,000,000 bytes: (manifest, models folder, part path)."""
    manifest, models = manifest_for(tmp_path, server, payload, **manifest_options), tmp_path / "models"
    server.fail_after, server.fail_times = 1_000_000, 1
    with pytest.raises(DownloadError):
        fetch(manifest, models)
    part = models / "diffusion_models" / (NAME + ".part")
    assert part.stat().st_size == 1_000_000
    return manifest, models, part


def test_the_part_remembers_the_upstream_version_and_resumes_only_that_version(tmp_path, server, payload):
    manifest, models, part = interrupted(tmp_path, server, payload)
    assert json.loads(part.with_name(NAME + ".part.etag").read_text())["etag"] == etag_of(payload[0])
    assert fetch(manifest, models) == payload[1]
    assert server.gets()[-1] == ("/" + NAME, "bytes=1000000-") and server.if_ranges[-1] == etag_of(payload[0])
    assert not part.exists() and not part.with_name(NAME + ".part.etag").exists()


@pytest.mark.parametrize("honor_if_range", [True, False])
def test_a_changed_upstream_file_restarts_the_download_instead_of_splicing(tmp_path, server, payload, honor_if_range):
    # no sha256 in the manifest: a splice of two same-shaped files would pass the size and structure checks
    manifest, models, _ = interrupted(tmp_path, server, payload, sha=False)
    new = write_safetensors(tmp_path / "new" / NAME, values=1_250_000, seed=4).read_bytes()
    assert len(new) == len(payload[0]) and new[:80] == payload[0][:80]  # same header, other values
    server.files["/" + NAME], server.honor_if_range = new, honor_if_range
    fetch(manifest, models)
    assert (models / "diffusion_models" / NAME).read_bytes() == new
    assert server.if_ranges[-1 if honor_if_range else -2] == etag_of(payload[0])  # the old version was named
    if not honor_if_range:  # the server sent the rest of the new file anyway: asked again for all of it
        assert [rng for _, rng in server.gets()[-2:]] == ["bytes=1000000-", None]


def test_an_old_part_without_a_stored_version_is_restarted_not_resumed(tmp_path, server, payload):
    manifest, models, part = interrupted(tmp_path, server, payload)
    part.with_name(NAME + ".part.etag").unlink()  # as left by an earlier version of the tool
    assert fetch(manifest, models) == payload[1]
    assert server.gets()[-1] == ("/" + NAME, None)


def test_resume_through_a_redirect_keys_the_part_on_x_linked_etag(tmp_path, server, payload):
    manifest, models, part = interrupted(tmp_path, server, payload, path=f"redirect/{NAME}")
    stored = json.loads(part.with_name(NAME + ".part.etag").read_text())
    assert stored == {"version": f'"linked-{payload[1]}"', "etag": etag_of(payload[0])}
    assert fetch(manifest, models) == payload[1]
    assert server.gets()[-2:] == [(f"/redirect/{NAME}", "bytes=1000000-"), ("/" + NAME, "bytes=1000000-")]


def test_a_full_disk_fails_that_file_naming_it_and_its_folder(tmp_path, server, payload, monkeypatch):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(download, "open", lambda *a, **k: FullDisk(open(*a, **k)), raising=False)  # noqa: SIM115
    (result,) = download_set(manifest, "test-set", models, progress=False, backoff_s=0)
    folder = models / "diffusion_models"
    assert result.outcome == "failed" and NAME in result.detail and str(folder) in result.detail
    assert "No space left on device" in result.detail


def test_a_tls_error_mid_stream_is_retried_and_resumed(tmp_path, server, payload, monkeypatch):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"
    original, calls = download._open, []

    class Dropping:
        def __init__(self, response):
            self.response, self.sent = response, 0

        def read(self, size):
            if self.sent:
                raise ssl.SSLError("decryption failed or bad record mac")
            self.sent = 1
            return self.response.read(300_000)

        def __getattr__(self, name):
            return getattr(self.response, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.response.close()

    def flaky_open(*args, **kwargs):
        response, version = original(*args, **kwargs)
        calls.append(kwargs.get("offset", 0))
        return (Dropping(response) if len(calls) == 1 else response), version

    monkeypatch.setattr(download, "_open", flaky_open)
    assert fetch(manifest, models, retries=1) == payload[1]
    assert calls == [0, 300_000]


def test_a_wrong_hash_deletes_the_download_and_replaces_nothing(tmp_path, server, payload):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"
    server.files["/" + NAME] = payload[0][:-8] + b"\x00" * 8  # same size, other bytes
    with pytest.raises(DownloadError, match=r"sha256 .* differs from the verified"):
        fetch(manifest, models)
    folder = models / "diffusion_models"
    assert list(folder.iterdir()) == []


def test_download_set_keeps_good_files_and_replaces_broken_ones(tmp_path, server, payload):
    manifest, models = manifest_for(tmp_path, server, payload), tmp_path / "models"
    target = models / "diffusion_models" / NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(payload[0])
    (result,) = download_set(manifest, "test-set", models, progress=False, backoff_s=0)
    assert result.outcome == "kept" and server.requests == []  # a good file: not even a request

    target.write_bytes(payload[0][: len(payload[0]) // 3])  # truncated by an earlier failure
    (result,) = download_set(manifest, "test-set", models, progress=False, backoff_s=0)
    assert result.outcome == "downloaded" and "replaced a wrong-size file" in result.detail
    assert target.read_bytes() == payload[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


def test_no_network_fails_at_once_listing_what_to_fetch(tmp_path, payload, capsys):
    fields = {"folder": "diffusion_models", "filename": NAME, "url": f"http://127.0.0.1:{closed_port()}/{NAME}",
              "size_bytes": len(payload[0]), "sha256": payload[1]}
    manifest = make_manifest(tmp_path, {"big": fields})
    models = tmp_path / "models"
    start = time.monotonic()
    with pytest.raises(NetworkUnavailable) as caught:
        download_set(manifest, "test-set", models, progress=False, probe_timeout_s=2)
    assert time.monotonic() - start < 5
    text = str(caught.value)
    assert f"models/diffusion_models/{NAME}" in text and fields["url"] in text and payload[1] in text
    assert not (models / "diffusion_models").exists()  # nothing created

    code = main(["--manifest", str(manifest.path), "download", "--set", "test-set", "--comfyui", str(tmp_path),
                 "--probe-timeout", "2", "--cache", str(tmp_path / "c.json"), "-q"])
    assert code == EXIT_NO_NETWORK
    assert "No network" in capsys.readouterr().err


def test_cli_download_then_verify(tmp_path, server, payload, capsys):
    manifest = manifest_for(tmp_path, server, payload)
    common = ["--manifest", str(manifest.path)]
    where = ["--set", "test-set", "--comfyui", str(tmp_path), "--cache", str(tmp_path / "c.json"), "-q"]
    assert main([*common, "download", *where]) == EXIT_OK
    assert "downloaded" in capsys.readouterr().out
    assert main([*common, "verify", *where]) == EXIT_OK
    assert "sha256 matches" in capsys.readouterr().out
