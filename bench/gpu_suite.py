"""The GPU suite: every speed and memory figure of the pack in one command, with a hard time guard.

    bash bench/gpu_suite.sh                          # full mode on CUDA (< 8 min on one H100), publishes the tables
    .venv/bin/python bench/gpu_suite.py --quick      # < 2 min: full widths and token counts, 4 DiT blocks
    .venv/bin/python bench/gpu_suite.py --dry-run    # planned shapes and a device-memory estimate per item
    .venv/bin/python bench/gpu_suite.py --device cpu --json out.json   # scaled shapes (what the test suite runs)

Random weights are built on the device from the real shapes (nothing is downloaded), by the existing
benchmarks, imported as functions: ``model_mhgk_attention.measure`` (MHGK attention vs SDPA and SDPA's
own backends), ``model_step`` (ComfyUI's own Wan model classes through its model detection, one euler
step with ``comfy.sample.sample``, adapters attached with ``wan_patch``, BM Sampler's guided step) and
``video_decode_memory.decode_vae`` / ``peak_rss`` (streaming decode). Sections, in priority order:

1. attention: Wan2.2-TI2V-5B 704x1280x121 (27,280 x 992 tokens, 24 heads) and Wan2.1-I2V-14B
   832x480x81 (32,760 x 672 tokens, 40 heads), bf16.
2. steps: one denoising step of the 5B and 14B DiTs, bf16 and fp8 (ComfyUI's ``weight_dtype``
   ``fp8_e4m3fn``: fp8 storage, bf16 compute through ``comfy.ops.manual_cast``; CUDA only), unpatched
   vs adapter, adapter + guide frame and (14B) the InfiniteTalk layout, each beside its analytic
   multiply-add ratio (``model_step.macs_ratios``).
3. guided: BM Sampler's default guidance (evaluations per step) vs ComfyUI's CFG at the workflow
   defaults (1280x704, 81-frame window).
4. decode: BM Decode Video (streaming) throughput and peak memory on the full-size Wan2.2 VAE.
5. throughput: seconds per generated second and peak VRAM for 5 s and 60 s of video, *extrapolated*
   from the timed guided step, Q-Former time and decode throughput (30 steps per window, windows of
   81 frames with 3 motion latents), not a timed long run.

Every section runs under a budget (SIGALRM): one that overruns is cut short, keeps the rows it has,
and is reported as cut. Absolute times mean something only on a GPU; on the CPU only ratios do.
Writes the tables as JSON (``--json``) and markdown (``--markdown``); ``--publish`` (CUDA only) writes
``docs/PERFORMANCE.md`` and the summary block of README.md's performance section.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import model_mhgk_attention as attention_bench  # noqa: E402
import model_step as step_bench  # noqa: E402
from timing import paired_ms, sync, time_ms  # noqa: E402

FP8 = torch.float8_e4m3fn
README_BEGIN, README_END = "<!-- gpu-suite:begin -->", "<!-- gpu-suite:end -->"
WORKFLOW = {"width": 1280, "height": 704, "window_frames": 81, "steps": 30, "seconds": (5, 60)}  # BM Sampler defaults
SCALED_5B = dict(step_bench.SHAPES["full"], dim=256, ffn=512, layers=2, width=128, height=64, frames=5)
SCALED_14B = dict(step_bench.SHAPES["wan21_14b"], dim=256, ffn=512, layers=2, width=64, height=64, frames=5)
ATTN_5B_SCALED = dict(attention_bench.SHAPES["cpu"], frames=11, tokens_per_frame=48)
ATTN_14B_SCALED = dict(attention_bench.SHAPES["cpu"], heads=10, frames=11, tokens_per_frame=40)

# Per mode: shapes, repeats and budgets (seconds). Budgets are shares of the whole; the guard cuts a section
# at its share or at what is left of the total, whichever comes first.
MODES = {
    "full": {"attention": {"Wan2.2-TI2V-5B": attention_bench.SHAPES["cuda"],
                           "Wan2.1-I2V-14B": attention_bench.SHAPES["wan21_14b"]},
             "attention_repeats": 10, "dit": {"Wan2.2-TI2V-5B": step_bench.SHAPES["full"],
                                              "Wan2.1-I2V-14B": step_bench.SHAPES["wan21_14b"]},
             "layers": None, "repeats": 2, "warmup": 1, "decode_latents": 21, "budget_s": 450},
    "quick": {"attention": {"Wan2.2-TI2V-5B": attention_bench.SHAPES["cuda"],
                            "Wan2.1-I2V-14B": attention_bench.SHAPES["wan21_14b"]},
              "attention_repeats": 5, "dit": {"Wan2.2-TI2V-5B": step_bench.SHAPES["full"],
                                              "Wan2.1-I2V-14B": step_bench.SHAPES["wan21_14b"]},
              "layers": 4, "repeats": 1, "warmup": 1, "decode_latents": 4, "budget_s": 95},
    "cpu": {"attention": {"Wan2.2-TI2V-5B (scaled)": ATTN_5B_SCALED,
                          "Wan2.1-I2V-14B (scaled)": ATTN_14B_SCALED},
            "attention_repeats": 1, "dit": {"Wan2.2-TI2V-5B (scaled)": SCALED_5B, "Wan2.1-I2V-14B (scaled)": SCALED_14B},
            "layers": None, "repeats": 1, "warmup": 1, "decode_latents": 3, "budget_s": 240},
}
SHARES = {"attention": 0.16, "step Wan2.2-TI2V-5B bf16": 0.14, "guided": 0.10, "decode": 0.12, "throughput": 0.01,
          "step Wan2.1-I2V-14B bf16": 0.22, "step Wan2.2-TI2V-5B fp8": 0.11, "step Wan2.1-I2V-14B fp8": 0.20}


class SectionTimeout(BaseException):
    """Raised by the alarm when a section overruns its budget (a BaseException: no ``except Exception`` eats it)."""


class Guard:
    """Hard time budget: the whole run gets ``total_s``, each section its share of it (SIGALRM, main thread)."""

    def __init__(self, total_s: float):
        self.total_s, self.start = total_s, time.monotonic()

    def left(self) -> float:
        return self.total_s - (time.monotonic() - self.start)

    def run(self, share: float, work):
        """``(status, seconds)`` of ``work()`` under ``min(share * total, time left)``."""
        budget = min(share * self.total_s, self.left())
        if budget < 1:
            return f"skipped: time budget spent ({self.total_s:.0f} s)", 0.0

        def alarm(signum, frame):
            raise SectionTimeout

        previous = signal.signal(signal.SIGALRM, alarm)
        signal.setitimer(signal.ITIMER_REAL, budget)
        start = time.monotonic()
        try:
            work()
            status = "ok"
        except SectionTimeout:
            status = f"cut short at its {budget:.0f} s budget (rows measured so far kept)"
        except Exception as failure:  # noqa: BLE001 - report it and go on with the next section
            traceback.print_exc()
            status = f"failed: {type(failure).__name__}: {str(failure)[:160]}"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return status, time.monotonic() - start


def free_device(device: torch.device) -> None:
    """Drop ComfyUI's loaded models and cached blocks between sections."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def peak_since_reset(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def median_ms(fn, device: torch.device, repeats: int, warmup: int) -> float:
    """Median synchronised ms of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return statistics.median(time_ms(fn, device) for _ in range(repeats))


def with_layers(shape: dict, layers: int | None) -> dict:
    return dict(shape, layers=layers) if layers else dict(shape)


def window_shape(mode: dict) -> dict:
    """The 5B shape of the guided section: the workflow defaults (or the scaled shape on the CPU)."""
    name, shape = next(iter(mode["dit"].items()))
    if "scaled" in name:
        return with_layers(shape, mode["layers"])
    return with_layers(dict(shape, width=WORKFLOW["width"], height=WORKFLOW["height"], frames=WORKFLOW["window_frames"]),
                       mode["layers"])


# ----------------------------------------------------------------------------------------------- planning

def weight_gib(bm, shape: dict, weight_dtype: torch.dtype, layouts=()) -> float:
    """Bytes of the DiT (``weight_dtype``) and adapters (bf16), from ComfyUI's model built on the meta device."""
    import comfy.model_detection

    meta = {key: torch.empty(spec.shape, device="meta") for key, spec in step_bench.dit_layout(bm, shape).items()}
    config = comfy.model_detection.model_config_from_unet(meta, "")
    config.set_inference_dtype(weight_dtype, None if weight_dtype == torch.bfloat16 else torch.bfloat16)
    model = config.get_model(meta, "", device=torch.device("meta"))
    total = sum(p.numel() * p.element_size() for p in model.diffusion_model.parameters())
    for layout in layouts:
        adapter = bm.model.duplex_adapter.DuplexAdapter(step_bench.adapter_config(bm, shape, layout), device="meta",
                                                        dtype=torch.bfloat16)
        total += sum(p.numel() * p.element_size() for p in adapter.parameters())
    return total / 2**30


def activation_gib(shape: dict, batch: int) -> float:
    """Rough upper bound of one evaluation's activations: per token the FFN hidden plus ~8 model widths, x2."""
    latents, (h, w), _ = step_bench.latent_grid(shape)
    tokens = (latents + 1) * (h // 2) * (w // 2)  # + guide frame
    return batch * tokens * (shape["ffn"] + 8 * shape["dim"]) * 2 * 2 / 2**30


def plan(bm, mode: dict, device: torch.device) -> list[dict]:
    """Every item the run will measure: what, the shapes, and an estimate of its peak device memory (GiB)."""
    items = []
    for name, shape in mode["attention"].items():
        lq, lk = shape["frames"] * shape["tokens_per_frame"], shape["frames"] * shape["tokens_per_window"]
        items.append({"item": f"attention {name}", "shape": f"{shape['heads']} heads x {lq} x {lk} tokens, "
                      f"head 128, {shape['dtype']}", "estimate_gib": attention_bench.estimate_gib(shape)})
    for name, shape in mode["dit"].items():
        shape = with_layers(shape, mode["layers"])
        latents, (h, w), _ = step_bench.latent_grid(shape)
        layouts = ("beyond_monologue", "infinitetalk") if shape["i2v"] else ("beyond_monologue",)
        for dtype_name, weight_dtype in (("bf16", torch.bfloat16), ("fp8", FP8)):
            weights = weight_gib(bm, shape, weight_dtype, layouts)
            items.append({"item": f"step {name} {dtype_name}",
                          "shape": f"dim {shape['dim']}, {shape['layers']} blocks, {shape['width']}x{shape['height']} "
                                   f"px x {shape['frames']} frames = {latents} x {h // 2} x {w // 2} tokens",
                          "estimate_gib": weights + activation_gib(shape, 1)})
    shape = window_shape(mode)
    latents, (h, w), _ = step_bench.latent_grid(shape)
    items.append({"item": "guided step (BM default guidance, batched)", "shape": f"{shape['width']}x{shape['height']} "
                  f"px x {shape['frames']} frames, {latents} x {h // 2} x {w // 2} tokens",
                  "estimate_gib": weight_gib(bm, shape, torch.bfloat16, ("beyond_monologue",)) + activation_gib(shape, 4)})
    if mode is not MODES["cpu"]:
        items.append({"item": "decode (Wan2.2 VAE, full size)", "shape": f"{mode['decode_latents']} latents of "
                      f"{h} x {w}", "estimate_gib": 1.4 + 12.0})  # bf16 weights + ComfyUI's decode-window reserve
    else:
        items.append({"item": "decode (Wan2.1-layout VAE, width 4, CPU)", "shape": f"{mode['decode_latents']} latents "
                      "of 8 x 8", "estimate_gib": 0.1})
    return items


# ----------------------------------------------------------------------------------------------- sections

def attention_section(mode: dict, device: torch.device, out: dict) -> None:
    for name, shape in mode["attention"].items():
        def keep(row, name=name):
            out["rows"].append({"model": name, **row})
        info, _ = attention_bench.measure(shape, device, mode["attention_repeats"], on_row=keep)
        out["notes"].append(f"{name}: q {info['q']}, k/v {info['kv']}, {info['dtype']}; plain SDPA "
                            f"{info['sdpa_ms']:.3f} ms" + (f", {info['sdpa_extra_mib']:.1f} MiB extra"
                                                          if info["sdpa_extra_mib"] is not None else ""))


def step_section(bm, mode: dict, name: str, shape: dict, weight_dtype: torch.dtype, device: torch.device,
                 out: dict) -> None:
    """Rows: base, adapter, adapter + guide frame, (I2V) InfiniteTalk layout; ms, x base, analytic MACs ratio."""
    shape = with_layers(shape, mode["layers"])
    if mode["layers"] and "scaled" not in name:
        out["notes"].append(f"{shape['layers']} blocks (quick mode: full width and tokens; per-block ratios)")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = step_bench.build_base(bm, shape, device, dtype, weight_dtype if weight_dtype == FP8 else None)
    bench = step_bench.StepBench(bm, shape, device)
    latents, size = bench.latents, bench.size
    reset_peak(device)
    base_ms = median_ms(bench.step(base), device, mode["repeats"], mode["warmup"])
    out["rows"].append({"model": name, "variant": "base (unpatched)", "ms": base_ms, "x_base": 1.0, "x_macs": 1.0,
                        "peak_gib": peak_since_reset(device)})
    adapter_x, guide_x = step_bench.macs_ratios(shape, latents, size, audio_tokens=latents * 32)
    layouts = [("beyond_monologue", [("adapter (talk + listen)", False, adapter_x),
                                     ("adapter + guide frame", True, adapter_x * guide_x)])]
    if shape["i2v"]:
        layouts[0][1].pop()
        out["notes"].append("no guide-frame row: I2V models take the reference through their image input "
                            "(first_frame, no extra tokens); the past-end guide frame is the Wan2.2-5B path")
        it_x, _ = step_bench.macs_ratios(shape, latents, size, audio_tokens=latents * 32, streams=1, attended_tokens=32)
        layouts.append(("infinitetalk", [("InfiniteTalk layout (talk, frame-local)", False, it_x)]))
    for layout, variants in layouts:
        patched = step_bench.attach_adapter(bm, base, shape, device, dtype, layout)
        for label, use_guide, macs in variants:
            model = bench.windowed(patched, use_guide)
            reset_peak(device)
            ms, ratio = paired_ms(bench.step(model), bench.step(base), device, mode["repeats"], mode["warmup"])
            out["rows"].append({"model": name, "variant": label, "ms": ms, "x_base": ratio, "x_macs": macs,
                                "peak_gib": peak_since_reset(device)})
            del model
        del patched
        free_device(device)


def fp8_build_check(bm, mode: dict, name: str, shape: dict, device: torch.device, out: dict) -> None:
    """Off CUDA: build the fp8-weight model and adapter and run one step each (no timing: skipped, reason noted)."""
    shape = with_layers(shape, mode["layers"])
    base = step_bench.build_base(bm, shape, device, torch.float32, FP8)
    stored = {p.dtype for p in base.model.diffusion_model.blocks.parameters()}
    patched = step_bench.attach_adapter(bm, base, shape, device, torch.float32)
    bench = step_bench.StepBench(bm, shape, device)
    for label, model in (("base (unpatched)", base), ("adapter (talk + listen)", bench.windowed(patched, False))):
        latent = bench.step(model)()
        out["rows"].append({"model": name, "variant": label, "stored_dtypes": " ".join(sorted(map(str, stored))),
                            "finite": bool(torch.isfinite(latent).all())})
    out["notes"].append("timing skipped: ComfyUI's fp8 weight_dtype path (comfy.ops.manual_cast) is measured on CUDA "
                        "only; on this device the fp8 build and one step of each model are checked")


def guided_section(bm, mode: dict, device: torch.device, out: dict, found: dict) -> None:
    shape = window_shape(mode)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = step_bench.build_base(bm, shape, device, dtype)
    patched = step_bench.attach_adapter(bm, base, shape, device, dtype)
    bench = step_bench.StepBench(bm, shape, device)
    found["qformer_ms"] = time_ms(bench.qformer(patched), device)
    guided = bench.guided_step(patched)
    cfg_ms = median_ms(bench.step(base, 5.0), device, mode["repeats"], mode["warmup"])
    out["rows"].append({"step": "ComfyUI CFG, unpatched", "evaluations": 2, "ms": cfg_ms, "x_cfg": 1.0,
                        "peak_gib": None})
    reset_peak(device)
    ms, ratio = paired_ms(guided, bench.step(base, 5.0), device, mode["repeats"], mode["warmup"])
    found.update(guided_ms=ms, peak_gib=peak_since_reset(device), shape=shape)
    out["rows"].append({"step": "BM default guidance (batched)", "evaluations": len(bench.anchors), "ms": ms,
                        "x_cfg": ratio, "peak_gib": found["peak_gib"]})
    out["notes"].append(f"{shape['width']}x{shape['height']} px, {shape['frames']}-frame window, {shape['layers']} "
                        f"blocks; Q-Formers once per window: {found['qformer_ms']:.1f} ms")


def decode_section(bm, mode: dict, device: torch.device, out: dict, found: dict) -> None:
    import video_decode_memory

    if device.type == "cuda":
        import comfy.sd
        from tiny_wan_vae import wan22_vae_state_dict

        vae = comfy.sd.VAE(sd=wan22_vae_state_dict(device=device))
        _, (h, w), channels = step_bench.latent_grid(window_shape(mode))
        label = "Wan2.2 VAE (full size, random weights)"
    else:
        vae = video_decode_memory.build_vae(dim=4)
        channels, h, w = 16, 8, 8
        label = "Wan2.1-layout VAE, width 4 (CPU)"
    samples = torch.randn((1, channels, mode["decode_latents"], h, w), generator=torch.Generator().manual_seed(0))
    video_decode_memory.decode_vae(vae, samples[:, :, :2], "bm_stream")  # warm-up: load, first-call allocations
    start = time.perf_counter()
    images, peak_mib = video_decode_memory.measure_decode(vae, samples, "bm_stream", device)
    seconds = time.perf_counter() - start
    frames = int(images.shape[0])
    found["decode_fps"] = frames / seconds
    found["decode_peak_gib"] = peak_mib / 1024
    out["rows"].append({"decoder": f"BM Decode Video (streaming), {label}", "latents": mode["decode_latents"],
                        "frames": frames, "px": f"{images.shape[2]}x{images.shape[1]}", "frames_per_s": frames / seconds,
                        "peak_mib": peak_mib})
    del vae, images


def throughput_section(mode: dict, out: dict, found: dict) -> None:
    """Seconds per generated second and peak VRAM for 5 s / 60 s, extrapolated (see module doc)."""
    if "guided_ms" not in found:
        raise RuntimeError("needs the guided section's numbers, which did not complete")
    shape = found["shape"]
    _, (h, w), channels = step_bench.latent_grid(shape)
    new_per_window = step_bench.new_seconds_per_window(shape)
    steps = WORKFLOW["steps"]
    per_window_s = (found["qformer_ms"] + steps * found["guided_ms"]) / 1e3
    for seconds in WORKFLOW["seconds"]:
        windows = 1 + max(0, math.ceil((seconds - shape["frames"] / step_bench.FPS) / new_per_window))
        frames = round(seconds * step_bench.FPS)
        decode_s = frames / found["decode_fps"] if "decode_fps" in found else float("nan")
        total_latents = (frames - 1) // 4 + 1
        latent_gib = total_latents * channels * h * w * 4 / 2**30
        peak = None if found.get("peak_gib") is None else max(found["peak_gib"], found.get("decode_peak_gib", 0.0)) + latent_gib
        out["rows"].append({"video_s": seconds, "windows": windows, "sampling_s": windows * per_window_s,
                            "decode_s": decode_s, "s_per_generated_s": (windows * per_window_s + decode_s) / seconds,
                            "peak_gib": peak})
    out["notes"].append(f"extrapolated, not timed end to end: windows x (Q-Formers + {steps} steps x one timed guided "
                        f"step, euler; the default uni_pc also evaluates once per step) + frames / decode throughput; "
                        f"{shape['frames']}-frame windows, "
                        f"{step_bench.MOTION_LATENTS} motion latents ({new_per_window:.2f} s new video per window); "
                        "peak = the measured per-window sampling/decode peak + the whole latent (sampling memory is "
                        "flat in length: bench/sampling_memory.py)")


# ----------------------------------------------------------------------------------------------- output

def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1 else (f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}")
    return str(value)


def markdown(result: dict) -> str:
    """All tables of a run as markdown, headed by date, device, commit and mode."""
    meta = result["meta"]
    lines = [f"Measured {meta['date']} on {meta['device']} (torch {meta['torch']}, ComfyUI {meta['comfyui']}), "
             f"commit `{meta['commit']}`, `{meta['mode']}` mode, {meta['seconds']:.0f} s.", ""]
    for section in result["sections"]:
        lines.append(f"### {section['title']}")
        lines.append("")
        if section["status"] != "ok":
            lines += [f"**{section['status']}**", ""]
        lines += [f"- {note}" for note in section["notes"]] + ([""] if section["notes"] else [])
        rows = section["rows"]
        if rows:
            columns = list(dict.fromkeys(key for row in rows for key in row))
            lines.append("| " + " | ".join(columns) + " |")
            lines.append("|" + "---|" * len(columns))
            lines += ["| " + " | ".join(fmt(row.get(c)) for c in columns) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def publish(text: str, root: Path = ROOT) -> None:
    """Write ``root``/docs/PERFORMANCE.md and the block between the gpu-suite markers of ``root``/README.md.

    Raises:
        ValueError: README.md lacks the ``<!-- gpu-suite:begin/end -->`` markers (nothing is written then).
    """
    readme = root / "README.md"
    if README_BEGIN not in readme.read_text() or README_END not in readme.read_text():
        raise ValueError(f"{readme} has no {README_BEGIN} ... {README_END} block to fill")
    (root / "docs" / "PERFORMANCE.md").write_text("# Measured performance (bench/gpu_suite.py)\n\n" + text + "\n")
    content = readme.read_text()
    head, rest = content.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{text}\n{README_END}{tail}")


def commit() -> str:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        return done.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run_suite(device: torch.device, mode_name: str, budget_s: float | None = None, dry_run: bool = False) -> dict:
    """Plan (and unless ``dry_run`` measure) every section; return the result dict that ``--json`` writes."""
    mode = MODES[mode_name]
    bm = step_bench.load_comfy(device)
    import comfy.model_management
    import comfyui_version

    if device.type == "cuda" and device.index is None:
        device = comfy.model_management.get_torch_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (scaled shapes; only ratios count)"
    result = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "device": name, "torch": torch.__version__, "comfyui": comfyui_version.__version__,
                       "commit": commit(), "mode": mode_name, "seconds": 0.0},
              "plan": plan(bm, mode, device), "sections": []}
    total_gib = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else 80.0
    for item in result["plan"]:
        item["fits"] = item["estimate_gib"] < 0.9 * total_gib
        print(f"plan: {item['item']:45} {item['shape']:70} ~{item['estimate_gib']:.1f} GiB "
              f"{'fits' if item['fits'] else 'MAY NOT FIT'} {total_gib:.0f} GiB", flush=True)
    if dry_run:
        return result
    guard, found = Guard(budget_s or mode["budget_s"]), {}
    torch.set_grad_enabled(False)
    if device.type == "cpu":
        torch.set_num_threads(1)  # scaled shapes: tiny ops, and fair on a shared machine (as bench/peak_rss.py)
    sections = [("attention", "MHGK attention vs SDPA", lambda out: attention_section(mode, device, out))]
    dit = list(mode["dit"].items())
    sections.append(("step Wan2.2-TI2V-5B bf16", f"One denoising step, {dit[0][0]}, bf16 weights",
                     lambda out: step_section(bm, mode, dit[0][0], dit[0][1], torch.bfloat16, device, out)))
    sections.append(("guided", "Guided step at the workflow defaults vs plain CFG",
                     lambda out: guided_section(bm, mode, device, out, found)))
    sections.append(("decode", "Decode throughput and peak memory", lambda out: decode_section(bm, mode, device, out, found)))
    sections.append(("throughput", "Seconds per generated second and peak VRAM (extrapolated)",
                     lambda out: throughput_section(mode, out, found)))
    sections.append(("step Wan2.1-I2V-14B bf16", f"One denoising step, {dit[1][0]}, bf16 weights",
                     lambda out: step_section(bm, mode, dit[1][0], dit[1][1], torch.bfloat16, device, out)))
    for name_, shape in dit:
        key = "step Wan2.2-TI2V-5B fp8" if not shape["i2v"] else "step Wan2.1-I2V-14B fp8"
        title = f"One denoising step, {name_}, fp8 weights (weight_dtype fp8_e4m3fn, bf16 compute)"
        if device.type != "cuda":
            sections.append((key, title, lambda out, name_=name_, shape=shape:
                             fp8_build_check(bm, mode, name_, shape, device, out)))
        else:
            sections.append((key, title, lambda out, name_=name_, shape=shape:
                             step_section(bm, mode, name_, shape, FP8, device, out)))
    for key, title, work in sections:
        out = {"name": key, "title": title, "rows": [], "notes": []}
        status, seconds = guard.run(SHARES[key] / sum(SHARES.values()), lambda work=work, out=out: work(out))
        out.update(status=status, seconds=seconds)
        result["sections"].append(out)
        print(f"[{seconds:6.1f} s] {title}: {status}", flush=True)
        free_device(device)
    result["meta"]["seconds"] = time.monotonic() - guard.start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    parser.add_argument("--quick", action="store_true", help="the < 2 min mode (4 DiT blocks, fewer repeats)")
    parser.add_argument("--dry-run", action="store_true", help="print the planned shapes and memory estimates only")
    parser.add_argument("--mode", choices=list(MODES), help="override the mode (e.g. --dry-run --mode full on a CPU "
                        "builds the full-size models on the meta device)")
    parser.add_argument("--budget-s", type=float, help="total time budget (default: 450 full, 95 quick, 240 CPU)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--publish", action="store_true", help="CUDA only: write docs/PERFORMANCE.md and README's block")
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    mode = args.mode or ("cpu" if device.type != "cuda" else ("quick" if args.quick else "full"))
    if mode != "cpu" and device.type != "cuda" and not args.dry_run:
        parser.error(f"--mode {mode} needs CUDA (it builds the real-size models); use --dry-run to see its plan")
    result = run_suite(device, mode, args.budget_s, args.dry_run)
    if args.dry_run:
        return
    text = markdown(result)
    print("\n" + text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")
    if args.publish:
        if device.type == "cuda":
            publish(text)
        else:
            print("not publishing: CPU numbers are scaled shapes, not the GPU tables")


if __name__ == "__main__":
    main()
