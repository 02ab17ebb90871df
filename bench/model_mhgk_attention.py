"""Benchmark: MHGK cross-attention vs plain SDPA cross-attention of the same shapes, in one run.

    .venv/bin/python bench/model_mhgk_attention.py            # CUDA when present, else the scaled CPU shape
    .venv/bin/python bench/model_mhgk_attention.py --device cpu

GPU shape: Wan2.2-TI2V-5B at 720p (704 x 1280, 121 frames): 31 latent frames x 22 x 40 = 27,280
video tokens against 31 audio windows x 32 Q-Former tokens = 992 audio tokens, 24 heads of 128,
bfloat16. CPU shape (scaled): 21 latent frames x 64 tokens against 21 x 32, 8 heads of 128, float32.

For every backend it prints the median time, the median ratio to plain SDPA (no bias) timed
alternately with it, on CUDA the peak
memory above the inputs and its ratio, and the relative error against the float32 reference.
Goal on GPU: at most 1.25x plain SDPA time, memory O(L_video + L_audio) (``--scaling`` prints the
extra memory of ``auto`` for growing video lengths). The last row adds the adapter's time-RoPE (format 2),
rotating q and k before the same attention. Absolute times are only meaningful on a GPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import paired_ms, sync

from beyond_monologue.model.mhgk import MHGKKernel, kernel_times
from beyond_monologue.model.mhgk_attention import backend_available, choose_backend, mhgk_attention
from beyond_monologue.model.time_rope import TimeRoPE

SHAPES = {
    "cuda": {"heads": 24, "head_dim": 128, "frames": 31, "tokens_per_frame": 22 * 40, "tokens_per_window": 32,
             "dtype": torch.bfloat16},
    "cpu": {"heads": 8, "head_dim": 128, "frames": 21, "tokens_per_frame": 64, "tokens_per_window": 32,
            "dtype": torch.float32},
}


def extra_memory_mib(fn, device):
    """Peak CUDA memory above what was allocated before the call (None off CUDA)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    out = fn()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del out
    return peak / 2**20


def make_inputs(shape, device, frames=None, seed=0):
    g = torch.Generator(device="cpu").manual_seed(seed)
    frames = frames or shape["frames"]
    H, d = shape["heads"], shape["head_dim"]
    lq, lk = frames * shape["tokens_per_frame"], frames * shape["tokens_per_window"]
    q, k, v = (torch.randn(1, H, n, d, generator=g).to(device=device, dtype=shape["dtype"]) for n in (lq, lk, lk))
    return q, k, v, kernel_times(frames, frames, 25.0)


def run(device, repeats, scaling):
    shape = SHAPES[device.type if device.type == "cuda" else "cpu"]
    q, k, v, times = make_inputs(shape, device)
    H = shape["heads"]
    tables = {"talk (default)": MHGKKernel.default("talk", H).bias_table(*times, device=device),
              "frame-local": MHGKKernel.frame_local(H).bias_table(*times, device=device)}
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}; torch {torch.__version__}; "
          f"q {tuple(q.shape)} k/v {tuple(k.shape)} {shape['dtype']}; {torch.get_num_threads()} CPU threads")
    def sdpa():
        return F.scaled_dot_product_attention(q, k, v)

    base_ms, _ = paired_ms(sdpa, sdpa, device, repeats)
    base_mem = extra_memory_mib(sdpa, device)
    print(f"plain SDPA (no bias): {base_ms:.3f} ms" + (f", {base_mem:.1f} MiB extra" if base_mem is not None else ""))
    print("| kernel | backend | ms | x SDPA | extra MiB | x SDPA mem | rel. err vs fp32 reference |")
    print("|---|---|---|---|---|---|---|")
    for kernel_name, table in tables.items():
        reference = mhgk_attention(q.float(), k.float(), v.float(), table, "reference")
        backends = ["reference", "grouped", "augmented", "flex", "xformers", "auto"]
        if kernel_name == "frame-local":
            backends = ["grouped", "local", "auto"]
        for backend in backends:
            if backend == "flex" and device.type != "cuda":
                continue  # eager FlexAttention materialises the scores off CUDA: not a contender
            if not backend_available(backend, device):
                print(f"| {kernel_name} | {backend} | n/a (not available here) | | | | |")
                continue
            label = f"auto -> {choose_backend(q, k, table)}" if backend == "auto" else backend

            def call(backend=backend, table=table):
                return mhgk_attention(q, k, v, table, backend)

            try:
                ms, ratio = paired_ms(call, sdpa, device, repeats)
                mem = extra_memory_mib(call, device)
                err = ((call().float() - reference).norm() / reference.norm()).item()
            except Exception as failure:  # noqa: BLE001 - report the backend and go on with the others
                print(f"| {kernel_name} | {label} | failed: {type(failure).__name__}: {str(failure)[:80]} | | | | |")
                continue
            mem_cols = f"{mem:.1f} | {mem / base_mem:.2f}" if mem is not None else "- | -"
            print(f"| {kernel_name} | {label} | {ms:.3f} | {ratio:.2f} | {mem_cols} | {err:.1e} |")
    rope_row(q, k, v, tables["talk (default)"], times, sdpa, device, repeats)
    if scaling and device.type == "cuda":
        print("\nextra memory of 'auto' (talk kernel) as the video grows (O(L) means roughly linear):")
        for frames in (11, 21, 31, 41):
            q, k, v, times = make_inputs(shape, device, frames=frames)
            table = MHGKKernel.default("talk", H).bias_table(*times, device=device)
            mem = extra_memory_mib(lambda q=q, k=k, v=v, table=table: mhgk_attention(q, k, v, table), device)
            sdpa = extra_memory_mib(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), device)
            print(f"  {frames} latents, {q.shape[2]} x {k.shape[2]} tokens: auto {mem:.1f} MiB, SDPA {sdpa:.1f} MiB")


def rope_row(q, k, v, table, times, sdpa, device, repeats):
    """The default talk kernel with the adapter's time-RoPE (format 2) rotating q and k first (``auto`` backend)."""
    rope = TimeRoPE(rotary_dims=q.shape[-1]).tables(*times, device=device)
    reference = mhgk_attention(rope.rotate_queries(q.float()), rope.rotate_keys(k.float()), v.float(), table, "reference")

    def call():
        return mhgk_attention(rope.rotate_queries(q), rope.rotate_keys(k), v, table)

    ms, ratio = paired_ms(call, sdpa, device, repeats)
    mem = extra_memory_mib(call, device)
    err = ((call().float() - reference).norm() / reference.norm()).item()
    mem_cols = f"{mem:.1f} | -" if mem is not None else "- | -"
    print(f"| talk (default) + time-RoPE | auto -> {choose_backend(q, k, table)} | {ms:.3f} | {ratio:.2f} | {mem_cols} | {err:.1e} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per backend (default 20 GPU, 5 CPU)")
    parser.add_argument("--scaling", action="store_true", help="also print memory for growing video lengths (CUDA)")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    with torch.no_grad():
        run(device, args.repeats or (20 if device.type == "cuda" else 5), args.scaling)


if __name__ == "__main__":
    main()
