"""download: resume over HTTP Range from a local server, sha256 check, atomic rename, no-network fast failure."""

import socket
import time

import pytest
from weights_testing import RangeServer, make_manifest, sha256_of, write_safetensors

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


@pytest.fixture()
def server(payload):
    with RangeServer() as running:
        running.files["/" + NAME] = payload[0]
        yield running


def manifest_for(tmp_path, server, payload, sha=True):
    fields = {"folder": "diffusion_models", "filename": NAME, "url": f"{server.url}/{NAME}",
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
