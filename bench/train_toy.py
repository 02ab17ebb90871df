"""Benchmark / proof run: does BM Train Duplex Adapter learn the toy world on a CPU?

    .venv/bin/python bench/train_toy.py [--pretrain 300] [--stage1 250] [--stage2 250] [--lr 5e-3]

The toy world is ``tests/comfy/train/toy_world.py`` (issue 12 item 6): latent videos whose "mouth"
follows the talk stream's loudness frame by frame and whose "head" follows the listen stream's
loudness over one second, made from real speech (the LibriVox clips of pocketsphinx-testdata and the
two speakers of pyannote's sample.wav) encoded by a full-size wav2vec2 base with random weights. The
backbone is ``wan_fixtures.tiny_wan("wan22_5b")`` first taught the unconditional world, then frozen.
Training goes through ``beyond_monologue.train.trainer.train_adapter`` (the node's code path): stage 1
talking only, stage 2 both streams. Held-out conversations are rendered with BM Sampler's engine
(``sample_long_video``) and measured per latent frame.

Prints seconds per phase, steps/s, first/last losses, and per held-out conversation the Pearson r of
[mouth~talk, head~listen, mouth~listen (leak), head~talk (leak), talk~listen targets] for the untrained
adapter, after stage 1, after stage 2 and after stage 2 with listen strength 0.
Targets (issue 12): mouth~talk >= 0.6, head~listen >= 0.6, untrained and leaks |r| < 0.2, listen
strength 0 drops head r below 0.2, stage 1 moves mouth not head.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", type=int, default=300)
    parser.add_argument("--stage1", type=int, default=250)
    parser.add_argument("--stage2", type=int, default=250)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--clips", type=int, default=48)
    args = parser.parse_args()

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "comfy"), str(ROOT / "tests" / "comfy" / "train")]
    sys.path.append(str(ROOT))
    from beyond_monologue.comfyui.comfy_launcher import find_comfyui

    sys.path.insert(0, str(find_comfyui()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.audio_encoders.audio_encoders as audio_encoders
    import comfy.model_management as mm
    import comfy.model_patcher
    import toy_world as tw
    from audio_fixtures import POCKETSPHINX_DATA, read_wav, wav2vec2_base_state
    from wan_fixtures import tiny_wan

    from beyond_monologue.comfyui import demo
    from beyond_monologue.model.adapter_checkpoint import smoke_config
    from beyond_monologue.model.duplex_adapter import DuplexAdapter
    from beyond_monologue.model.wan_patch import AdapterSettings, attach_duplex_adapter
    from beyond_monologue.train.recipe import TrainRecipe
    from beyond_monologue.train.trainer import train_adapter

    torch.manual_seed(0)
    start = time.time()
    encoder = audio_encoders.load_audio_encoder_from_sd(wav2vec2_base_state(0))
    books = [read_wav(p)[0] for p in sorted((POCKETSPHINX_DATA / "librivox").glob("*.wav"))]  # as the librivox fixture
    speakers = [read_wav(p)[0] for p in demo.speaker_streams(ROOT / ".cache" / "assets", Path(tempfile.mkdtemp()))]
    cut = 16000 * 20
    sources = tw.encode_sources(encoder.model, [*books[:4], speakers[0][:cut], speakers[1][:cut]])
    held = [tuple(tw.encode_sources(encoder.model, [books[4], speakers[1][cut:]])),
            tuple(tw.encode_sources(encoder.model, [speakers[0][cut:], books[4][::-1].copy()]))]
    print(f"features: {time.time() - start:.1f} s")

    world = tw.World(0)
    model = tiny_wan("wan22_5b")
    with torch.inference_mode(False):
        losses = tw.pretrain_backbone(model, world, steps=args.pretrain)
    print(f"backbone pretrain: {time.time() - start:.1f} s, loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}")
    training_set = tw.training_set(world, model, sources, clips=args.clips, frames=41)
    config = smoke_config("beyond_monologue", model_dim=256, num_layers=2)

    def evaluate(adapter, tag, listen_strength=1.0):
        patcher = comfy.model_patcher.ModelPatcher(adapter, load_device=mm.get_torch_device(),
                                                   offload_device=mm.unet_offload_device())
        settings = AdapterSettings({s: adapter.config.kernel(s) for s in adapter.streams},
                                   {"talk": 1.0, "listen": listen_strength})
        patched = attach_duplex_adapter(model, patcher, settings)
        rows = []
        for talk, listen in held:
            n = min(talk[0].shape[0], listen[0].shape[0], 201)
            audio, mouth, head = tw.conversation(tw.cut(talk, 0, n), tw.cut(listen, 0, n))
            video = tw.render(patched, world, audio)
            m, h = world.region_signal(video, "mouth"), world.region_signal(video, "head")
            rows.append([tw.pearson(m, mouth), tw.pearson(h, head), tw.pearson(m, head), tw.pearson(h, mouth),
                         tw.pearson(mouth, head)])
        print(f"{tag:>16}: r [mouth~talk, head~listen, mouth~listen, head~talk, targets] = "
              f"{np.round(np.array(rows), 2).tolist()}")

    untrained = DuplexAdapter(config).reset_parameters(1, zero_output=True).float()
    evaluate(untrained, "untrained")
    adapter = untrained
    for stage, steps in (("talking", args.stage1), ("both", args.stage2)):
        t0 = time.time()
        result = train_adapter(model, training_set, TrainRecipe(stage=stage, steps=steps, lr_new=args.lr, ema_decay=0.0,
                                                                window_latents=11), adapter=adapter)
        seconds = time.time() - t0
        adapter = result.trained.adapter
        print(f"stage {stage}: {steps} steps in {seconds:.1f} s ({steps / seconds:.2f} steps/s), loss "
              f"{np.mean(result.losses[:10]):.3f} -> {np.mean(result.losses[-10:]):.3f}")
        evaluate(adapter, f"after {stage}")
    evaluate(adapter, "listen strength 0", listen_strength=0.0)
    print(f"total: {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
