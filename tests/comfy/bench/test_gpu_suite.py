"""bench/gpu_suite.py end to end on the CPU (scaled shapes), its full-size plan on the meta device, and its time guard.

The suite runs in a child process, as a GPU session would run it. No timing is asserted: the checks
are that every section ran and produced the rows and numbers the GPU tables are made of.
"""

import json
import subprocess
import sys

import pytest

from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT

SUITE = PACK_ROOT / "bench" / "gpu_suite.py"
SECTIONS = ["attention", "step Wan2.2-TI2V-5B bf16", "guided", "decode", "throughput", "step Wan2.1-I2V-14B bf16",
            "step Wan2.2-TI2V-5B fp8", "step Wan2.1-I2V-14B fp8"]


def run_suite(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(SUITE), "--device", "cpu", *args], capture_output=True, text=True,
                          timeout=timeout_s, cwd=PACK_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu_suite")
    done = run_suite("--json", str(folder / "suite.json"), "--markdown", str(folder / "suite.md"))
    return json.loads((folder / "suite.json").read_text()), (folder / "suite.md").read_text(), done.stdout


def section(result: dict, name: str) -> dict:
    return next(s for s in result["sections"] if s["name"] == name)


def test_every_section_runs_and_the_json_and_markdown_are_written(cpu_run):
    result, text, stdout = cpu_run
    assert {s["name"]: s["status"] for s in result["sections"]} == dict.fromkeys(SECTIONS, "ok")
    assert [s["name"] for s in result["sections"]] == SECTIONS
    assert result["meta"]["mode"] == "cpu" and result["meta"]["commit"]
    assert text.startswith("Measured ") and text.count("### ") == len(SECTIONS) and "| model | variant |" in text
    assert "plan: step Wan2.1-I2V-14B (scaled) fp8" in stdout


def test_attention_rows_match_the_float32_reference(cpu_run):
    rows = section(cpu_run[0], "attention")["rows"]
    timed = [r for r in rows if "rel_err" in r]
    assert {r["model"] for r in timed} == {"Wan2.2-TI2V-5B (scaled)", "Wan2.1-I2V-14B (scaled)"}
    assert {"grouped", "local"} <= {r["backend"] for r in timed}
    assert all(r["rel_err"] < 1e-5 and r["ms"] > 0 and r["x_sdpa"] > 0 for r in timed), timed
    assert all(r["status"] for r in rows if "rel_err" not in r)  # every untimed backend says why


def test_step_rows_carry_the_analytic_ratio_beside_the_measured_one(cpu_run):
    result = cpu_run[0]
    five = section(result, "step Wan2.2-TI2V-5B bf16")["rows"]
    assert [r["variant"] for r in five] == ["base (unpatched)", "adapter (talk + listen)", "adapter + guide frame"]
    assert five[0]["x_macs"] == 1.0 and 1.0 < five[1]["x_macs"] < five[2]["x_macs"]
    assert all(r["ms"] > 0 and r["x_base"] > 0 for r in five)
    fourteen = section(result, "step Wan2.1-I2V-14B bf16")
    assert [r["variant"] for r in fourteen["rows"]] == ["base (unpatched)", "adapter (talk + listen)",
                                                        "InfiniteTalk layout (talk, frame-local)"]
    assert 1.0 < fourteen["rows"][2]["x_macs"] < fourteen["rows"][1]["x_macs"]  # one frame-local stream is cheaper
    for name in ("step Wan2.2-TI2V-5B fp8", "step Wan2.1-I2V-14B fp8"):  # off CUDA: built and run, not timed
        fp8 = section(result, name)
        assert "timing skipped" in fp8["notes"][0]
        assert [(r["stored_dtypes"], r["finite"]) for r in fp8["rows"]] == [("torch.float8_e4m3fn", True)] * 2


def test_guided_decode_and_throughput_numbers(cpu_run):
    result = cpu_run[0]
    assert [r["evaluations"] for r in section(result, "guided")["rows"]] == [2, 4]
    decode = section(result, "decode")["rows"][0]
    assert decode["frames"] == 9 and decode["frames_per_s"] > 0 and decode["peak_mib"] > 0
    throughput = section(result, "throughput")
    short, long = throughput["rows"]
    assert (short["video_s"], long["video_s"]) == (5, 60)
    assert long["windows"] > short["windows"] >= 2 and long["sampling_s"] > short["sampling_s"] > 0
    assert "extrapolated" in throughput["notes"][0]


def test_dry_run_plans_the_real_shapes_within_an_80_gb_card():
    """``--dry-run --mode full`` builds both real-size DiTs and adapters with ComfyUI on the meta device."""
    plan = [line for line in run_suite("--dry-run", "--mode", "full").stdout.splitlines() if line.startswith("plan:")]
    text = "\n".join(plan)
    assert "24 heads x 27280 x 992 tokens" in text and "40 heads x 32760 x 672 tokens" in text
    assert "dim 3072, 30 blocks, 1280x704 px x 121 frames" in text and "dim 5120, 40 blocks, 832x480 px x 81" in text
    assert len(plan) == 8 and all(line.endswith("fits 80 GiB") for line in plan), text


def test_the_time_guard_cuts_sections_short_and_still_writes_the_json(tmp_path):
    run_suite("--budget-s", "2", "--json", str(tmp_path / "cut.json"), timeout_s=120)
    statuses = [s["status"] for s in json.loads((tmp_path / "cut.json").read_text())["sections"]]
    assert len(statuses) == len(SECTIONS) and statuses.count("ok") < len(SECTIONS)
    assert all(s == "ok" or s.startswith(("cut short", "skipped: time budget", "failed: RuntimeError: needs"))
               for s in statuses), statuses


def test_publish_fills_the_readme_block_and_the_performance_page(tmp_path, cpu_run):
    (tmp_path / "docs").mkdir()
    readme = (PACK_ROOT / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "tables.md").write_text(cpu_run[1])
    code = ("import sys; from pathlib import Path; sys.path.insert(0, 'bench'); import gpu_suite; "
            f"gpu_suite.publish(Path({str(tmp_path / 'tables.md')!r}).read_text(), Path({str(tmp_path)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PACK_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    published = (tmp_path / "README.md").read_text()
    head, rest = readme.split("<!-- gpu-suite:begin -->")
    assert published.startswith(head) and published.endswith(rest.split("<!-- gpu-suite:end -->")[1])
    assert "Not measured on a GPU yet." in readme and "Not measured on a GPU yet." not in published
    assert cpu_run[1].strip() in published and cpu_run[1].strip() in (tmp_path / "docs" / "PERFORMANCE.md").read_text()


FULL_WIDTH_STEP = """
import sys, torch
sys.path.insert(0, "bench")
import gpu_suite
step = gpu_suite.step_bench
torch.set_grad_enabled(False)
torch.set_num_threads(1)
bm = step.load_comfy(torch.device("cpu"))
shape = dict(step.SHAPES["wan21_14b"], layers=1, width=64, height=64, frames=5)
base = step.build_base(bm, shape, torch.device("cpu"), torch.bfloat16, {weight_dtype})
bench = step.StepBench(bm, shape, torch.device("cpu"))
dm = base.model.diffusion_model
print("dit", dm.dim, dm.num_heads, len(dm.blocks), next(dm.blocks.parameters()).dtype)
for layout in ("beyond_monologue", "infinitetalk"):
    patched = step.attach_adapter(bm, base, shape, torch.device("cpu"), torch.bfloat16, layout)
    out = bench.step(bench.windowed(patched, False))()
    print(layout, tuple(out.shape), bool(torch.isfinite(out).all()))
"""


def test_the_real_width_wan21_14b_builds_and_steps_at_one_block_with_fp8_weights():
    """The GPU path at the 14B's real width (5120, 40 heads, fp8 weights with bf16 compute, both adapter layouts)
    on the CPU: one block, 2 latents of 8 x 8 (~30 s on 2 shared cores; the bf16 path runs in the suite above)."""
    done = subprocess.run([sys.executable, "-c", FULL_WIDTH_STEP.format(weight_dtype="torch.float8_e4m3fn")],
                          capture_output=True, text=True, timeout=300, cwd=PACK_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dit 5120 40 1 torch.float8_e4m3fn" in done.stdout
    assert "beyond_monologue (1, 16, 2, 8, 8) True" in done.stdout and "infinitetalk (1, 16, 2, 8, 8) True" in done.stdout
