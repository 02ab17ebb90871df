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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import paired_ms, sync, time_ms

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    # Wan2.2-TI2V-5B, 1280 x 704, 121 frames (Wan2.2 VAE: 48 channels, 16x spatial)
    "full": {"dim": 3072, "ffn": 14336, "layers": 30, "width": 1280, "height": 704, "frames": 121,
             "in_dim": 48, "out_dim": 48, "i2v": False, "vae_stride": 16, "base_model": "wan2.2-ti2v-5b"},
    # Wan2.1-I2V-14B, 832 x 480, 81 frames (Wan2.1 VAE: 16 channels, 8x spatial; 36 = 16 + 4 mask + 16 image in)
    "wan21_14b": {"dim": 5120, "ffn": 13824, "layers": 40, "width": 832, "height": 480, "frames": 81,
                  "in_dim": 36, "out_dim": 16, "i2v": True, "vae_stride": 8, "base_model": "wan2.1-i2v-14b"},
    "cpu": {"dim": 512, "ffn": 2048, "layers": 4, "width": 320, "height": 192, "frames": 33,  # scaled 5B
            "in_dim": 48, "out_dim": 48, "i2v": False, "vae_stride": 16, "base_model": "wan2.2-ti2v-5b"},
}
TEXT_TOKENS, FPS, MOTION_LATENTS = 512, 25.0, 3


def load_comfy(device: torch.device):
    """ComfyUI on sys.path with the right device choice, then the pack as a package (as ComfyUI loads it)."""
    if str(ROOT / "tests") not in sys.path:
        sys.path[:0] = [str(ROOT / "tests")]
        sys.path.append(str(ROOT))  # after ComfyUI's folder: ComfyUI's own ``nodes`` must win
    from beyond_monologue.comfyui.comfy_launcher import find_comfyui

    if str(find_comfyui()) not in sys.path:
        sys.path.insert(0, str(find_comfyui()))
    import comfy.cli_args

    comfy.cli_args.args.cpu = device.type == "cpu"
    import comfy_inprocess

    pack = comfy_inprocess._load_pack()
    for name in ("sampling.duplex_guider", "sampling.guidance", "model.wan_patch", "sampling.duplex_call",
                 "model.adapter_checkpoint", "model.infinitetalk", "weights.smoke.wan_dit"):
        __import__(f"{pack.__name__}.beyond_monologue.{name}")
    return pack.beyond_monologue


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int) -> None:
    """Random values in place on the module's device: norm weights 1, biases 0, the rest N(0, 0.02).

    Parameters stored in a float8 dtype (ComfyUI's ``weight_dtype`` fp8) are filled in bfloat16 and
    cast with ``copy_`` (``normal_``, ``fill_`` have no float8 kernels on every device).
    """
    generator = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    for name, param in module.named_parameters():
        value = torch.empty(param.shape, dtype=torch.bfloat16, device=param.device) if param.dtype.itemsize == 1 else param
        if name.endswith("bias"):
            value.zero_()
        elif "norm" in name and param.ndim == 1:
            value.fill_(1.0)
        else:
            value.normal_(0.0, 0.02, generator=generator)
        if value is not param:
            param.copy_(value)


def dit_layout(bm, shape: dict, layers: int | None = None):
    """The Wan checkpoint key layout (name -> Spec with ``.shape``) of ``shape``; ``layers`` overrides the depth."""
    return bm.weights.smoke.wan_dit.wan_dit_layout(shape["dim"], shape["ffn"], layers or shape["layers"],
                                                   shape["in_dim"], shape["out_dim"], i2v=shape["i2v"])


def adapter_config(bm, shape: dict, layout: str = "beyond_monologue"):
    """Adapter config of the documented default size for ``shape``'s DiT: layout (a) talk + listen with
    Q-Formers (768 wide, 32 queries, 2 layers), or the public InfiniteTalk layout (talk only, frame-local)."""
    model = bm.model
    heads = shape["dim"] // 128
    if layout == "infinitetalk":
        return model.duplex_adapter.AdapterConfig(
            "infinitetalk", shape["dim"], shape["layers"], heads, ("talk",), False, model.infinitetalk.InfiniteTalkConfig(),
            {"talk": model.mhgk.MHGKKernel.frame_local(heads)}, base_model=shape["base_model"], trained=False)
    return model.duplex_adapter.AdapterConfig(layout, shape["dim"], shape["layers"], heads, ("talk", "listen"), True,
                                              model.audio_qformer.QFormerConfig(), base_model=shape["base_model"],
                                              trained=False)


def build_base(bm, shape: dict, device: torch.device, dtype: torch.dtype, weight_dtype: torch.dtype | None = None):
    """The unpatched MODEL (``ModelPatcher``) of ``shape``, built on ``device`` the way Load Diffusion Model does.

    ComfyUI's model detection reads the meta-device key layout; ``weight_dtype`` (e.g.
    ``torch.float8_e4m3fn``, Load Diffusion Model's ``weight_dtype``) stores the weights in that dtype and
    computes in ``dtype`` through ``comfy.ops.manual_cast``, as ComfyUI's UNETLoader does.
    """
    import comfy.model_detection
    import comfy.model_patcher

    meta = {key: torch.empty(spec.shape, device="meta") for key, spec in dit_layout(bm, shape).items()}
    config = comfy.model_detection.model_config_from_unet(meta, "")
    if weight_dtype is None or weight_dtype == dtype:
        config.set_inference_dtype(dtype, None)
    else:
        config.set_inference_dtype(weight_dtype, dtype)
    model = config.get_model(meta, "", device=device)
    randomize_(model.diffusion_model, 0)
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=device)


def attach_adapter(bm, base, shape: dict, device: torch.device, dtype: torch.dtype, layout: str = "beyond_monologue"):
    """A clone of ``base`` with a random adapter of ``layout`` (built on ``device``) attached."""
    import comfy.model_patcher
    import comfy.ops

    adapter = bm.model.duplex_adapter.DuplexAdapter(adapter_config(bm, shape, layout), operations=comfy.ops.manual_cast,
                                                    device=device, dtype=dtype)
    randomize_(adapter, 1)
    adapter_patcher = comfy.model_patcher.ModelPatcher(adapter, load_device=device, offload_device=device)
    return bm.model.wan_patch.attach_duplex_adapter(base, adapter_patcher)


def build_models(bm, shape: dict, device: torch.device, dtype: torch.dtype):
    """(base MODEL, adapter-patched MODEL) of the given size, built on ``device``."""
    base = build_base(bm, shape, device, dtype)
    return base, attach_adapter(bm, base, shape, device, dtype)


def latent_grid(shape: dict) -> tuple[int, tuple[int, int], int]:
    """(latent frames, (latent height, width), latent channels) of ``shape``'s video."""
    latents = (shape["frames"] - 1) // 4 + 1
    size = (shape["height"] // shape["vae_stride"], shape["width"] // shape["vae_stride"])
    return latents, size, shape["out_dim"]


class StepBench:
    """Inputs and callables for timing one denoising step of a MODEL of ``shape`` (ComfyUI's own sampler).

    ``step(model, cfg)`` is ``comfy.sample.sample`` with one euler step (one evaluation at cfg 1, two
    at cfg > 1); ``windowed(model, guide, branches)`` puts a window's ``DuplexCall`` (MHGK default
    kernels, ``auto`` backend, both streams on) into a clone; ``guided_step()`` runs BM Sampler's
    default guidance (``DuplexGuider``, batched evaluations) for one euler step.
    """

    def __init__(self, bm, shape: dict, device: torch.device):
        self.bm, self.shape, self.device = bm, shape, device
        self.latents, self.size, channels = latent_grid(shape)
        g = torch.Generator().manual_seed(0)
        self.noise = torch.randn((1, channels, self.latents, *self.size), generator=g)
        self.guide_latent = torch.randn((1, channels, 1, *self.size), generator=g)
        self.positive, self.negative = ([[torch.randn((1, TEXT_TOKENS, 4096), generator=g), {}]] for _ in range(2))
        talk, listen = (torch.randn((shape["frames"], 12, 768), generator=g) for _ in range(2))
        ones = torch.ones(shape["frames"])
        self.duplex = bm.audio.duplex_audio.DuplexAudio(talk, listen, ones, ones, fps=FPS)
        self.anchors = bm.sampling.guidance.guidance_anchors(bm.sampling.guidance.GuidanceScales())

    def windowed(self, patched, use_guide=True, branches=None):
        bm = self.bm
        guide = bm.sampling.duplex_call.GuideLatent(patched.model.process_latent_in(self.guide_latent), self.latents)
        call = bm.model.wan_patch.prepare_window(patched, self.duplex, 0, self.latents, branches=branches or {},
                                                 guide=guide if use_guide else None)
        clone = patched.clone()
        clone.model_options["transformer_options"]["bm_duplex"] = call
        return clone

    def qformer(self, patched):
        return lambda: self.bm.model.wan_patch.prepare_window(patched, self.duplex, 0, self.latents)

    def step(self, model, cfg: float = 1.0):
        import comfy.sample

        return lambda: comfy.sample.sample(model, self.noise, 1, cfg, "euler", "simple", self.positive, self.negative,
                                           torch.zeros_like(self.noise), disable_pbar=True, seed=0)

    def guided_step(self, patched):
        import comfy.samplers

        bm = self.bm
        guided = self.windowed(patched, True, bm.sampling.guidance.anchor_branches(self.anchors))
        sigmas = comfy.samplers.KSampler(guided, 1, self.device, "euler", "simple").sigmas

        def run():
            guider = bm.sampling.duplex_guider.DuplexGuider(guided, self.anchors)
            guider.set_conds(self.positive, self.negative)
            return guider.sample(self.noise, torch.zeros_like(self.noise), comfy.samplers.sampler_object("euler"),
                                 sigmas, disable_pbar=True, seed=0)
        return run


def new_seconds_per_window(shape: dict) -> float:
    """Seconds of new video each window after the first adds (all of it when there are no motion latents)."""
    latents = (shape["frames"] - 1) // 4 + 1
    motion = min(MOTION_LATENTS, latents - 1)
    return (4 * (latents - motion) if motion else shape["frames"]) / FPS


def run(device: torch.device, shape: dict, dtype: torch.dtype, repeats: int, steps: int) -> None:
    bm = load_comfy(device)
    import comfy.model_management

    if device.type == "cuda" and device.index is None:
        device = comfy.model_management.get_torch_device()  # ComfyUI's own device object (cuda:N)

    base, patched = build_models(bm, shape, device, dtype)
    bench = StepBench(bm, shape, device)
    latents, size = bench.latents, bench.size
    with_guide, adapter_only = bench.windowed(patched, True), bench.windowed(patched, False)
    qformer_ms = time_ms(bench.qformer(patched), device)
    step = bench.step
    guided_step = bench.guided_step(patched)
    anchors = bench.anchors

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
    new_seconds = new_seconds_per_window(shape)
    per_window = qformer_ms + steps * guided_ms
    print(f"Q-Formers (once per window, both streams): {qformer_ms:.1f} ms")
    print(f"seconds per generated second (BM default guidance, {steps} steps, window {shape['frames']} frames, "
          f"{MOTION_LATENTS} motion latents = {new_seconds:.2f} s new video per window): "
          f"{per_window / 1e3 / new_seconds:.2f}")
    adapter_x, guide_x = macs_ratios(shape, latents, size, audio_tokens=latents * 32)
    print(f"analytic multiply-adds of this shape: adapter x{adapter_x:.3f}, adapter + guide frame x{adapter_x * guide_x:.3f}")


def macs_ratios(shape: dict, latents: int, size: tuple[int, int], audio_tokens: int, context_dim: int = 768,
                streams: int = 2, attended_tokens: int | None = None):
    """Multiply-add ratios of one DiT evaluation: (base + adapter) / base and (with guide frame) / (without).

    Per block: self-attention projections 4 N D^2 and scores/values 2 N^2 D, text cross-attention
    2 N D^2 + 2 T D^2 + 2 N T D, FFN 2 N D F; each adapter stream 2 N D^2 (q, o) + 2 A D C (k, v)
    + 2 N A' D (MHGK attention). N video tokens, T text tokens, A audio tokens of the window, A' those each
    video token attends (``attended_tokens``; default A: the global MHGK kernels; one window's 32 for
    frame-local InfiniteTalk), C Q-Former width, ``streams`` audio streams (2: talk + listen).
    """
    d, f = shape["dim"], shape["ffn"]
    per_frame = (size[0] // 2) * (size[1] // 2)

    def base(n):
        return 4 * n * d * d + 2 * n * n * d + 2 * n * d * d + 2 * TEXT_TOKENS * d * d + 2 * n * TEXT_TOKENS * d + 2 * n * d * f

    def adapter(n):
        attended = audio_tokens if attended_tokens is None else attended_tokens
        return streams * (2 * n * d * d + 2 * audio_tokens * d * context_dim + 2 * n * attended * d)

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
