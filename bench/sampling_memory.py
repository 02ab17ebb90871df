"""Peak CPU memory of BM Sampler's long-form sampling as the video grows by whole windows.

Usage (from the repo root): ``.venv/bin/python bench/sampling_memory.py [--windows 1 2 6] [--size 16]``

Every run is a fresh child process (``bench/peak_rss.py``: peak resident memory added by the run,
``VmHWM`` after minus ``VmRSS`` before, peak reset just before; glibc returns freed tensors) that
builds a tiny native Wan2.2-TI2V-5B-layout DiT with ComfyUI's loader (``tests/comfy/wan_fixtures.py``,
width 256, 2 blocks) and a Beyond Monologue adapter, warms up with a one-window run, then samples
``windows`` windows of 21 latents (81 frames) with 3 motion latents, 2 steps, the default
text/talk/listen guidance (4 evaluations per step) and the past-end guide. Only the returned latent
(``output``) may grow with the number of windows; the working memory (peak minus output) must not.

Printed: per window count the latents, output, peak and working memory in MiB and the peak as a
ratio to the first window count of this run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from peak_rss import peak_mib, run_child

ROOT = Path(__file__).resolve().parents[1]
WINDOW_LATENTS, MOTION_LATENTS = 21, 3


def child(windows: int, size: int) -> dict:
    """Sample ``windows`` windows of a ``size x size``-latent video in this process; return the numbers."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "comfy")]
    sys.path.append(str(ROOT))  # after ComfyUI's folder, as in tests/conftest.py
    import comfy_inprocess

    comfy_inprocess._load_comfy()
    pack = comfy_inprocess._load_pack()
    import torch
    from sampler_fixtures import core, duplex_audio, patched_model
    from wan_fixtures import conditioning

    torch.set_num_threads(1)
    bm = core(pack)
    model = patched_model(bm, "wan22_5b")
    reference = bm.sampling.reference.Reference("past_end", torch.randn((1, 48, 1, size, size)))
    settings = bm.sampling.long_video.SamplingSettings(2, "euler", "simple", seed=0, window_latents=WINDOW_LATENTS,
                                              motion_latents=MOTION_LATENTS)
    latents = WINDOW_LATENTS + (windows - 1) * (WINDOW_LATENTS - MOTION_LATENTS)
    positive, negative = conditioning(1), conditioning(2)

    def run(duplex):
        return bm.sampling.long_video.sample_long_video(model, positive, negative, duplex, reference, settings)

    warm_up, duplex = (duplex_audio(bm, 4 * (n - 1) + 1) for n in (WINDOW_LATENTS, latents))  # inputs: not counted
    with torch.inference_mode():
        run(warm_up)  # first-call allocations, adapter loading
        out, peak = peak_mib(lambda: run(duplex))
    output = out.numel() * out.element_size() / 2**20
    return {"windows": windows, "latents": int(out.shape[2]), "peak_mib": peak, "output_mib": output,
            "working_mib": peak - output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 2, 6], help="window counts to compare")
    parser.add_argument("--size", type=int, default=16, help="latent height and width (x16 pixels on Wan2.2-5B)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(__import__("json").dumps(child(args.child, args.size)))
        return
    print(f"CPU, tiny Wan2.2-5B-layout DiT + adapter, {args.size}x{args.size} latents, windows of {WINDOW_LATENTS} "
          f"latents with {MOTION_LATENTS} motion latents; peak = VmHWM - VmRSS around the run (MiB)")
    print(f"{'windows':>7} {'latents':>7} {'output':>8} {'peak':>8} {'working':>8} {'peak x':>7}")
    first = None
    for windows in args.windows:
        row = run_child(Path(__file__), ["--child", str(windows), "--size", str(args.size)])
        first = first or row
        print(f"{row['windows']:7d} {row['latents']:7d} {row['output_mib']:8.2f} {row['peak_mib']:8.1f} "
              f"{row['working_mib']:8.1f} {row['peak_mib'] / first['peak_mib']:7.2f}")


if __name__ == "__main__":
    main()
