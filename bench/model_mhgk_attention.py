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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import paired_ms, sync

from beyond_monologue.model.mhgk import MHGKKernel, kernel_times
from beyond_monologue.model.mhgk_attention import backend_available, choose_backend, mhgk_attention
from beyond_monologue.model.time_rope import TimeRoPE

SHAPES = {
    # Wan2.2-TI2V-5B, 704 x 1280, 121 frames: 31 latents x 22 x 40 tokens, 24 heads
    "cuda": {"heads": 24, "head_dim": 128, "frames": 31, "tokens_per_frame": 22 * 40, "tokens_per_window": 32,
             "dtype": torch.bfloat16},
    # Wan2.1-I2V-14B, 480 x 832, 81 frames: 21 latents x 30 x 52 tokens, 40 heads
    "wan21_14b": {"heads": 40, "head_dim": 128, "frames": 21, "tokens_per_frame": 30 * 52, "tokens_per_window": 32,
                  "dtype": torch.bfloat16},
    "cpu": {"heads": 8, "head_dim": 128, "frames": 21, "tokens_per_frame": 64, "tokens_per_window": 32,
            "dtype": torch.float32},
}
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")


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


def estimate_gib(shape) -> float:
    """Rough peak device memory of :func:`measure` (GiB): inputs, float32 copies, the float32 reference's
    score matrix (``heads x L_video x L_audio``) and its softmax, outputs."""
    H, d = shape["heads"], shape["head_dim"]
    lq, lk = shape["frames"] * shape["tokens_per_frame"], shape["frames"] * shape["tokens_per_window"]
    element = torch.empty((), dtype=shape["dtype"]).element_size()
    inputs = H * d * (2 * lq + 2 * lk) * element + H * d * (2 * lq + 2 * lk) * 4
    return (inputs + 3 * H * lq * lk * 4) / 2**30


def _sdpa_with(backend_name):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)

    def call(q, k, v):
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v)
    return call


def measure(shape, device, repeats, on_row=None):
    """Time, extra memory and error of every MHGK backend (and of SDPA's own backends) against plain SDPA.

    Args:
        shape: one of :data:`SHAPES` (heads, head_dim, frames, tokens per latent frame and per audio window, dtype).
        device: where to run; extra memory is measured on CUDA only (None elsewhere).
        repeats: timed pairs per row (alternating with plain SDPA, ``bench/timing.py``).
        on_row: called with each row dict as soon as it is measured (the GPU suite keeps partial results).

    Returns:
        ``(info, rows)``: ``info`` has the tensor shapes and plain SDPA's ms / MiB; each row has ``kernel``,
        ``backend``, ``ms``, ``x_sdpa`` (median per-pair time ratio), ``extra_mib``, ``x_sdpa_mem``,
        ``rel_err`` (relative L2 error against the float32 reference) or ``status`` when it did not run.
    """
    q, k, v, times = make_inputs(shape, device)
    H = shape["heads"]
    tables = {"talk (default)": MHGKKernel.default("talk", H).bias_table(*times, device=device),
              "frame-local": MHGKKernel.frame_local(H).bias_table(*times, device=device)}

    def sdpa():
        return F.scaled_dot_product_attention(q, k, v)

    base_ms, _ = paired_ms(sdpa, sdpa, device, repeats)
    base_mem = extra_memory_mib(sdpa, device)
    info = {"q": list(q.shape), "kv": list(k.shape), "dtype": str(shape["dtype"]), "sdpa_ms": base_ms,
            "sdpa_extra_mib": base_mem}
    rows = []

    def add(row):
        rows.append(row)
        if on_row:
            on_row(row)

    def timed(kernel_name, label, call, reference):
        try:
            ms, ratio = paired_ms(call, sdpa, device, repeats)
            mem = extra_memory_mib(call, device)
            err = ((call().float() - reference).norm() / reference.norm()).item()
        except Exception as failure:  # noqa: BLE001 - report the backend and go on with the others
            add({"kernel": kernel_name, "backend": label, "status": f"failed: {type(failure).__name__}: {str(failure)[:80]}"})
            return
        add({"kernel": kernel_name, "backend": label, "ms": ms, "x_sdpa": ratio, "extra_mib": mem,
             "x_sdpa_mem": None if mem is None or not base_mem else mem / base_mem, "rel_err": err})

    if device.type == "cuda":  # the backends plain SDPA chooses among, each forced alone
        reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        for name in SDPA_BACKENDS:
            timed("none (plain SDPA)", f"sdpa {name.lower()}", lambda name=name: _sdpa_with(name)(q, k, v), reference)
    for kernel_name, table in tables.items():
        reference = mhgk_attention(q.float(), k.float(), v.float(), table, "reference")
        backends = ["reference", "grouped", "augmented", "xformers", "auto", "flex"]  # flex last: it compiles
        if kernel_name == "frame-local":
            backends = ["grouped", "local", "auto"]
        for backend in backends:
            if backend == "flex" and device.type != "cuda":
                add({"kernel": kernel_name, "backend": backend,
                     "status": "skipped: eager FlexAttention materialises the scores off CUDA"})
                continue
            if not backend_available(backend, device):
                add({"kernel": kernel_name, "backend": backend, "status": "n/a (not available here)"})
                continue
            label = f"auto -> {choose_backend(q, k, table)}" if backend == "auto" else backend
            timed(kernel_name, label, lambda backend=backend, table=table: mhgk_attention(q, k, v, table, backend),
                  reference)
        del reference
    table = tables["talk (default)"]  # the adapter's time-RoPE (format 2) rotates q and k before the same attention
    rope = TimeRoPE(rotary_dims=q.shape[-1]).tables(*times, device=device)
    reference = mhgk_attention(rope.rotate_queries(q.float()), rope.rotate_keys(k.float()), v.float(), table, "reference")
    timed("talk (default) + time-RoPE", f"auto -> {choose_backend(q, k, table)}",
          lambda: mhgk_attention(rope.rotate_queries(q), rope.rotate_keys(k), v, table), reference)
    return info, rows


def run(device, repeats, scaling, shape_name=None):
    shape = SHAPES[shape_name or ("cuda" if device.type == "cuda" else "cpu")]
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}; torch {torch.__version__}; "
          f"{torch.get_num_threads()} CPU threads")
    info, rows = measure(shape, device, repeats)
    print(f"q {tuple(info['q'])} k/v {tuple(info['kv'])} {info['dtype']}")
    base_mem = info["sdpa_extra_mib"]
    print(f"plain SDPA (no bias): {info['sdpa_ms']:.3f} ms" + (f", {base_mem:.1f} MiB extra" if base_mem is not None else ""))
    print("| kernel | backend | ms | x SDPA | extra MiB | x SDPA mem | rel. err vs fp32 reference |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "status" in row:
            print(f"| {row['kernel']} | {row['backend']} | {row['status']} | | | | |")
            continue
        mem_cols = f"{row['extra_mib']:.1f} | {row['x_sdpa_mem']:.2f}" if row["extra_mib"] is not None else "- | -"
        print(f"| {row['kernel']} | {row['backend']} | {row['ms']:.3f} | {row['x_sdpa']:.2f} | {mem_cols} | "
              f"{row['rel_err']:.1e} |")
    if scaling and device.type == "cuda":
        H = shape["heads"]
        print("\nextra memory of 'auto' (talk kernel) as the video grows (O(L) means roughly linear):")
        for frames in (11, 21, 31, 41):
            q, k, v, times = make_inputs(shape, device, frames=frames)
            table = MHGKKernel.default("talk", H).bias_table(*times, device=device)
            mem = extra_memory_mib(lambda q=q, k=k, v=v, table=table: mhgk_attention(q, k, v, table), device)
            sdpa = extra_memory_mib(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), device)
            print(f"  {frames} latents, {q.shape[2]} x {k.shape[2]} tokens: auto {mem:.1f} MiB, SDPA {sdpa:.1f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per backend (default 20 GPU, 5 CPU)")
    parser.add_argument("--shape", choices=list(SHAPES), help="default: cuda (Wan2.2-5B) on CUDA, cpu elsewhere")
    parser.add_argument("--scaling", action="store_true", help="also print memory for growing video lengths (CUDA)")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    with torch.no_grad():
        run(device, args.repeats or (20 if device.type == "cuda" else 5), args.scaling, args.shape)


if __name__ == "__main__":
    main()
