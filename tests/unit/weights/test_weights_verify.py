"""verify: presence, size, safetensors structure, sha256 (cached), smoke files."""

import os

import pytest
from weights_testing import make_manifest, sha256_of, write_safetensors

from beyond_monologue.weights import hashing
from beyond_monologue.weights.hashing import Sha256Cache
from beyond_monologue.weights.safetensors_info import completeness_problem, read_safetensors_info
from beyond_monologue.weights.verify import Status, models_dir_of, set_is_usable, verify_set


@pytest.fixture()
def models(tmp_path):
    return tmp_path / "ComfyUI" / "models"


def one_file(tmp_path, models, known_size=True, known_hash=True, name="model.safetensors"):
    path = write_safetensors(models / "vae" / name, values=50_000)
    fields = {"folder": "vae", "filename": name, "repo_id": "test-org/model.safetensors"}
    if known_size:
        fields["size_bytes"] = path.stat().st_size
    if known_hash:
        fields["sha256"] = sha256_of(path)
    return make_manifest(tmp_path, {"model": fields}), path


def status_of(manifest, models, cache=None):
    (report,) = verify_set(manifest, "test-set", models, cache)
    return report


def test_a_good_file_is_ok_and_the_second_check_uses_the_cache(tmp_path, models, monkeypatch):
    manifest, path = one_file(tmp_path, models)
    cache_file = tmp_path / "cache" / "sha256.json"
    cache = Sha256Cache(cache_file)
    report = status_of(manifest, models, cache)
    assert report.status == Status.OK and report.path == path
    cache.save()
    assert cache_file.is_file()

    hashed = []
    original = hashing.hash_stream_into
    monkeypatch.setattr(hashing, "hash_stream_into", lambda *a, **k: hashed.append(a[1]) or original(*a, **k))
    assert status_of(manifest, models, Sha256Cache(cache_file)).status == Status.OK
    assert hashed == []  # answered from the cache written by the first run
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # touched: hash again
    assert status_of(manifest, models, Sha256Cache(cache_file)).status == Status.OK
    assert hashed == [path]


def test_a_truncated_file_is_detected_with_and_without_a_known_size(tmp_path, models):
    manifest, path = one_file(tmp_path, models)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = status_of(manifest, models)
    assert report.status == Status.WRONG_SIZE and "truncated" in report.detail
    unsized, _ = one_file(tmp_path, models, known_size=False, known_hash=False, name="other.safetensors")
    other = models / "vae" / "other.safetensors"
    other.write_bytes(other.read_bytes()[:-1000])
    report = status_of(unsized, models)
    assert report.status == Status.CORRUPT and "truncated" in report.detail


def test_a_corrupted_file_of_the_right_size_fails_its_hash(tmp_path, models):
    manifest, path = one_file(tmp_path, models)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit pattern inside the tensor data
    path.write_bytes(bytes(data))
    report = status_of(manifest, models, Sha256Cache())
    assert report.status == Status.HASH_MISMATCH and not report.status.ok
    assert "differs from the verified" in report.detail


def test_a_broken_header_is_corrupt(tmp_path, models):
    manifest, path = one_file(tmp_path, models, known_size=False, known_hash=False)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    report = status_of(manifest, models)
    assert report.status == Status.CORRUPT and "not valid JSON" in report.detail


def test_unknown_hash_is_checked_by_structure_only_and_says_so(tmp_path, models):
    manifest, _ = one_file(tmp_path, models, known_size=False, known_hash=False)
    report = status_of(manifest, models)
    assert report.status == Status.OK_UNHASHED and report.status.ok
    assert "structure checked; no published sha256" in report.detail


def test_missing_unpublished_alias_folder_and_optional_files(tmp_path, models):
    write_safetensors(models / "unet" / "Big_Model.safetensors")  # ComfyUI's legacy alias folder, other case
    manifest = make_manifest(tmp_path, {
        "dit": {"folder": "diffusion_models", "filename": "big_model.safetensors", "repo_id": "test-org/a"},
        "gone": {"folder": "vae", "filename": "gone.safetensors", "repo_id": "test-org/b"},
        "extra": {"folder": "loras", "filename": "extra.safetensors", "repo_id": "test-org/c"},
        "future": {"folder": "model_patches", "filename": "future.safetensors"},
    }, required={"extra": False})
    reports = {r.file.id: r for r in verify_set(manifest, "test-set", models)}
    assert reports["dit"].status == Status.OK_UNHASHED and reports["dit"].path.parent.name == "unet"
    assert reports["gone"].status == Status.MISSING
    assert reports["future"].status == Status.UNPUBLISHED
    assert reports["extra"].status == Status.MISSING and not reports["extra"].required
    assert not set_is_usable(list(reports.values()))
    assert set_is_usable([reports["dit"], reports["extra"]])  # an optional file may be absent


def test_smoke_checkpoints_are_reported_as_smoke(tmp_path, models):
    path = write_safetensors(models / "vae" / "model.safetensors", metadata={"bm_smoke": "untrained"})
    manifest = make_manifest(tmp_path, {"model": {"folder": "vae", "filename": "model.safetensors",
                                                  "repo_id": "test-org/m", "sha256": "0" * 64}})
    report = status_of(manifest, models)
    assert report.status == Status.SMOKE and report.path == path and not report.status.ok


def test_header_reader_and_completeness(tmp_path):
    path = write_safetensors(tmp_path / "x.safetensors", values=10, metadata={"k": "v"})
    info = read_safetensors_info(path)
    assert info.tensors == {"weight": ("F16", (10,))} and info.metadata == {"k": "v"}
    assert info.expected_file_bytes == path.stat().st_size and completeness_problem(path) is None
    path.write_bytes(path.read_bytes() + b"junk")
    assert "unexpected bytes" in completeness_problem(path)
    path.write_bytes(b"abc")
    assert "not a safetensors file" in completeness_problem(path)


def test_models_dir_of_accepts_comfyui_or_models_folder(tmp_path):
    (tmp_path / "ComfyUI" / "models").mkdir(parents=True)
    assert models_dir_of(tmp_path / "ComfyUI") == tmp_path / "ComfyUI" / "models"
    assert models_dir_of(tmp_path / "ComfyUI" / "models") == tmp_path / "ComfyUI" / "models"


def test_a_file_replaced_with_same_size_and_mtime_is_hashed_again(tmp_path, models):
    manifest, path = one_file(tmp_path, models)
    cache = Sha256Cache()
    assert status_of(manifest, models, cache).status == Status.OK
    old = path.stat()
    copy = write_safetensors(tmp_path / "elsewhere" / path.name, values=50_000, seed=1)  # same size, other values
    assert copy.stat().st_size == old.st_size
    os.utime(copy, ns=(old.st_atime_ns, old.st_mtime_ns))  # what `cp -p` keeps
    os.replace(copy, path)
    assert path.stat().st_size == old.st_size and path.stat().st_mtime_ns == old.st_mtime_ns
    assert status_of(manifest, models, cache).status == Status.HASH_MISMATCH


def test_a_file_changed_while_it_is_hashed_is_not_cached(tmp_path, models, monkeypatch):
    manifest, path = one_file(tmp_path, models)
    original = hashing.hash_stream_into

    def hash_then_touch(digest, file, *args, **kwargs):
        original(digest, file, *args, **kwargs)
        stat = file.stat()
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # written to during the hash

    monkeypatch.setattr(hashing, "hash_stream_into", hash_then_touch)
    cache = Sha256Cache()
    assert status_of(manifest, models, cache).status == Status.OK
    assert cache.get(path) is None  # the digest may not be of what is on disk now


def test_sub_folders_count_in_verify_as_they_do_in_comfyui_and_the_presence_payload(tmp_path, models):
    from beyond_monologue.weights.presence import find_file

    manifest = make_manifest(tmp_path, {
        "vae": {"folder": "vae", "filename": "model.safetensors", "repo_id": "test-org/v"},
        "dit": {"folder": "diffusion_models", "filename": "dit.safetensors", "repo_id": "test-org/d"},
        "gone": {"folder": "vae", "filename": "gone.safetensors", "repo_id": "test-org/g"},
    })
    nested = write_safetensors(models / "vae" / "wan" / "2.2" / "Model.safetensors")
    aliased = write_safetensors(models / "unet" / "kijai" / "dit.safetensors")
    write_safetensors(models / "vae" / ".git" / "gone.safetensors")  # ComfyUI skips .git folders

    def listing(folder):  # what folder_paths.get_filename_list gives (its recursive_search)
        names = []
        for sub in {"diffusion_models": ("diffusion_models", "unet")}.get(folder, (folder,)):
            for dirpath, dirs, files in os.walk(models / sub, followlinks=True):
                dirs[:] = [d for d in dirs if d != ".git"]
                names += [os.path.relpath(os.path.join(dirpath, f), models / sub) for f in files]
        return names

    reports = {r.file.id: r for r in verify_set(manifest, "test-set", models)}
    for file_id, expected in (("vae", nested), ("dit", aliased), ("gone", None)):
        file = manifest.files[file_id]
        present = bool(find_file(file, {file.folder: listing(file.folder)}, [file.folder]))
        assert present == (expected is not None) == reports[file_id].status.ok
        assert reports[file_id].path == expected


def test_verify_names_the_path_it_found(tmp_path, models, capsys):
    from beyond_monologue.weights.cli import main

    write_safetensors(models / "vae" / "wan" / "model.safetensors")
    manifest = make_manifest(tmp_path, {"vae": {"folder": "vae", "filename": "model.safetensors",
                                                "repo_id": "test-org/v"}})
    assert main(["--manifest", str(manifest.path), "verify", "--set", "test-set", "--comfyui", str(models.parent),
                 "--cache", str(tmp_path / "c.json"), "-q"]) == 0
    assert "models/vae/model.safetensors (found as models/vae/wan/model.safetensors)" in capsys.readouterr().out
