"""Benchmark: one denoising step of the adapter-patched Wan2.2-TI2V-5B vs the same step unpatched, in one run.

    .venv/bin/python bench/model_step.py                 # CUDA when present (full size), else the scaled CPU shape
    .venv/bin/python bench/model_step.py --device cpu --shape full --layers 2 --width 256 --height 128 --frames 9
                                                   # the full-width build path on a CPU, shortened

Models are built the way ComfyUI's Load Diffusion Model builds them, from shapes alone: the Wan2.2-TI2V-5B
key layout (``beyond_monologue/weights/smoke/wan_dit.py``) on the meta device goes through ComfyUI's
model detection (``WAN22_T2V``), the model is created directly on the compute device in the compute
dtype and filled with random values there (no 10 GB state dict in host memory). The Beyond Monologue
adapter (talk + listen branches, Q-Formers of the documented default size: 768 wide, 32 queries,
2 layers) is built the same way and attached with ``wan_patch.attach_duplex_adapter``.

"One step" is ComfyUI's ``comfy.sample.sample`` with one euler step (one model evaluation at cfg 1):

* base: the unpatched MODEL;
* patched: the same MODEL with the adapter and a window's ``DuplexCall`` (both streams on, MHGK
  default kernels, ``auto`` attention backend) plus the past-end guide frame (one more latent of tokens);
* adapter only: patched without the guide frame.

Ratios are medians of alternately timed pairs (``bench/timing.py``). Full shape: 1280 x 704 px,
121 frames = 31 latents of 44 x 80 (27,280 video tokens), 512 text tokens, bf16. The guided step of
BM Sampler's default guidance (4 evaluations, batched) is also timed against ComfyUI's CFG (2), and
"seconds per generated second" = (Q-Former time + steps x guided step) / new video seconds of a window
(121-frame window, 3 motion latents: 112 new frames at 25 fps). Peak VRAM is
``torch.cuda.max_memory_allocated`` over the step (weights included). Absolute times mean something
only on a GPU; on the CPU only the ratios do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from timing import paired_ms, sync, time_ms

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "full": {"dim": 3072, "ffn": 14336, "layers": 30, "width": 1280, "height": 704, "frames": 121},  # Wan2.2-TI2V-5B
    "cpu": {"dim": 512, "ffn": 2048, "layers": 4, "width": 320, "height": 192, "frames": 33},  # scaled
}
TEXT_TOKENS, FPS, MOTION_LATENTS = 512, 25.0, 3


def load_comfy(device: torch.device):
    """ComfyUI on sys.path with the right device choice, then the pack as a package (as ComfyUI loads it)."""
    sys.path[:0] = [str(ROOT / "tests")]
    sys.path.append(str(ROOT))  # after ComfyUI's folder: ComfyUI's own ``nodes`` must win
    from beyond_monologue.comfyui.comfy_launcher import find_comfyui

    sys.path.insert(0, str(find_comfyui()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = device.type == "cpu"
    import comfy_inprocess

    pack = comfy_inprocess._load_pack()
    for name in ("duplex_guider", "guidance", "wan_patch", "duplex_call", "weights.smoke.wan_dit"):
        __import__(f"{pack.__name__}.beyond_monologue.{name}")
    return pack.beyond_monologue


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Random values in place on the module's device: norm weights 1, biases 0, the rest N(0, 0.02)."""
    generator = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    for name, param in module.named_parameters():
        if name.endswith("bias"):
            param.zero_()
        elif "norm" in name and param.ndim == 1:
            param.fill_(1.0)
        else:
            param.normal_(0.0, 0.02, generator=generator)


def build_models(bm, shape: dict, device: torch.device, dtype: torch.dtype):
    """(base MODEL, adapter-patched MODEL) of the given size, built on ``device``."""
    import comfy.model_detection
    import comfy.model_patcher
    import comfy.ops

    layout = bm.weights.smoke.wan_dit.wan_dit_layout(shape["dim"], shape["ffn"], shape["layers"], 48, 48, i2v=False)
    meta = {key: torch.empty(spec.shape, device="meta") for key, spec in layout.items()}
    config = comfy.model_detection.model_config_from_unet(meta, "")
    config.set_inference_dtype(dtype, None)
    model = config.get_model(meta, "", device=device)
    randomize_(model.diffusion_model, 0)
    base = comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)
    cfg = bm.model.duplex_adapter.AdapterConfig("beyond_monologue", shape["dim"], shape["layers"], shape["dim"] // 128,
                                          ("talk", "listen"), True, bm.model.audio_qformer.QFormerConfig(),
                                          base_model="wan2.2-ti2v-5b", trained=False)
    adapter = bm.model.duplex_adapter.DuplexAdapter(cfg, operations=comfy.ops.manual_cast, device=device, dtype=dtype)
    randomize_(adapter, 1)
    adapter_patcher = comfy.model_patcher.ModelPatcher(adapter, load_device=device, offload_device=device)
    return base, bm.model.wan_patch.attach_duplex_adapter(base, adapter_patcher)


def run(device: torch.device, shape: dict, dtype: torch.dtype, repeats: int, steps: int) -> None:
    bm = load_comfy(device)
    import comfy.model_management
    import comfy.sample
    import comfy.samplers

    if device.type == "cuda" and device.index is None:
        device = comfy.model_management.get_torch_device()  # ComfyUI's own device object (cuda:N)

    base, patched = build_models(bm, shape, device, dtype)
    latents = (shape["frames"] - 1) // 4 + 1
    size = (shape["height"] // 16, shape["width"] // 16)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn((1, 48, latents, *size), generator=g)
    guide_latent = torch.randn((1, 48, 1, *size), generator=g)
    positive, negative = ([[torch.randn((1, TEXT_TOKENS, 4096), generator=g), {}]] for _ in range(2))
    talk, listen = (torch.randn((shape["frames"], 12, 768), generator=g) for _ in range(2))
    ones = torch.ones(shape["frames"])
    duplex = bm.audio.duplex_audio.DuplexAudio(talk, listen, ones, ones, fps=FPS)
    guide = bm.sampling.duplex_call.GuideLatent(base.model.process_latent_in(guide_latent), latents)
    scales = bm.sampling.guidance.GuidanceScales()
    anchors = bm.sampling.guidance.guidance_anchors(scales)

    def windowed(use_guide=True, branches=None):
        call = bm.model.wan_patch.prepare_window(patched, duplex, 0, latents, branches=branches or {},
                                           guide=guide if use_guide else None)
        clone = patched.clone()
        clone.model_options["transformer_options"]["bm_duplex"] = call
        return clone

    with_guide, adapter_only = windowed(True), windowed(False)
    qformer_ms = time_ms(lambda: bm.model.wan_patch.prepare_window(patched, duplex, 0, latents), device)

    def step(model, cfg=1.0):
        return lambda: comfy.sample.sample(model, noise, 1, cfg, "euler", "simple", positive, negative,
                                           torch.zeros_like(noise), disable_pbar=True, seed=0)

    guided = windowed(True, bm.sampling.guidance.anchor_branches(anchors))
    sigmas = comfy.samplers.KSampler(guided, 1, device, "euler", "simple").sigmas

    def guided_step():
        guider = bm.sampling.duplex_guider.DuplexGuider(guided, anchors)
        guider.set_conds(positive, negative)
        return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                             disable_pbar=True, seed=0)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (scaled shape; only ratios count)"
    print(f"device: {name}; torch {torch.__version__}; {dtype}; DiT dim {shape['dim']}, {shape['layers']} blocks; "
          f"{shape['width']}x{shape['height']} px, {shape['frames']} frames = {latents} latents of {size[0]}x{size[1]}; "
          f"{TEXT_TOKENS} text tokens; {repeats} timed pairs")
    base_ms, _ = paired_ms(step(base), step(base), device, repeats)
    rows = [("base (unpatched)", base_ms, 1.0, peak_gib(step(base), device))]
    for label, model in (("patched (adapter + guide frame)", with_guide), ("adapter only (no guide frame)", adapter_only)):
        ms, ratio = paired_ms(step(model), step(base), device, repeats)
        rows.append((label, ms, ratio, peak_gib(step(model), device)))
    guided_ms, guided_ratio = paired_ms(guided_step, step(base, cfg=5.0), device, max(1, repeats // 2))
    rows.append((f"guided step, BM default ({len(anchors)} evals) vs CFG (2)", guided_ms, guided_ratio,
                 peak_gib(guided_step, device)))
    print("| step | ms | x base | peak VRAM GiB |")
    print("|---|---|---|---|")
    for label, ms, ratio, peak in rows:
        print(f"| {label} | {ms:.1f} | {ratio:.3f} | {'-' if peak is None else f'{peak:.2f}'} |")
    motion = min(MOTION_LATENTS, latents - 1)
    new_seconds = (4 * (latents - motion) if motion else shape["frames"]) / FPS
    per_window = qformer_ms + steps * guided_ms
    print(f"Q-Formers (once per window, both streams): {qformer_ms:.1f} ms")
    print(f"seconds per generated second (BM default guidance, {steps} steps, window {shape['frames']} frames, "
          f"{motion} motion latents = {new_seconds:.2f} s new video per window): {per_window / 1e3 / new_seconds:.2f}")
    adapter_x, guide_x = macs_ratios(shape, latents, size, audio_tokens=latents * 32)
    print(f"analytic multiply-adds of this shape: adapter x{adapter_x:.3f}, adapter + guide frame x{adapter_x * guide_x:.3f}")


def macs_ratios(shape: dict, latents: int, size: tuple[int, int], audio_tokens: int, context_dim: int = 768):
    """Multiply-add ratios of one DiT evaluation: (base + adapter) / base and (with guide frame) / (without).

    Per block: self-attention projections 4 N D^2 and scores/values 2 N^2 D, text cross-attention
    2 N D^2 + 2 T D^2 + 2 N T D, FFN 2 N D F; each adapter stream 2 N D^2 (q, o) + 2 A D C (k, v)
    + 2 N A D (MHGK attention). N video tokens, T text tokens, A audio tokens, C Q-Former width.
    """
    d, f = shape["dim"], shape["ffn"]
    per_frame = (size[0] // 2) * (size[1] // 2)

    def base(n):
        return 4 * n * d * d + 2 * n * n * d + 2 * n * d * d + 2 * TEXT_TOKENS * d * d + 2 * n * TEXT_TOKENS * d + 2 * n * d * f

    def adapter(n):
        return 2 * (2 * n * d * d + 2 * audio_tokens * d * context_dim + 2 * n * audio_tokens * d)

    n = latents * per_frame
    with_guide = n + per_frame
    return (base(n) + adapter(n)) / base(n), (base(with_guide) + adapter(n)) / (base(n) + adapter(n))


def peak_gib(fn, device: torch.device) -> float | None:
    """Peak CUDA memory (GiB, everything allocated) during ``fn()``; None off CUDA."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument("--shape", choices=list(SHAPES), help="default: full on CUDA, cpu on the CPU")
    for key in ("layers", "width", "height", "frames"):
        parser.add_argument(f"--{key}", type=int, help=f"override the shape's {key}")
    parser.add_argument("--repeats", type=int, help="timed pairs per comparison (default 5 GPU, 3 CPU)")
    parser.add_argument("--steps", type=int, default=30, help="steps per window for seconds per generated second")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    shape = dict(SHAPES[args.shape or ("full" if device.type == "cuda" else "cpu")])
    shape.update({k: getattr(args, k) for k in ("layers", "width", "height", "frames") if getattr(args, k)})
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.inference_mode():
        run(device, shape, dtype, args.repeats or (5 if device.type == "cuda" else 3), args.steps)


if __name__ == "__main__":
    main()
