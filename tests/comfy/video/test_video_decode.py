"""BM Decode Video on ComfyUI's own Wan VAEs (generated weights): frames, seams, tiles, progress, Cancel, errors."""

from __future__ import annotations

import pytest
import torch
from tiny_wan_vae import random_state_dict, small_wan22_model, wan21_vae_state_dict

SEAM_TOLERANCE = 1e-5  # max |streamed - one-shot| over every pixel of every frame (measured: 0.0 for Wan2.1)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.inference_mode():  # as ComfyUI runs nodes
        yield


@pytest.fixture(scope="module")
def vd(pack):
    return pack.beyond_monologue.video.video_decode


@pytest.fixture(scope="module")
def wan21_vae(comfy, tmp_path_factory):
    """A Wan2.1-layout VAE (dim 8) saved as safetensors and loaded by ComfyUI's Load VAE node."""
    import folder_paths
    import safetensors.torch

    import nodes as comfy_nodes

    folder = tmp_path_factory.mktemp("vae")
    safetensors.torch.save_file(wan21_vae_state_dict(), str(folder / "tiny_wan21_vae.safetensors"))
    folder_paths.add_model_folder_path("vae", str(folder))
    return comfy_nodes.VAELoader().load_vae("tiny_wan21_vae.safetensors")[0]


@pytest.fixture(scope="module")
def decode_node(pack_nodes):
    return pack_nodes["BMDecodeVideo"]


def latent(channels=16, frames=6, height=4, width=5, seed=0):
    return {"samples": torch.randn((1, channels, frames, height, width), generator=torch.Generator().manual_seed(seed))}


def run_decode(node, lat, vae, fps=25.0, tiled=False, tile_size=256, tile_overlap=64, audio=None):
    return node.execute(latent=lat, vae=vae, fps=fps, tiled=tiled, tile_size=tile_size, tile_overlap=tile_overlap,
                        audio=audio).args


def test_wan21_vae_is_the_16_channel_wan_vae(wan21_vae, vd):
    assert vd.supports_streaming(wan21_vae)
    assert wan21_vae.latent_channels == 16 and wan21_vae.spacial_compression_decode() == 8


def test_streamed_frames_equal_one_shot_decode_without_seams(wan21_vae, vd):
    samples = latent()["samples"]
    reference = wan21_vae.decode(samples)[0]  # ComfyUI's VAE Decode
    streamed = vd.stream_decode(wan21_vae, samples)
    assert streamed.shape == (21, 32, 40, 3) == reference.shape
    per_frame = (streamed - reference).abs().amax(dim=(1, 2, 3))
    assert per_frame.max() <= SEAM_TOLERANCE, per_frame
    assert reference.std() > 0.05  # the test VAE draws real pictures, not a constant


def test_tiled_stream_equals_comfy_tiled_decode_with_one_temporal_tile(wan21_vae, vd):
    samples = latent(frames=4, height=6, width=7)["samples"]
    tile = vd.TileSpec(size=4, overlap=1)
    reference = wan21_vae.decode_tiled(samples, tile_x=4, tile_y=4, overlap=1, tile_t=samples.shape[2])[0]
    streamed = vd.stream_decode(wan21_vae, samples, tile)
    assert streamed.shape == reference.shape == (13, 48, 56, 3)
    assert (streamed - reference).abs().max() <= SEAM_TOLERANCE


def test_wan22_decoder_driven_frame_by_frame_equals_its_decode(comfy, vd):
    model = small_wan22_model()
    samples = torch.randn((1, 48, 4, 2, 3), generator=torch.Generator().manual_seed(1))
    reference = model.decode(samples)
    decoder = vd.CausalWanDecoder(model)
    steps = [decoder.step(samples[:, :, i:i + 1]) for i in range(samples.shape[2])]
    assert [s.shape[2] for s in steps] == [1, 4, 4, 4]  # latent 0 alone, then 4 frames per latent
    streamed = torch.cat(steps, dim=2)
    assert streamed.shape == reference.shape == (1, 3, 13, 32, 48)
    assert (streamed - reference).abs().max() <= SEAM_TOLERANCE


def test_node_outputs_frames_and_video_with_audio_fitted_to_frames(decode_node, wan21_vae):
    sample_rate = 16000
    tone = torch.sin(torch.arange(sample_rate) / sample_rate * 2 * torch.pi * 220).reshape(1, 1, -1)  # 1.0 s
    frames, video = run_decode(decode_node, latent(), wan21_vae, fps=25.0,
                               audio={"waveform": tone, "sample_rate": sample_rate})
    assert frames.shape == (21, 32, 40, 3) and frames.dtype == torch.float32
    parts = video.get_components()
    assert parts.frame_rate == 25 and parts.images.shape[0] == 21
    assert parts.audio["sample_rate"] == sample_rate
    assert parts.audio["waveform"].shape == (1, 1, 21 * sample_rate // 25)  # trimmed to 0.84 s
    assert torch.equal(parts.audio["waveform"], tone[..., :13440])
    assert video.get_dimensions() == (40, 32)

    short = tone[..., :8000]  # 0.5 s: padded with silence to 0.84 s
    _, video = run_decode(decode_node, latent(), wan21_vae, fps=25.0, audio={"waveform": short, "sample_rate": 16000})
    padded = video.get_components().audio["waveform"]
    assert padded.shape[-1] == 13440 and torch.equal(padded[..., :8000], short) and not padded[..., 8000:].any()


def test_node_drops_the_4n_plus_1_frames_past_the_audio(decode_node, wan21_vae):
    audio = {"waveform": torch.rand(1, 1, 12000) - 0.5, "sample_rate": 16000}  # 0.75 s = 18.75 frames at 25 fps
    frames, video = run_decode(decode_node, latent(), wan21_vae, fps=25.0, audio=audio)  # 21 frames decoded
    assert frames.shape[0] == 19 and video.get_components().images.shape[0] == 19
    assert video.get_components().audio["waveform"].shape[-1] == 19 * 16000 // 25


def test_color_reference_matches_every_frame_to_the_fitted_portrait(pack, decode_node, wan21_vae):
    lat = latent(frames=2)
    plain, _ = run_decode(decode_node, lat, wan21_vae)
    portrait = torch.rand(1, 64, 48, 3, generator=torch.Generator().manual_seed(4))
    frames, video = decode_node.execute(latent=lat, vae=wan21_vae, fps=25.0, tiled=False, tile_size=256, tile_overlap=64,
                                        color_reference=portrait, color_match_strength=0.5).args
    fitted = pack.beyond_monologue.sampling.reference.fit_image(portrait, plain.shape[2], plain.shape[1])
    expected = pack.beyond_monologue.video.color_match.match_colors(plain, fitted, 0.5)
    torch.testing.assert_close(frames, expected)
    assert not torch.allclose(frames, plain) and torch.equal(video.get_components().images, frames)
    with pytest.raises(ValueError, match=r"color_reference: is \(64, 48, 3\), not an IMAGE"):
        decode_node.execute(latent=lat, vae=wan21_vae, fps=25.0, tiled=False, tile_size=256, tile_overlap=64,
                            color_reference=portrait[0])
    assert "color_match_strength: is 2.0" in decode_node.validate_inputs(color_match_strength=2.0)


def test_node_without_audio_gives_a_silent_video(decode_node, wan21_vae):
    _, video = run_decode(decode_node, latent(frames=2), wan21_vae, fps=16.0)
    assert video.get_components().audio is None and video.get_components().frame_rate == 16


def test_tiled_node_decodes_in_tiles(decode_node, wan21_vae, vd):
    lat = latent(frames=2, height=12, width=10)
    frames, _ = run_decode(decode_node, lat, wan21_vae, tiled=True, tile_size=64, tile_overlap=16)
    expected = vd.stream_decode(wan21_vae, lat["samples"], vd.TileSpec(size=8, overlap=2))
    assert torch.equal(frames, expected)


def test_progress_per_latent_frame_and_cancel_between_windows(decode_node, wan21_vae):
    import comfy.model_management
    import comfy.utils

    seen = []

    def hook(value, total, preview, node_id=None):
        seen.append((value, total))
        if value == 2:
            comfy.model_management.interrupt_current_processing(True)  # the user presses Cancel

    old_hook = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            run_decode(decode_node, latent(), wan21_vae)
    finally:
        comfy.utils.set_progress_bar_global_hook(old_hook)
        comfy.model_management.interrupt_current_processing(False)
    assert seen == [(1, 6), (2, 6)]  # stopped before the third window was reported

    seen.clear()
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: seen.append((value, total)))
    try:
        run_decode(decode_node, latent(), wan21_vae)
    finally:
        comfy.utils.set_progress_bar_global_hook(old_hook)
    assert seen == [(i, 6) for i in range(1, 7)]


def test_out_of_memory_falls_back_to_tiled_decoding(wan21_vae, vd, monkeypatch):
    import comfy.model_management

    real = vd.stream_decode
    calls = []

    def short_of_memory(vae, samples, tile=None, on_window=None):
        calls.append(tile)
        if tile is None:
            raise comfy.model_management.OOM_EXCEPTION("CUDA out of memory (simulated)")
        return real(vae, samples, tile, on_window)

    monkeypatch.setattr(vd, "stream_decode", short_of_memory)
    frames = vd.decode_video(wan21_vae, latent()["samples"])
    assert calls == [None, vd.TileSpec(size=32, overlap=8)]  # ComfyUI's fallback tile: 256 px, a quarter overlap
    assert frames.shape == (21, 32, 40, 3)


def test_other_video_vae_uses_comfy_decode(comfy, decode_node):
    """The light taew2_1 decoder (ComfyUI's TAEHV) reads the same latents; it is decoded by ComfyUI in one piece."""
    import comfy.sd
    import comfy.taesd.taehv

    with torch.device("meta"):
        model = comfy.taesd.taehv.TAEHV(latent_channels=16, latent_format=None)
    vae = comfy.sd.VAE(sd=random_state_dict(model))
    lat = latent(frames=3)
    frames, _ = run_decode(decode_node, lat, vae)
    reference = vae.decode(lat["samples"])
    assert frames.shape == (9, 32, 40, 3)
    assert torch.equal(frames, reference.reshape(frames.shape))


@pytest.mark.parametrize(("samples", "vae_kind", "words"), [
    (torch.zeros(1, 16, 4, 5), "wan21", "4-D tensor"),
    (torch.zeros(2, 16, 3, 4, 5), "wan21", "batch of 2 videos"),
    (torch.zeros(1, 48, 3, 4, 5), "wan21", "decodes 16-channel latents but the latent has 48"),
    (torch.full((1, 16, 3, 4, 5), float("nan")), "wan21", "NaN"),
    (torch.zeros(1, 4, 3, 4, 5), "image", "not a Wan video VAE"),
])
def test_bad_inputs_name_the_input_and_the_fix(decode_node, wan21_vae, pack, samples, vae_kind, words):
    import comfy.sd
    import comfy.taesd.taesd

    if vae_kind == "image":
        with torch.device("meta"):
            model = comfy.taesd.taesd.TAESD()
        vae = comfy.sd.VAE(sd=random_state_dict(model))  # an image VAE: 2-D latents
    else:
        vae = wan21_vae
    with pytest.raises(pack.beyond_monologue.errors.BMInputError) as error:
        run_decode(decode_node, {"samples": samples}, vae)
    assert words in str(error.value) and "Fix:" in str(error.value)


def test_validate_inputs(decode_node):
    assert decode_node.validate_inputs(fps=25.0, tiled=True, tile_size=256, tile_overlap=64) is True
    assert "tile_overlap" in decode_node.validate_inputs(fps=25.0, tiled=True, tile_size=256, tile_overlap=128)
    assert decode_node.validate_inputs(fps=25.0, tiled=False, tile_size=128, tile_overlap=64) is True  # tiles unused
    assert "fps" in decode_node.validate_inputs(fps=0.0, tile_size=256, tile_overlap=64)
    assert decode_node.validate_inputs(fps=None, tile_size=None, tile_overlap=None) is True  # linked: checked at run


def test_a_linked_fps_is_checked_when_the_node_runs(decode_node, pack, wan21_vae):
    samples = torch.zeros(1, 16, 2, 4, 4)
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match=r"^fps: .*Fix:"):
        decode_node.execute(latent={"samples": samples}, vae=wan21_vae, fps=0.0, tiled=False, tile_size=256,
                            tile_overlap=64)


def test_node_previews_the_decoded_video_as_a_temp_mp4(decode_node, wan21_vae):
    import os

    import av
    import folder_paths

    output = decode_node.execute(latent=latent(frames=2), vae=wan21_vae, fps=16.0, tiled=False, tile_size=256,
                                 tile_overlap=64, audio=None)
    (entry,) = output.ui.as_dict()["images"]
    assert entry["type"] == "temp" and entry["filename"].endswith(".mp4")
    path = os.path.join(folder_paths.get_temp_directory(), entry["subfolder"], entry["filename"])
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (40, 32) and stream.average_rate == 16
        assert sum(1 for _ in container.decode(video=0)) == output.args[0].shape[0] == 5
    os.remove(path)
