"""Smoke checkpoints: deterministic, marked untrained, real layouts at real and reduced dimensions."""

import pytest
import torch
from safetensors import safe_open

from beyond_monologue.weights import load_manifest
from beyond_monologue.weights.cli import EXIT_FAILED, EXIT_OK, main
from beyond_monologue.weights.smoke import BUILDERS, umt5, wan_dit, wav2vec2
from beyond_monologue.weights.smoke.tensors import parameter_count
from beyond_monologue.weights.verify import Status, verify_set


def test_every_builder_serves_a_manifest_file():
    used = {f.smoke for f in load_manifest().files.values()}
    assert set(BUILDERS) <= used


@pytest.mark.parametrize("builder_id", ["wan22_ti2v_5b_dit", "infinitetalk_adapter", "wan21_vae"])
def test_builders_are_deterministic_in_the_seed(builder_id):
    first, meta = BUILDERS[builder_id](0)
    again, _ = BUILDERS[builder_id](0)
    other, _ = BUILDERS[builder_id](1)
    assert first.keys() == again.keys() == other.keys() and meta["bm_smoke_layout"]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def published_infinitetalk_shapes(dim: int = 5120, num_layers: int = 40) -> dict[str, tuple[int, ...]]:
    """Every key of the public InfiniteTalk/MultiTalk model_patches file, written out independently of
    the adapter code from weights.md §3.1 (MeiGen MultiTalk ``AudioProjModel`` + per-block audio attention)."""
    shapes = {"audio_proj.proj1.weight": (512, 5 * 12 * 768), "audio_proj.proj1.bias": (512,),
              "audio_proj.proj1_vf.weight": (512, 8 * 12 * 768), "audio_proj.proj1_vf.bias": (512,),
              "audio_proj.proj2.weight": (512, 512), "audio_proj.proj2.bias": (512,),
              "audio_proj.proj3.weight": (32 * 768, 512), "audio_proj.proj3.bias": (32 * 768,),
              "audio_proj.norm.weight": (768,), "audio_proj.norm.bias": (768,)}
    for n in range(num_layers):
        shapes |= {f"blocks.{n}.norm_x.weight": (dim,), f"blocks.{n}.norm_x.bias": (dim,),
                   f"blocks.{n}.audio_cross_attn.q_linear.weight": (dim, dim),
                   f"blocks.{n}.audio_cross_attn.q_linear.bias": (dim,),
                   f"blocks.{n}.audio_cross_attn.kv_linear.weight": (2 * dim, 768),
                   f"blocks.{n}.audio_cross_attn.kv_linear.bias": (2 * dim,),
                   f"blocks.{n}.audio_cross_attn.proj.weight": (dim, dim),
                   f"blocks.{n}.audio_cross_attn.proj.bias": (dim,)}
    return shapes


def test_real_size_adapter_layout_matches_the_published_infinitetalk_shapes():
    from beyond_monologue.model import adapter_checkpoint, infinitetalk
    from beyond_monologue.model.duplex_adapter import LAYOUT_INFINITETALK, AdapterConfig, DuplexAdapter
    from beyond_monologue.model.mhgk import MHGKKernel

    cfg = AdapterConfig(LAYOUT_INFINITETALK, 5120, 40, 40, ("talk",), False, infinitetalk.InfiniteTalkConfig(),
                        {"talk": MHGKKernel.frame_local(40)}, base_model="wan2.1-i2v-14b", trained=False)
    with torch.device("meta"):
        tensors, _ = adapter_checkpoint.file_state_dict(DuplexAdapter(cfg))
    published = published_infinitetalk_shapes()
    assert {k: tuple(v.shape) for k, v in tensors.items()} == published
    assert sum(torch.Size(s).numel() for s in published.values()) == pytest.approx(2.487e9, rel=0.002)


def test_real_size_wav2vec2_and_wan_layouts_have_the_known_sizes():
    assert parameter_count(wav2vec2.wav2vec2_base_layout()) == pytest.approx(94.4e6, rel=0.01)
    i2v_14b = wan_dit.wan_dit_layout(dim=5120, ffn_dim=13824, num_layers=40, in_dim=36, out_dim=16, i2v=True)
    assert parameter_count(i2v_14b) == pytest.approx(16.4e9, rel=0.01)  # ~32.8 GB in fp16 (weights.md §1.1)
    assert i2v_14b["patch_embedding.weight"].shape == (5120, 36, 1, 2, 2)


def test_smoke_adapter_fits_the_smoke_wan21_dit():
    dit, _ = BUILDERS["wan21_i2v_14b_dit"](0)
    adapter, _ = BUILDERS["infinitetalk_adapter"](0)
    dim = dit["head.modulation"].shape[-1]
    layers = len({k.split(".")[1] for k in dit if k.startswith("blocks.")})
    assert adapter["blocks.0.audio_cross_attn.q_linear.weight"].shape == (dim, dim)
    assert len({k.split(".")[1] for k in adapter if k.startswith("blocks.")}) == layers


def test_storage_dtypes_follow_the_real_files():
    five_b, _ = BUILDERS["wan22_ti2v_5b_dit"](0)
    assert {t.dtype for t in five_b.values()} == {torch.float16}
    assert five_b["patch_embedding.weight"].shape == (wan_dit.SMOKE_DIM, 48, 1, 2, 2)
    fp8, _ = BUILDERS["wan21_i2v_14b_dit"](0)
    assert fp8["blocks.0.self_attn.q.weight"].dtype == torch.float8_e4m3fn
    assert fp8["blocks.0.self_attn.q.scale_weight"].dtype == torch.float32
    assert fp8["blocks.0.norm3.weight"].dtype == torch.float16
    assert fp8["scaled_fp8"].dtype == torch.float8_e4m3fn and fp8["scaled_fp8"].numel() == 0
    scaled = fp8["blocks.0.ffn.0.weight"].float() * fp8["blocks.0.ffn.0.scale_weight"]
    assert torch.isfinite(scaled).all() and 0 < scaled.abs().max() < 1
    text, _ = umt5.umt5_xxl_fp8_scaled_reduced(0)
    assert text["spiece_model"].dtype == torch.uint8 and text["shared.weight"].shape[1] == 4096
    vae, _ = BUILDERS["wan21_vae"](0)
    assert {t.dtype for t in vae.values()} == {torch.bfloat16}


def test_generated_files_say_they_are_untrained_and_are_not_rewritten(tmp_path, capsys):
    manifest = load_manifest()
    models = tmp_path / "models"
    code = main(["smoke", "--out", str(tmp_path), "--set", "speech-separation"])
    assert code == EXIT_OK

    small = [f for f in manifest.get_set("infinitetalk-wan21-14b-480p").files()
             if f.smoke in ("wan21_i2v_14b_dit", "infinitetalk_adapter", "wan21_vae")]
    from beyond_monologue.weights.smoke.generate import generate_file

    results = [generate_file(f, models, seed=7) for f in small]
    assert {r.outcome for r in results} == {"written"}
    for result in results:
        with safe_open(str(result.path), "pt") as handle:
            metadata = handle.metadata()
        assert "untrained" in metadata["bm_smoke"] and metadata["bm_smoke_seed"] == "7"
    mtimes = [r.path.stat().st_mtime_ns for r in results]
    again = [generate_file(f, models, seed=7) for f in small]
    assert {r.outcome for r in again} == {"kept"} and [r.path.stat().st_mtime_ns for r in again] == mtimes
    assert generate_file(small[0], models, seed=8).outcome == "written"  # another seed: regenerated

    reports = {r.file.id: r for r in verify_set(manifest, "infinitetalk-wan21-14b-480p", models)}
    assert reports["wan21_vae_bf16_kijai"].status == Status.SMOKE
    assert main(["verify", "--set", "infinitetalk-wan21-14b-480p", "--comfyui", str(tmp_path), "-q",
                 "--cache", str(tmp_path / "c.json")]) == EXIT_FAILED



def test_smoke_never_replaces_a_file_that_is_not_a_smoke_checkpoint(tmp_path, capsys):
    from weights_testing import make_manifest, write_safetensors

    manifest = make_manifest(tmp_path, {
        "vae": {"folder": "vae", "filename": "Wan2_1_VAE_bf16.safetensors", "smoke": "wan21_vae"},
        "dit": {"folder": "diffusion_models", "filename": "wan21_dit.safetensors", "smoke": "wan21_i2v_14b_dit"},
        "patch": {"folder": "model_patches", "filename": "patch.safetensors", "smoke": "infinitetalk_adapter"},
    })
    models = tmp_path / "ComfyUI" / "models"
    real_vae = write_safetensors(models / "vae" / "Wan2_1_VAE_bf16.safetensors", seed=1)  # a user's real model
    real_dit = write_safetensors(models / "unet" / "Wan21_DiT.safetensors", seed=2)  # alias folder, other case
    before = {path: path.read_bytes() for path in (real_vae, real_dit)}

    code = main(["--manifest", str(manifest.path), "smoke", "--out", str(tmp_path / "ComfyUI"), "--force"])
    assert code == EXIT_OK
    assert all(path.read_bytes() == data for path, data in before.items())  # not even with --force
    assert not (models / "diffusion_models").exists()  # and no second copy beside the real one
    out = capsys.readouterr().out
    for path in before:
        assert f"{path} is not a smoke checkpoint; left untouched" in out
    assert (models / "model_patches" / "patch.safetensors").is_file() and "written" in out


def test_smoke_rewrites_an_outdated_smoke_file_where_it_is_found(tmp_path):
    from weights_testing import make_manifest

    from beyond_monologue.weights.smoke import generate

    manifest = make_manifest(tmp_path, {
        "vae": {"folder": "vae", "filename": "vae.safetensors", "smoke": "wan21_vae"}})
    file = manifest.files["vae"]
    old = tmp_path / "models" / "vae" / "smoke" / "VAE.safetensors"  # a sub-folder, as ComfyUI lists it
    generate.write_checkpoint(old, {"w": torch.zeros(2)}, {"bm_smoke": "untrained", "bm_smoke_format": "0"})
    result = generate.generate_file(file, tmp_path / "models")
    assert result.outcome == "written" and result.path == old
    assert generate.is_current(old, "wan21_vae", 0)
    assert generate.generate_file(file, tmp_path / "models").outcome == "kept"


def test_the_demo_regenerates_smoke_files_of_an_older_format(tmp_path, monkeypatch):
    from weights_testing import make_manifest

    from beyond_monologue.comfyui import demo
    from beyond_monologue.weights.smoke import generate

    manifest = make_manifest(tmp_path, {
        "vae": {"folder": "vae", "filename": "vae.safetensors", "smoke": "wan21_vae"},
        "patch": {"folder": "model_patches", "filename": "patch.safetensors", "smoke": "infinitetalk_adapter"}})
    monkeypatch.setattr(demo, "load_manifest", lambda: manifest)
    monkeypatch.setattr(demo, "DEMO_SET", "test-set")
    models = tmp_path / "models"
    old = models / "vae" / "vae.safetensors"
    generate.write_checkpoint(old, {"w": torch.zeros(2)}, {"bm_smoke": "untrained", "bm_smoke_format": "0"})
    assert generate.generate_file(manifest.files["patch"], models).outcome == "written"  # current: kept
    mtime = (models / "model_patches" / "patch.safetensors").stat().st_mtime_ns

    state = demo.prepare_weights(models, check_hash=False)
    assert [f.id for f in state.generated] == ["vae"] and generate.is_current(old, "wan21_vae", 0)
    assert (models / "model_patches" / "patch.safetensors").stat().st_mtime_ns == mtime
    assert all(r.status is Status.SMOKE for r in state.reports)
