"""The weights manifest: schema, internal consistency, lookups and the messages built from it."""

import copy
import json

import jsonschema
import pytest

from beyond_monologue.errors import BMInputError
from beyond_monologue.weights import load_manifest, missing_file_error, missing_file_message
from beyond_monologue.weights.manifest import (
    DEFAULT_MANIFEST,
    SCHEMA_PATH,
    ManifestError,
    parse_manifest,
    validate_document,
)
from beyond_monologue.weights.messages import bad_file_error, manual_instructions


@pytest.fixture()
def document() -> dict:
    return json.loads(DEFAULT_MANIFEST.read_text())


def test_manifest_follows_its_json_schema(document):
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(document, schema)


def test_required_sets_are_present_with_their_status():
    manifest = load_manifest()
    assert manifest.get_set("beyond-monologue-wan22-5b").status == "waiting-for-weights"
    assert manifest.get_set("infinitetalk-wan21-14b-480p").status == "ready"
    assert manifest.get_set("speech-separation").files()
    five_b = {f.filename for f in manifest.get_set("beyond-monologue-wan22-5b").files()}
    assert {"wan2.2_ti2v_5B_fp16.safetensors", "wan2.2_vae.safetensors", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
            "wav2vec2-chinese-base_fp16.safetensors"} < five_b
    adapter = manifest.files["beyond_monologue_adapter_wan22_5b"]
    assert not adapter.published and adapter.sha256 is None


def test_infinitetalk_set_holds_the_comfyui_template_and_clip_vision():
    # video_wan2_1_infinitetalk (comfyui-workflow-templates-json 0.1.123): every model it embeds, plus CLIP ViT-H,
    # which the template leaves out and the official generator feeds to every call
    template = {
        ("diffusion_models", "Wan2_1-I2V-14B-480p_fp8_e4m3fn_scaled_KJ.safetensors"),
        ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"),
        ("vae", "Wan2_1_VAE_bf16.safetensors"),
        ("model_patches", "wan2.1_infiniteTalk_multi_fp16.safetensors"),
        ("audio_encoders", "wav2vec2-chinese-base_fp16.safetensors"),
        ("loras", "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"),
    }
    template.add(("clip_vision", "clip_vision_h.safetensors"))
    files = load_manifest().get_set("infinitetalk-wan21-14b-480p").files()
    assert template <= {(f.folder, f.filename) for f in files}


def test_only_research_verified_hashes_are_recorded():
    # weights.md marks the first two [V]; the Kijai VAE's is the one public download scripts pin at its
    # Hugging Face revision (weights.md's e027f685... is an older upload); nothing else may carry a hash
    # or size without its evidence
    verified = {"umt5_xxl_fp8_scaled": "c3355d30191f1f066b26d93fba017ae9809dce6c627dda5f6a66eaa651204f68",
                "wav2vec2_chinese_base_fp16": "000813e441020f18cff844c969d2d5d4adc2a5ce46b2db1f23950b05d88805b4",
                "wan21_vae_bf16_kijai": "1ab9a32cc2c740f6e39d80d367ce5dcc28db8c71b79b28670546b8973e9d75f9",
                # ComfyUI's own Wan2.1 templates carry it; public download scripts pin it with the size
                "clip_vision_h": "64a7ef761bfccbadbaa3da77366aac4185a6c58fa5de5f589b42a65bcc21f161"}
    for file in load_manifest().files.values():
        assert file.sha256 == verified.get(file.id), file.id
        assert (file.sha256 is None) == (file.sha256_evidence == "unknown"), file.id
        assert (file.size_bytes is None) == (file.size_evidence == "unknown"), file.id
    assert load_manifest().files["umt5_xxl_fp8_scaled"].size_bytes == 6_735_906_897


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["sets"]["speech-separation"]["files"].append({"id": "no_such_file", "required": True}),
     "unknown file id 'no_such_file'"),
    (lambda d: d["sets"]["infinitetalk-wan21-14b-480p"].update(status="waiting-for-weights"),
     "should be 'ready'"),
    (lambda d: d["files"]["wan22_vae"].update(sha256="ab" * 32), "evidence"),
    (lambda d: d["files"]["wan22_vae"].update(folder="models/vae"), "files/wan22_vae/folder"),
    (lambda d: d["files"]["wan22_vae"].update(repo_id="../../elsewhere"), "files/wan22_vae/repo_id"),
    (lambda d: d["files"]["wan22_vae"].update(path_in_repo="../../escape.safetensors"), "files/wan22_vae/path_in_repo"),
    (lambda d: d["files"]["wan22_vae"].update(path_in_repo="/etc/escape.safetensors"), "files/wan22_vae/path_in_repo"),
    (lambda d: d["files"]["wan22_vae"].update(revision="main"), "files/wan22_vae/revision"),
    (lambda d: d["files"]["wan22_vae"].update(revision=None), "files/wan22_vae/revision"),
    (lambda d: d["files"]["wan22_vae"].update(path_in_repo=None), "repo_id and path_in_repo"),
    (lambda d: d["files"]["wan22_vae"].update(size_bytes=None), "evidence"),
    (lambda d: d["files"]["wan22_vae"].update(filename="../escape.safetensors"), "files/wan22_vae/filename"),
    (lambda d: d["sets"]["speech-separation"]["files"].append({"id": "melband_roformer_fp16", "required": False}),
     "listed twice"),
])
def test_inconsistent_manifests_are_refused_with_the_place(document, edit, message):
    broken = copy.deepcopy(document)
    edit(broken)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_document(broken)


def test_every_entry_records_revision_size_and_sha256_or_says_unknown():
    document = json.loads(DEFAULT_MANIFEST.read_text())
    for file_id, entry in document["files"].items():
        for field in ("revision", "size_bytes", "sha256"):
            assert entry[field] is not None, (file_id, field)  # a value, or the literal "unknown"
    # the one commit a public listing gives (weights.md: the revision public download scripts pin)
    pinned = {k: e["revision"] for k, e in document["files"].items() if e["revision"] != "unknown"}
    assert pinned == {"wan21_vae_bf16_kijai": "87badb1f794c15daf51db60838a433ca08bb218f"}
    vae = load_manifest().files["wan21_vae_bf16_kijai"]
    assert vae.url == ("https://huggingface.co/Kijai/WanVideo_comfy/resolve/87badb1f794c15daf51db60838a433ca08bb218f/"
                       "Wan2_1_VAE_bf16.safetensors")
    assert load_manifest().files["wan22_vae"].revision is None  # "unknown" is None in Python


def test_unreadable_manifest_names_the_file(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match=str(bad)):
        load_manifest(bad)
    with pytest.raises(ManifestError, match="known sets: beyond-monologue-wan22-5b"):
        load_manifest().get_set("wan3")


def test_lookup_accepts_folder_aliases_and_other_spellings(document):
    manifest = parse_manifest(document, DEFAULT_MANIFEST)
    assert manifest.lookup("unet", "wan2.2_ti2v_5B_fp16.safetensors").id == "wan22_ti2v_5b_fp16"
    assert manifest.lookup("clip", "UMT5_XXL_FP8_E4M3FN_SCALED.safetensors").id == "umt5_xxl_fp8_scaled"
    assert manifest.lookup("model_patches", "wan2.1_infinitetalk_multi_fp16.safetensors").id == "infinitetalk_multi_fp16"
    assert manifest.lookup("vae", "wan2.2_ti2v_5B_fp16.safetensors") is None  # right name, wrong folder


def test_missing_file_error_names_set_folder_and_url():
    error = missing_file_error("vae_name", "vae", "Wan2_1_VAE_bf16.safetensors")
    assert isinstance(error, BMInputError)
    text = str(error)
    assert text.startswith("vae_name: 'Wan2_1_VAE_bf16.safetensors' is not in ComfyUI's models/vae folder.")
    assert "infinitetalk-wan21-14b-480p" in text and "ComfyUI/models/vae/" in text
    assert "https://huggingface.co/Kijai/WanVideo_comfy/resolve/87badb1f794c15daf51db60838a433ca08bb218f/Wan2_1_VAE_bf16.safetensors" in text
    assert "download --set infinitetalk-wan21-14b-480p" in text


def test_messages_for_unpublished_unknown_and_broken_files():
    unpublished = missing_file_message("model_patches", "beyond_monologue_wan2.2_5B_adapter.safetensors")
    assert "not been published yet" in unpublished and "beyond-monologue-wan22-5b" in unpublished
    unknown = missing_file_message("vae", "my_own_vae.safetensors")
    assert "models/vae" in unknown and "python -m beyond_monologue.weights list" in unknown
    broken = str(bad_file_error("audio_encoder", "audio_encoders", "wav2vec2-chinese-base_fp16.safetensors",
                                "the file is truncated."))
    assert broken.startswith("audio_encoder (models/audio_encoders/wav2vec2-chinese-base_fp16.safetensors): "
                             "the file is truncated.")
    assert "Kijai/wav2vec2_safetensors" in broken and "verify --set" in broken


def test_manual_instructions_list_folder_file_url_and_hash():
    manifest = load_manifest()
    text = manual_instructions(manifest.get_set("infinitetalk-wan21-14b-480p").files(required_only=True))
    for file in manifest.get_set("infinitetalk-wan21-14b-480p").files(required_only=True):
        assert f"models/{file.folder}/{file.filename}" in text and file.url in text
    assert "sha256 c3355d30191f1f066b26d93fba017ae9809dce6c627dda5f6a66eaa651204f68 (verified)" in text


@pytest.mark.parametrize("edit", [
    lambda d: d["files"]["wan22_vae"].pop("licence"),
    lambda d: d["files"]["wan22_vae"].update(mirror="elsewhere"),
    lambda d: d["sets"]["speech-separation"].pop("files"),
])
def test_other_schema_breaks_are_a_manifest_error_without_jsonschema(document, edit, tmp_path):
    broken = copy.deepcopy(document)
    edit(broken)
    with pytest.raises(jsonschema.ValidationError):  # the schema test catches it for the shipped file
        jsonschema.validate(broken, json.loads(SCHEMA_PATH.read_text()))
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(broken))
    with pytest.raises(ManifestError, match=r"does not follow manifest\.schema\.json"):
        load_manifest(path)


def test_loading_the_manifest_does_not_import_jsonschema():
    import subprocess
    import sys

    code = ("import sys\nfrom beyond_monologue.weights import load_manifest\nload_manifest()\n"
            "print('jsonschema' in sys.modules)")
    root = str(DEFAULT_MANIFEST.parents[1])
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
