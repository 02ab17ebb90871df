"""Benchmark / proof run: does BM Train Duplex Adapter learn the toy world on a CPU?

    .venv/bin/python bench/train_toy.py [--pretrain 150] [--stage1 100] [--stage2 300] [--lr 2e-3] [--batch 4] [--held 24]

The toy world is ``tests/comfy/train/toy_world.py`` (issue 12 item 6): latent videos whose "mouth"
follows the talk stream's loudness frame by frame and whose "head" follows the listen stream's
loudness over the last second, made from real speech (the LibriVox clips of pocketsphinx-testdata and the
two speakers of pyannote's sample.wav) encoded by a full-size wav2vec2 base with random weights. The
backbone is ``wan_fixtures.tiny_wan("wan22_5b")`` first taught the unconditional world, then frozen.
Training goes through ``beyond_monologue.train.trainer.train_adapter`` (the node's code path): stage 1
talking only, stage 2 both streams. Held-out conversations are rendered with BM Sampler's engine
(``sample_long_video``) and measured per latent frame.

Prints seconds per phase, steps/s, first/last losses, and the Pearson r (pooled over the held-out
conversations) of mouth~talk, head~listen, mouth~listen (leak) and head~talk (leak) for the untrained
adapter, after stage 1, after stage 2 and after stage 2 with listen strength 0. The comfy-tier test
``tests/comfy/train/test_toy_world.py`` runs the same world with the defaults below and asserts the targets.
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
LISTENING = ("listen_to_silent_motion_ratio", "listen_motion_correlation", "listen_to_talk_mouth_ratio")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain", type=int, default=150)
    parser.add_argument("--stage1", type=int, default=100)
    parser.add_argument("--stage2", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--held", type=int, default=24, help="held-out conversations (61 frames each)")
    args = parser.parse_args()

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "comfy"), str(ROOT / "tests" / "comfy" / "train")]
    sys.path.append(str(ROOT))
    from beyond_monologue.comfyui.comfy_launcher import find_comfyui

    sys.path.insert(0, str(find_comfyui()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.audio_encoders.audio_encoders as audio_encoders
    import toy_world as tw
    from audio_fixtures import POCKETSPHINX_DATA, read_wav, wav2vec2_base_state
    from wan_fixtures import tiny_wan

    from beyond_monologue.comfyui import demo

    bm = tw.modules("beyond_monologue")
    torch.manual_seed(0)
    start = time.time()
    encoder = audio_encoders.load_audio_encoder_from_sd(wav2vec2_base_state(0))
    books = [read_wav(p)[0] for p in sorted((POCKETSPHINX_DATA / "librivox").glob("*.wav"))]  # as the librivox fixture
    speakers = [read_wav(p)[0] for p in demo.speaker_streams(ROOT / ".cache" / "assets", Path(tempfile.mkdtemp()))]
    train_sources, held_sources = tw.split_sources(bm, encoder.model, books, speakers)
    print(f"features: {time.time() - start:.1f} s")

    world = tw.World(0)
    model = tiny_wan("wan22_5b")
    t0 = time.time()
    with torch.inference_mode(False):
        losses = tw.pretrain_backbone(model, world, steps=args.pretrain)
    print(f"backbone pretrain: {time.time() - t0:.1f} s, loss {losses[0]:.3f} -> {np.mean(losses[-20:]):.3f}")
    training_set = tw.training_set(bm, world, model, train_sources, clips=args.clips, frames=41)
    held = tw.conversations(bm, held_sources, args.held, 61, seed=1)
    talk, listen = (np.concatenate([c[k] for c in held]) for k in (1, 2))  # per latent: talk, smoothed listen
    print(f"held-out targets: talk~listen r {tw.pearson(talk, listen):+.2f} over {len(talk)} latent frames")

    def evaluate(adapter, tag, listen_strength=1.0):
        t0 = time.time()
        r = tw.measure(bm, model, adapter, world, held, listen_strength)
        listening = r.pop("listening")
        print(f"{tag:>18}: " + "  ".join(f"{k} {v:+.2f}" for k, v in r.items()) + f"  ({time.time() - t0:.1f} s)")
        print(" " * 20 + "  ".join(f"{k} {listening[k]:.2f}" for k in LISTENING if listening[k] is not None))

    config = bm.checkpoint.smoke_config("beyond_monologue", model_dim=256, num_layers=2)
    untrained = bm.duplex_adapter.DuplexAdapter(config).reset_parameters(1, zero_output=True).float()
    evaluate(untrained, "untrained")
    adapter = untrained
    for stage, steps in (("talking", args.stage1), ("both", args.stage2)):
        recipe = tw.recipe(bm, stage, steps, args.lr, args.batch)
        result = bm.trainer.train_adapter(model, training_set, recipe, adapter=adapter)
        adapter = result.trained.adapter
        print(f"stage {stage}: {steps} steps in {result.seconds:.1f} s ({steps / result.seconds:.2f} steps/s), loss "
              f"{np.mean(result.losses[:10]):.3f} -> {np.mean(result.losses[-10:]):.3f}, peak "
              f"{result.peak_memory_mib:.0f} MiB")
        evaluate(adapter, f"after {stage}")
    evaluate(adapter, "listen strength 0", listen_strength=0.0)
    print(f"total: {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
