"""The data of GET /beyond_monologue/weights over a temporary models folder registered with folder_paths,
and the loader table checked against the real nodes' option lists."""

from pathlib import Path

import pytest
from weights_testing import write_safetensors

# ComfyUI's default layout: diffusion_models also lists models/unet, text_encoders models/clip.
FOLDER_DIRS = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip"),
               "vae": ("vae",), "audio_encoders": ("audio_encoders",), "model_patches": ("model_patches",),
               "loras": ("loras",), "beyond_monologue": ("beyond_monologue",), "bm_evaluation": ("bm_evaluation",),
               "clip_vision": ("clip_vision",)}
PLACED = [  # (directory under models/, relative file name)
    ("unet", "wan2.2_ti2v_5B_fp16.safetensors"),  # legacy alias directory of diffusion_models
    ("clip", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),  # legacy alias directory of text_encoders
    ("vae", "wan22/wan2.2_vae.safetensors"),  # in a sub-folder
    ("vae", "my_own_vae.safetensors"),  # a file the manifest does not know
    ("beyond_monologue", "wan2.1_infinitetalk_multi_fp16.safetensors"),  # alternative spelling, pack's own folder
]


@pytest.fixture()
def models(comfy, tmp_path, monkeypatch):
    """A temporary ComfyUI models folder, registered with folder_paths in place of the real one."""
    import folder_paths

    root = tmp_path / "models"
    for key, dirs in FOLDER_DIRS.items():
        extensions = folder_paths.folder_names_and_paths.get(key, ([], {".safetensors"}))[1]
        paths = [str(root / d) for d in dirs]
        for path in paths:
            Path(path).mkdir(parents=True, exist_ok=True)
        monkeypatch.setitem(folder_paths.folder_names_and_paths, key, (paths, extensions))
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})
    for directory, name in PLACED:
        write_safetensors(root / directory / name, values=4)
    return root


def test_present_and_missing_files_per_folder(pack, models):
    route = pack.beyond_monologue.weights.route
    manifest = pack.beyond_monologue.weights.load_manifest()
    status = route.status_payload()
    assert status["version"] == 1
    assert set(status["files"]) == set(manifest.files)

    present = {file_id for file_id, entry in status["files"].items() if entry["present"]}
    assert present == {"wan22_ti2v_5b_fp16", "umt5_xxl_fp8_scaled", "wan22_vae", "infinitetalk_multi_fp16"}
    folders = status["folders"]
    assert folders["diffusion_models"] == {"present": ["wan22_ti2v_5b_fp16"],
                                           "missing": ["wan21_i2v_14b_480p_fp8_scaled_kj", "melband_roformer_fp16"]}
    assert folders["text_encoders"] == {"present": ["umt5_xxl_fp8_scaled"], "missing": []}
    assert folders["vae"] == {"present": ["wan22_vae"], "missing": ["wan21_vae_bf16_kijai"]}
    # the adapter found in the pack's own folder counts for its manifest folder, model_patches
    assert folders["model_patches"]["present"] == ["infinitetalk_multi_fp16"]
    assert folders["beyond_monologue"] == {"present": [], "missing": []}
    assert status["files"]["infinitetalk_multi_fp16"]["found"] == [
        {"folder": "beyond_monologue", "name": "wan2.1_infinitetalk_multi_fp16.safetensors"}]
    assert status["files"]["wan22_vae"]["found"] == [{"folder": "vae", "name": "wan22/wan2.2_vae.safetensors"}]
    # the unknown file is nobody's: it makes no manifest file present and is not reported
    assert "my_own_vae" not in str(status)

    melband = status["files"]["melband_roformer_fp16"]
    expected = manifest.files["melband_roformer_fp16"]
    assert melband == {
        "id": "melband_roformer_fp16", "folder": "diffusion_models", "filename": "MelBandRoformer_fp16.safetensors",
        "alt_filenames": [], "url": expected.url, "size_bytes": None, "size": expected.size_text(),
        "licence": expected.licence, "purpose": expected.purpose, "sets": ["speech-separation"],
        "present": False, "found": []}
    adapter = status["files"]["beyond_monologue_adapter_wan22_5b"]
    assert adapter["url"] is None and adapter["sets"] == ["beyond-monologue-wan22-5b"]
    assert status["files"]["umt5_xxl_fp8_scaled"]["size_bytes"] == 6_735_906_897
    # two loaders read diffusion_models: the separator's row claims its file, the DiT loader gets the rest
    assert status["inputs"]["BMSeparateSpeech"]["model_name"] == {"folders": ["diffusion_models"],
                                                                  "files": ["melband_roformer_fp16"]}
    assert status["inputs"]["UNETLoader"]["unet_name"]["files"] == ["wan22_ti2v_5b_fp16", "wan21_i2v_14b_480p_fp8_scaled_kj"]


def test_presence_follows_the_folder_as_it_changes(pack, models):
    route = pack.beyond_monologue.weights.route
    assert not route.status_payload()["files"]["wan21_vae_bf16_kijai"]["present"]
    write_safetensors(models / "vae" / "Wan2_1_VAE_bf16.safetensors", values=4)
    assert route.status_payload()["files"]["wan21_vae_bf16_kijai"]["present"]
    (models / "unet" / "wan2.2_ti2v_5B_fp16.safetensors").unlink()
    assert not route.status_payload()["files"]["wan22_ti2v_5b_fp16"]["present"]


def test_unregistered_folder_lists_nothing_and_no_server_means_no_route(pack):
    route = pack.beyond_monologue.weights.route
    assert route.comfy_folder_files("no_such_folder_key") == []
    assert route.register_route() is False  # in-process ComfyUI without a PromptServer


def combo_options(spec) -> list[str]:
    """The option list of a V1 (``[options]``) or V3 (``("COMBO", {"options": ...})``) combo input spec."""
    return list(spec[1]["options"]) if spec[0] == "COMBO" else list(spec[0])


def node_inputs(node_type: str, pack_nodes) -> dict:
    from comfy_extras import nodes_audio_encoder

    import nodes

    native = {**nodes.NODE_CLASS_MAPPINGS, "AudioEncoderLoader": nodes_audio_encoder.AudioEncoderLoader}
    node_class = pack_nodes.get(node_type) or native[node_type]
    types = node_class.INPUT_TYPES()
    return {**types.get("required", {}), **types.get("optional", {})}


def test_loader_table_matches_the_nodes_option_lists(pack, pack_nodes, models):
    presence = pack.beyond_monologue.weights.presence
    manifest = pack.beyond_monologue.weights.load_manifest()
    marker = {key: f"bm_probe_{key}.safetensors" for key in FOLDER_DIRS}
    for key, name in marker.items():
        write_safetensors(models / FOLDER_DIRS[key][0] / name, values=4)
    for row in presence.LOADER_INPUTS:
        options = combo_options(node_inputs(row.node, pack_nodes)[row.input])
        listed = {key for key, name in marker.items() if name in options}
        assert listed == set(row.folders), f"{row.node}.{row.input} lists {sorted(listed)}, the table says {row.folders}"
        for file in presence.input_files(row, manifest):
            assert file.folder in row.folders, f"{row.node}.{row.input} cannot load {file.id} from models/{file.folder}"
    # every manifest file has a loader input that offers it
    offered = {f.id for row in presence.LOADER_INPUTS for f in presence.input_files(row, manifest)}
    assert offered == set(manifest.files)
