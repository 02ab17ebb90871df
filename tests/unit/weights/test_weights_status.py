"""The weights-status payload from a one-off manifest and a fake folder listing (no ComfyUI)."""

from weights_testing import make_manifest

from beyond_monologue.weights.presence import LoaderInput, weights_status

REPO = "test-org/"


def test_rows_claim_files_and_share_folders(tmp_path):
    manifest = make_manifest(tmp_path, {
        "dit": {"folder": "diffusion_models", "filename": "dit.safetensors", "repo_id": REPO + "dit"},
        "separator": {"folder": "diffusion_models", "filename": "Sep.safetensors", "repo_id": REPO + "sep",
                      "alt_filenames": ["sep_v1.safetensors"]},
        "patch": {"folder": "model_patches", "filename": "patch.safetensors"},
    })
    inputs = (LoaderInput("DiT", "name", ("diffusion_models",)),
              LoaderInput("Separator", "model", ("diffusion_models",), files=("separator",)),
              LoaderInput("Adapter", "file", ("own_folder", "model_patches")))
    listings = {"diffusion_models": ["wan\\SEP_V1.safetensors"], "own_folder": ["patch.safetensors", "other.pt"]}
    calls = []

    def list_folder(folder):
        calls.append(folder)
        return listings.get(folder, [])

    status = weights_status(list_folder, manifest, inputs)
    assert sorted(calls) == ["diffusion_models", "model_patches", "own_folder"], "each folder listed once"
    assert status["inputs"] == {"DiT": {"name": {"folders": ["diffusion_models"], "files": ["dit"]}},
                                "Separator": {"model": {"folders": ["diffusion_models"], "files": ["separator"]}},
                                "Adapter": {"file": {"folders": ["own_folder", "model_patches"], "files": ["patch"]}}}
    # a Windows-style sub-folder and an alternative spelling in another case still count
    assert status["files"]["separator"]["found"] == [{"folder": "diffusion_models", "name": "wan\\SEP_V1.safetensors"}]
    # found in a folder its loader also reads, reported under the manifest's folder
    assert status["folders"]["model_patches"] == {"present": ["patch"], "missing": []}
    assert status["folders"]["own_folder"] == {"present": [], "missing": []}
    assert status["folders"]["diffusion_models"] == {"present": ["separator"], "missing": ["dit"]}
    assert status["files"]["dit"]["url"] == "https://huggingface.co/test-org/dit/resolve/main/dit.safetensors"
    assert status["files"]["patch"]["url"] is None
