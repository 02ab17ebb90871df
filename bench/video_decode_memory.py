"""Peak CPU memory of decoding Wan video latents of growing length: BM Decode Video vs ComfyUI's VAE Decode.

Usage (from the repo root): ``.venv/bin/python bench/video_decode_memory.py [--lengths 16 64 256] [--size 8] [--dim 4]``

Every measurement runs in a fresh child process on the CPU with a small Wan2.1-layout VAE built
by ComfyUI's loader from generated weights (``tests/tiny_wan_vae.py``; ``--dim`` sets its width).
Memory is the decode's peak resident memory (``bench/peak_rss.py``: ``VmHWM`` after minus ``VmRSS``
before, peak reset just before). "working" is that peak minus the bytes of the returned IMAGE
(``frames x H x W x 3 x 4``), i.e. what the decode needs on top of its own output.

Printed: per method and length, the peak and the working memory in MiB, and both as ratios to the
shortest length of the same method (measured in this run). A small VAE keeps the per-frame
activations small next to the output, so that what grows with length shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_rss import peak_mib, run_child

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("bm_stream", "comfy_vae_decode")


def build_vae(dim: int):
    """ComfyUI's ``comfy.sd.VAE`` on a generated Wan2.1-layout checkpoint of width ``dim`` (``tests/tiny_wan_vae.py``).

    Needs ComfyUI and ``tests/`` importable (``child`` and ``bench/gpu_suite.py`` set that up).
    """
    import comfy.sd
    from tiny_wan_vae import wan21_vae_state_dict

    return comfy.sd.VAE(sd=wan21_vae_state_dict(dim=dim))


def decode_vae(vae, samples, method: str):
    """IMAGE ``[frames, H, W, 3]`` of ``samples`` ``[1, C, T_lat, h, w]`` by ``method`` (one of :data:`METHODS`)."""
    import beyond_monologue.video.video_decode as video_decode

    if method == "bm_stream":
        return video_decode.stream_decode(vae, samples)
    return vae.decode(samples)


def measure_decode(vae, samples, method: str, device=None):
    """``(images, peak MiB)``: on CUDA the peak allocated device memory above what was allocated before
    (``torch.cuda.max_memory_allocated``), elsewhere the peak resident memory the decode added (:func:`peak_mib`)."""
    import torch

    if device is None or device.type != "cuda":
        return peak_mib(lambda: decode_vae(vae, samples, method))
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    images = decode_vae(vae, samples, method)
    torch.cuda.synchronize(device)
    return images, (torch.cuda.max_memory_allocated(device) - before) / 2**20


def child(method: str, num_latents: int, size: int, dim: int) -> dict:
    """Build the VAE, decode one ``[1, 16, num_latents, size, size]`` latent with ``method``; return the numbers."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    from beyond_monologue.comfyui.comfy_launcher import find_comfyui

    sys.path.insert(0, str(find_comfyui()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import torch

    torch.set_num_threads(1)  # deterministic and fair on a shared machine
    vae = build_vae(dim)
    samples = torch.randn((1, 16, num_latents, size, size), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        decode_vae(vae, samples[:, :, :2], "bm_stream")  # warm-up: load the model, first-call allocations
        images, peak = measure_decode(vae, samples, method)
    output = images.numel() * images.element_size() / 2**20
    return {"method": method, "latents": num_latents, "frames": int(images.shape[-4]), "peak_mib": peak,
            "output_mib": output, "working_mib": peak - output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256], help="latent frames per run")
    parser.add_argument("--size", type=int, default=8, help="latent height and width (x8 pixels)")
    parser.add_argument("--dim", type=int, default=4, help="VAE width (the released Wan2.1 VAE has 96)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "LATENTS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.size, args.dim)))
        return
    print(f"CPU decode, Wan2.1-layout VAE dim {args.dim}, frames {args.size * 8}x{args.size * 8} px; "
          "peak = VmHWM - VmRSS around the decode (MiB)")
    print(f"{'method':18} {'latents':>7} {'frames':>6} {'output':>8} {'peak':>8} {'working':>8} {'peak x':>7} {'work x':>7}")
    for method in METHODS:
        first = None
        for length in args.lengths:
            row = run_child(Path(__file__), ["--child", method, str(length), "--size", str(args.size),
                                             "--dim", str(args.dim)])
            first = first or row
            print(f"{method:18} {row['latents']:7d} {row['frames']:6d} {row['output_mib']:8.1f} {row['peak_mib']:8.1f} "
                  f"{row['working_mib']:8.1f} {row['peak_mib'] / first['peak_mib']:7.2f} "
                  f"{row['working_mib'] / first['working_mib']:7.2f}")


if __name__ == "__main__":
    main()
