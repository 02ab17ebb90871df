"""``python -m beyond_monologue.train run`` under torchrun (CPU, gloo): 2 processes = 1 process, resumed = unbroken.

A tiny Wan2.2-shaped DiT is saved as a diffusion model file and a set of random clips with BM Save
Training Set's own function into a temporary ComfyUI ``models`` folder; the runs are real
``python -m torch.distributed.run`` launches (torchrun) of the pack's command.
"""

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from wan_fixtures import tiny_wan_state_dict

from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT

LATENTS, SIZE = 3, 4


def _sample(bm, seed):
    g = torch.Generator().manual_seed(seed)
    frames = 4 * (LATENTS - 1) + 1
    audio = bm.audio.duplex_audio.DuplexAudio(torch.randn(frames, 12, 768, generator=g), torch.randn(frames, 12, 768, generator=g),
                                              torch.ones(frames), torch.ones(frames), fps=25.0)
    return bm.train.samples.TrainingSample(torch.randn(48, LATENTS, SIZE, SIZE, generator=g) * 0.5,
                                           torch.randn(48, 1, SIZE, SIZE, generator=g) * 0.5, audio,
                                           torch.randn(4, 4096, generator=g), f"clip{seed}")


@pytest.fixture(scope="module")
def base(pack, tmp_path_factory):
    """A ComfyUI base directory: models/diffusion_models/tiny.safetensors, a 3-clip set, a start adapter."""
    import importlib

    for name in ("samples", "trainer"):
        importlib.import_module(f"{pack.__name__}.beyond_monologue.train.{name}")
    bm = pack.beyond_monologue
    root = tmp_path_factory.mktemp("comfy_base")
    models = root / "models"
    for folder in ("diffusion_models", "bm_training_sets", "beyond_monologue"):
        (models / folder).mkdir(parents=True)
    save_file(tiny_wan_state_dict("wan22_5b", num_layers=1), str(models / "diffusion_models" / "tiny.safetensors"))
    bm.train.samples.save_set(bm.train.samples.TrainingSet().extended([_sample(bm, i) for i in range(3)]),
                              models / "bm_training_sets" / "clips.safetensors")
    cfg = bm.model.adapter_checkpoint.smoke_config("beyond_monologue", model_dim=256, num_layers=1)
    start = bm.model.duplex_adapter.DuplexAdapter(cfg).reset_parameters(1, zero_output=False).float()
    bm.model.adapter_checkpoint.save_adapter(start, models / "beyond_monologue" / "start.safetensors")
    return root


def _config(base, output, steps=3, every=2, stage="both", top="", recipe=""):
    path = base / f"{output}.toml"
    path.write_text(f'model = "tiny.safetensors"\ntraining_sets = ["clips.safetensors"]\noutput = "{output}"\n{top}'
                    f'global_batch = 4\ncheckpoint_every = {every}\ntraining_dtype = "float32"\ncheckpointing = false\n'
                    f'continue_from = "start.safetensors"\n[recipe]\nstage = "{stage}"\nsteps = {steps}\nlr_new = 1e-3\n'
                    'ema_decay = 0.5\nseed = 3\nwindow_latents = 2\ndropout_talk = 0.5\ndropout_listen = 0.5\n' + recipe)
    return path


def _torchrun(base, config, processes, kill_after=None, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("BM_TRAIN_KILL_AFTER_STEP", None)
    if kill_after:
        env["BM_TRAIN_KILL_AFTER_STEP"] = str(kill_after)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                           "-m", "beyond_monologue.train", "run", "--config", str(config),
                           "--base-directory", str(base), "--cpu"],
                          cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _log(base, output):
    return [json.loads(line) for line in (base / "output" / "bm_train" / output / "log.jsonl").read_text().splitlines()]


def _adapter(base, output):
    return load_file(str(base / "models" / "beyond_monologue" / f"{output}.safetensors"))


def _close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(abs(a), abs(b), 1e-12)


def _one_process_run(base):
    """The log of the 3-step one-process run "one" (run once per module)."""
    if not (base / "models" / "beyond_monologue" / "one.safetensors").exists():
        _torchrun(base, _config(base, "one"), 1)
    return _log(base, "one")


def test_two_processes_train_exactly_what_one_process_trains(base):
    _one_process_run(base)
    _torchrun(base, _config(base, "two"), 2)
    one, two = _log(base, "one"), _log(base, "two")
    assert [line["step"] for line in one] == [1, 2, 3] and two[0]["world_size"] == 2
    for a, b in zip(one, two, strict=True):
        assert len(a["clip_losses"]) == 4 and a["loss_by_case"].keys() == b["loss_by_case"].keys()
        assert all(_close(x, y) for x, y in zip(a["clip_losses"], b["clip_losses"], strict=True)), (a, b)
    assert any("null" in case for line in one for case in line["loss_by_case"])  # learned nulls trained too
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(base / "output" / "bm_train" / "two" / "tensorboard")).Reload()
    assert [round(e.value, 5) for e in events.Scalars("loss")] == [round(line["loss"], 5) for line in two]
    assert {f"loss_by_case/{case}" for line in two for case in line["loss_by_case"]} <= set(events.Tags()["scalars"])
    start = load_file(str(base / "models" / "beyond_monologue" / "start.safetensors"))
    first, second = _adapter(base, "one"), _adapter(base, "two")
    assert first.keys() == second.keys()
    with safe_open(str(base / "models" / "beyond_monologue" / "two.safetensors"), framework="pt") as f:
        meta = f.metadata()
    model_bytes = (base / "models" / "diffusion_models" / "tiny.safetensors").read_bytes()
    assert meta["bm_trained"] == "true" and meta["bm_train_steps"] == "3" and meta["bm_train_samples"] == "3"
    assert meta["bm_train_base_model"] == "tiny.safetensors" and meta["bm_train_ema"] == "0.5"
    assert meta["bm_train_base_model_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert any(not torch.equal(first[k], start[k]) for k in first)
    for key in first:
        # same up to summation order: AdamW divides by sqrt(v), so float32 rounding of near-zero gradient
        # elements (summed 4 at once vs 2 + 2 averaged) reaches the weights as at most 1e-3 of the training move
        moved = (first[key] - start[key]).abs().max()
        assert (first[key] - second[key]).abs().max() <= 1e-3 * moved + 1e-9, key


def test_a_killed_run_resumes_to_the_state_of_an_unbroken_run(base):
    _torchrun(base, _config(base, "unbroken", steps=4), 2)
    killed = _torchrun(base, _config(base, "broken", steps=4), 2, kill_after=3, check=False)
    assert killed.returncode != 0 and not (base / "models" / "beyond_monologue" / "broken.safetensors").exists()
    runs = base / "output" / "bm_train" / "broken"
    assert sorted(p.name for p in runs.glob("step_*")) == ["step_00000002"]  # step 3 done but not checkpointed
    _torchrun(base, _config(base, "broken", steps=4), 2)
    unbroken, broken = _log(base, "unbroken"), _log(base, "broken")
    assert [line["step"] for line in broken] == [1, 2, 3, 3, 4]
    for a, b in zip(unbroken[2:], broken[3:], strict=True):
        assert all(_close(x, y) for x, y in zip(a["clip_losses"], b["clip_losses"], strict=True)), (a, b)
    first, second = _adapter(base, "unbroken"), _adapter(base, "broken")
    for key in first:
        assert torch.allclose(first[key], second[key], rtol=1e-6, atol=1e-8), key


def test_a_run_resumes_on_another_world_size_and_refuses_another_stage(base):
    _torchrun(base, _config(base, "staged", steps=3), 1, kill_after=2, check=False)
    wrong_stage = _torchrun(base, _config(base, "staged", steps=3, stage="talking"), 1, check=False)
    assert wrong_stage.returncode != 0 and "recipe.stage: is 'talking' but the checkpoint step_00000002" in wrong_stage.stderr
    _torchrun(base, _config(base, "staged", steps=3), 2)  # killed on 1 process, resumed on 2
    one, staged = _one_process_run(base), _log(base, "staged")
    assert [line["world_size"] for line in staged] == [1, 1, 2]
    assert all(_close(x, y) for x, y in zip(one[-1]["clip_losses"], staged[-1]["clip_losses"], strict=True))


def test_bad_configs_name_the_key(base):
    odd = _config(base, "odd")
    odd.write_text(odd.read_text().replace("global_batch = 4", "global_batch = 3"))
    refused = _torchrun(base, odd, 2, check=False)
    assert refused.returncode != 0 and "global_batch: is 3, which 2 processes" in refused.stderr
    plan = subprocess.run([sys.executable, "-m", "beyond_monologue.train", "run", "--config", str(odd), "--dry-run",
                           "--world-size", "3", "--base-directory", str(base), "--cpu"],
                          cwd=PACK_ROOT, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 0, plan.stderr
    assert "3 clips" in plan.stdout and "1 clips per rank" in plan.stdout and "memory per rank" in plan.stdout
    assert "adapter (start.safetensors)" in plan.stdout
    missing = _config(base, "missing")
    missing.write_text(missing.read_text().replace('model = "tiny.safetensors"', 'model = "absent.safetensors"'))
    plan = subprocess.run([sys.executable, "-m", "beyond_monologue.train", "run", "--config", str(missing), "--dry-run",
                           "--base-directory", str(base), "--cpu"], cwd=PACK_ROOT, capture_output=True, text=True, timeout=120)
    assert plan.returncode == 2 and "model: 'absent.safetensors' is not in models/diffusion_models" in plan.stderr


BACKBONE = {"top": 'backbone_parameters = ["blocks.*"]\n', "recipe": "lr_backbone = 1e-3\n"}


def _trained_dit(base, output):
    return load_file(str(base / "models" / "diffusion_models" / f"{output}.safetensors"))


def test_fsdp2_trains_backbone_and_adapter_the_same_on_two_processes_and_resumes(base):
    _torchrun(base, _config(base, "fsdp_one", steps=4, **BACKBONE), 1)
    _torchrun(base, _config(base, "fsdp_two", steps=4, **BACKBONE), 2)
    one, two = _log(base, "fsdp_one"), _log(base, "fsdp_two")
    assert [line["lr_backbone"] for line in one] == [1e-3] * 4 and two[0]["world_size"] == 2
    for a, b in zip(one, two, strict=True):
        assert all(_close(x, y) for x, y in zip(a["clip_losses"], b["clip_losses"], strict=True)), (a, b)
    base_dit = load_file(str(base / "models" / "diffusion_models" / "tiny.safetensors"))
    first, second = _trained_dit(base, "fsdp_one"), _trained_dit(base, "fsdp_two")
    assert first.keys() == base_dit.keys()
    moved = [k for k in base_dit if not torch.equal(first[k], base_dit[k])]
    assert moved and all(k.startswith("blocks.") for k in moved)  # only the selected parameters train
    for key in moved:
        assert (first[key] - second[key]).abs().max() <= 1e-3 * (first[key] - base_dit[key]).abs().max() + 1e-9, key
    a, b = _adapter(base, "fsdp_one"), _adapter(base, "fsdp_two")
    start = load_file(str(base / "models" / "beyond_monologue" / "start.safetensors"))
    assert any(not torch.equal(a[k], start[k]) for k in a)
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-3 * (a[key] - start[key]).abs().max() + 1e-9, key
    with safe_open(str(base / "models" / "beyond_monologue" / "fsdp_two.safetensors"), framework="pt") as f:
        assert f.metadata()["bm_train_backbone_file"] == "fsdp_two.safetensors"
    # killed after step 3 (checkpoint at 2), resumed on one process: the unbroken two-process result
    killed = _torchrun(base, _config(base, "fsdp_broken", steps=4, **BACKBONE), 2, kill_after=3, check=False)
    assert killed.returncode != 0
    _torchrun(base, _config(base, "fsdp_broken", steps=4, **BACKBONE), 1)
    broken = _log(base, "fsdp_broken")
    assert [line["step"] for line in broken] == [1, 2, 3, 3, 4]
    for x, y in zip(two[3]["clip_losses"], broken[4]["clip_losses"], strict=True):
        assert _close(x, y), (two[3], broken[4])
    resumed = _trained_dit(base, "fsdp_broken")
    for key in moved:
        assert torch.allclose(resumed[key], second[key], rtol=1e-5, atol=1e-7), key
