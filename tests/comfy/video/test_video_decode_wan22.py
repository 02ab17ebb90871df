"""BM Decode Video on the 48-channel Wan2.2 VAE loaded by ComfyUI (full size: ComfyUI hard-codes its width)."""

from __future__ import annotations

import torch


def test_wan22_latent_decodes_like_vae_decode_with_audio(pack_nodes, pack, wan22_vae):
    assert wan22_vae.latent_channels == 48 and wan22_vae.spacial_compression_decode() == 16
    assert pack.beyond_monologue.video.video_decode.supports_streaming(wan22_vae)
    samples = torch.randn((1, 48, 2, 2, 1), generator=torch.Generator().manual_seed(0))
    tone = torch.rand((1, 2, 9000)) - 0.5  # stereo 0.375 s at 24 kHz
    with torch.inference_mode():
        reference = wan22_vae.decode(samples)[0]
        frames, video = pack_nodes["BMDecodeVideo"].execute(
            latent={"samples": samples}, vae=wan22_vae, fps=24.0, tiled=False, tile_size=256, tile_overlap=64,
            audio={"waveform": tone, "sample_rate": 24000}).args
    assert frames.shape == (5, 32, 16, 3) == reference.shape
    assert (frames - reference).abs().max() <= 1e-5
    parts = video.get_components()
    assert parts.frame_rate == 24 and parts.audio["waveform"].shape == (1, 2, 5000)  # 5 frames / 24 fps at 24 kHz
