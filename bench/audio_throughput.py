"""Throughput of the audio stage on the CPU: diarization and dual-stream encoding, in seconds of audio per second.

Run from the repo root: ``.venv/bin/python bench/audio_throughput.py [--repeats 3]``.
Input: the real 30 s conversation ``.cache/assets/sample.wav`` (``scripts/fetch_assets.py``).
The wav2vec2 model is ComfyUI's own class at full base size with random weights (speed does not
depend on the values). Every number is measured in this run; the machine's other load shows up
in them, so compare ratios printed by one run, not runs on different days.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))
sys.path.append(str(ROOT / "tests"))


def timed(function, repeats: int) -> float:
    """Median wall time in seconds of ``repeats`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from beyond_monologue.comfyui.comfy_launcher import find_comfyui

    sys.path.insert(0, str(find_comfyui()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.ops
    import soundfile
    from audio_fixtures import wav2vec2_base_state
    from comfy.audio_encoders.wav2vec2 import Wav2Vec2Model

    from beyond_monologue.audio import diarization, vad
    from beyond_monologue.audio.conversation import split_by_turns
    from beyond_monologue.audio.speech_features import encode_duplex

    samples, rate = soundfile.read(str(ROOT / ".cache" / "assets" / "sample.wav"), dtype="float32")
    wave = torch.from_numpy(samples)
    seconds = wave.shape[0] / rate
    print(f"input: sample.wav, {seconds:.1f} s at {rate} Hz; torch threads {torch.get_num_threads()}; CPU")

    t_vad = timed(lambda: vad.speech_probabilities(wave), args.repeats)
    t_embed = timed(lambda: diarization.window_embeddings(wave), args.repeats)
    result = diarization.diarize(wave, rate)
    t_diarize = timed(lambda: diarization.diarize(wave, rate), args.repeats)
    print(f"diarize      {seconds / t_diarize:7.1f} s of audio per s  (VAD {seconds / t_vad:.0f}x, "
          f"embeddings {seconds / t_embed:.1f}x; embeddings are {t_embed / t_diarize:.0%} of the time)")

    model = Wav2Vec2Model(embed_dim=768, num_heads=12, num_layers=12, conv_norm=False, conv_bias=False,
                          do_normalize=False, do_stable_layer_norm=False, operations=comfy.ops.manual_cast)
    model.load_state_dict({k.removeprefix("wav2vec2."): v for k, v in wav2vec2_base_state(0).items()})
    model.eval()
    talk, listen, _ = split_by_turns(wave.unsqueeze(0), rate, result.turns, 0)
    speeds = {}
    for order in ("conv_features", "hidden_states"):
        elapsed = timed(lambda order=order: encode_duplex(model, talk, rate, listen, rate, order=order), args.repeats)
        speeds[order] = 2 * seconds / elapsed  # two streams
        print(f"encode {order:13s} {speeds[order]:7.1f} s of audio per s (both streams, wav2vec2 base, VAD activity)")
    print(f"ratio conv_features / hidden_states speed: {speeds['conv_features'] / speeds['hidden_states']:.2f} "
          "(conv_features runs the transformer on the video frames, hidden_states on the 50 Hz sequence)")
    total = t_diarize + 2 * seconds / speeds["conv_features"]
    print(f"diarize + encode (conv_features): {seconds / total:.1f} s of conversation per s")


if __name__ == "__main__":
    main()
