"""download: huggingface_hub against a local stand-in for the hub (no network): pinned revision,
resume, sha256 refusal, HF_TOKEN, HF_ENDPOINT, no network -> the files to fetch by hand."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from weights_testing import HubServer, make_manifest, sha256_of, write_safetensors

from beyond_monologue.weights.cli import EXIT_NO_NETWORK, EXIT_OK, main
from beyond_monologue.weights.download import DownloadError, NetworkUnavailable, download_file, download_set
from beyond_monologue.weights.hashing import Sha256Cache
from beyond_monologue.weights.verify import Status, verify_set

pytestmark = pytest.mark.timeout(60)
NAME = "big.safetensors"
REPO = "test-org/test-models"
IN_REPO = f"split_files/diffusion_models/{NAME}"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PACK_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def payload(tmp_path):
    """A 2.5 MB safetensors file (bytes) and its sha256."""
    source = write_safetensors(tmp_path / "source" / NAME, values=1_250_000, seed=3)
    return source.read_bytes(), sha256_of(source)


@pytest.fixture()
def hub(payload):
    with HubServer() as running:
        running.repos[REPO] = {"commit": COMMIT, "files": {IN_REPO: payload[0]}}
        yield running


def manifest_for(tmp_path, payload, revision=COMMIT, sha=True, size=True):
    fields = {"folder": "diffusion_models", "filename": NAME, "repo_id": REPO, "path_in_repo": IN_REPO,
              "revision": revision, "size_bytes": len(payload[0]) if size else None,
              "sha256": payload[1] if sha else None}
    return make_manifest(tmp_path, {"big": fields})


def fetch_set(manifest, models, hub, **options):
    return download_set(manifest, "test-set", models, endpoint=hub.url, progress=False, backoff_s=0, **options)


def hub_paths(hub):
    return [(method, path) for where, method, path, _, _ in hub.requests if where == "hub"]


def test_a_fresh_download_lands_in_the_models_folder_from_the_pinned_commit(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    cache = Sha256Cache()
    (result,) = fetch_set(manifest, models, hub, cache=cache)
    target = models / "diffusion_models" / NAME
    assert result.outcome == "downloaded" and result.path == target and f"commit {COMMIT}" in result.detail
    assert target.read_bytes() == payload[0]
    assert list(target.parent.iterdir()) == [target]  # the staging folder is gone
    # every request named the pinned commit, never a branch
    assert hub_paths(hub) and all(path == f"/{REPO}/resolve/{COMMIT}/{IN_REPO}" for _, path in hub_paths(hub))
    assert cache.get(target) == payload[1]
    (report,) = verify_set(manifest, "test-set", models, cache)
    assert report.status == Status.OK


def test_an_unknown_revision_uses_main_and_then_the_commit_main_resolved_to(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload, revision=None), tmp_path / "models"
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "downloaded" and "pins no revision" in result.detail and COMMIT in result.detail
    paths = [path for _, path in hub_paths(hub)]
    assert paths[0] == f"/{REPO}/resolve/main/{IN_REPO}"  # asked once which commit main is
    assert set(paths[1:]) == {f"/{REPO}/resolve/{COMMIT}/{IN_REPO}"}  # then downloaded that commit


def test_a_dropped_connection_is_resumed_with_a_range_request(tmp_path, hub):
    # huggingface_hub 2.4.0 writes what it received in 10 MiB chunks: the file must be larger for a resume
    source = write_safetensors(tmp_path / "source" / NAME, values=12_000_000, seed=5)
    data = source.read_bytes()
    hub.repos[REPO]["files"][IN_REPO] = data
    manifest, models = manifest_for(tmp_path, (data, sha256_of(source))), tmp_path / "models"
    hub.fail_after, hub.fail_times = 15_000_000, 1
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "downloaded"
    assert (models / "diffusion_models" / NAME).read_bytes() == data
    (first, first_range), (second, second_range) = hub.gets()
    assert first == second and first_range is None
    resumed_at = int(second_range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 15_000_000  # only the rest was asked for


def test_a_hub_file_with_another_sha256_is_refused_before_any_transfer(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    other = payload[0][:-8] + b"\x00" * 8  # same size, other bytes: the hub's LFS sha256 differs
    hub.repos[REPO]["files"][IN_REPO] = other
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "failed" and "nothing was downloaded" in result.detail
    assert NAME in result.detail and str(models / "diffusion_models") in result.detail
    assert hub.gets() == []


def test_downloaded_bytes_with_a_wrong_sha256_are_deleted_and_the_old_file_stays(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    target = models / "diffusion_models" / NAME
    target.parent.mkdir(parents=True)
    old = payload[0][: len(payload[0]) // 3]  # a truncated earlier copy: not usable, so a download starts
    target.write_bytes(old)
    hub.tamper[payload[1]] = payload[0][:-8] + b"\x00" * 8  # the hub claims the right sha256, sends other bytes
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "failed" and "sha256" in result.detail and "nothing was replaced" in result.detail
    assert target.read_bytes() == old and list(target.parent.iterdir()) == [target]


def test_good_files_are_kept_without_a_request_and_broken_ones_replaced(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    target = models / "diffusion_models" / NAME
    target.parent.mkdir(parents=True)
    target.write_bytes(payload[0])
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "kept" and hub.requests == []

    target.write_bytes(payload[0][: len(payload[0]) // 3])
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "downloaded" and "replaced a wrong-size file" in result.detail
    assert target.read_bytes() == payload[0]


def test_hf_token_goes_to_the_hub_and_not_to_the_cdn(tmp_path, hub, payload, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "downloaded"
    auth = {(where, token) for where, _, _, _, token in hub.requests}
    assert auth == {("hub", "Bearer hf_test_token"), ("cdn", None)}


def test_hub_errors_fail_that_file_naming_it_and_its_folder(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    hub.repos[REPO]["files"] = {}
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "failed" and "404" in result.detail
    assert NAME in result.detail and str(models / "diffusion_models") in result.detail


def test_a_local_error_fails_that_file_naming_it_and_its_folder(tmp_path, hub, payload):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    models.mkdir()
    (models / "diffusion_models").write_text("a file where the folder should be")
    file = manifest.files["big"]
    with pytest.raises(DownloadError, match=r"big\.safetensors .*diffusion_models.*nothing was replaced"):
        download_file(file, file.target_path(models), endpoint=hub.url, backoff_s=0, progress=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens here once the socket is closed


def test_no_network_fails_at_once_listing_what_to_fetch(tmp_path, payload, capsys, monkeypatch):
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    with pytest.raises(NetworkUnavailable) as caught:
        download_set(manifest, "test-set", models, endpoint=f"http://127.0.0.1:{closed_port()}", progress=False,
                     probe_timeout_s=2)
    text = str(caught.value)
    file = manifest.files["big"]
    assert f"models/diffusion_models/{NAME}" in text and file.url in text and payload[1] in text
    assert f"/{REPO}/resolve/{COMMIT}/{IN_REPO}" in file.url
    assert not (models / "diffusion_models").exists()  # nothing created

    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code = main(["--manifest", str(manifest.path), "download", "--set", "test-set", "--comfyui", str(tmp_path),
                 "--cache", str(tmp_path / "c.json"), "-q"])
    assert code == EXIT_NO_NETWORK
    assert "No network: HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_cli_downloads_through_hf_endpoint_with_hf_token_then_verifies(tmp_path, hub, payload, capsys):
    # a fresh interpreter: huggingface_hub reads HF_ENDPOINT when it is imported
    manifest = manifest_for(tmp_path, payload)
    where = ["--set", "test-set", "--comfyui", str(tmp_path), "--cache", str(tmp_path / "c.json"), "-q"]
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_mirror_token", "HF_HUB_OFFLINE": "0",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACK_ROOT), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-m", "beyond_monologue.weights", "--manifest", str(manifest.path),
                          "download", *where], env=env, cwd=PACK_ROOT, capture_output=True, text=True, timeout=50)
    assert run.returncode == EXIT_OK, run.stderr
    assert "downloaded" in run.stdout
    assert ("hub", "HEAD", f"/{REPO}/resolve/{COMMIT}/{IN_REPO}", None, "Bearer hf_mirror_token") in hub.requests
    assert main(["--manifest", str(manifest.path), "verify", *where]) == EXIT_OK
    assert "sha256 matches" in capsys.readouterr().out


def test_a_file_left_in_a_staging_folder_is_not_taken_for_the_model(tmp_path, hub, payload):
    # a run killed after huggingface_hub finished but before the check and rename leaves an unchecked file
    manifest, models = manifest_for(tmp_path, payload), tmp_path / "models"
    leftover = models / "diffusion_models" / ".bm_download-big" / IN_REPO
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(payload[0][:-8] + b"\x00" * 8)
    (report,) = verify_set(manifest, "test-set", models)
    assert report.status == Status.MISSING
    (result,) = fetch_set(manifest, models, hub)
    assert result.outcome == "downloaded" and (models / "diffusion_models" / NAME).read_bytes() == payload[0]
    assert not leftover.parent.exists()
