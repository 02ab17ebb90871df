"""The example workflows (workflows/) in a real ComfyUI, and the demo's entry point.

* every node type of the UI graphs exists on the server (no red nodes), each UI graph converts to
  its API twin (same nodes, links and values), the files are what the builder writes from the
  current manifest, and the server lists the UI graphs (not the twins) as the pack's templates;
* every API workflow renders with smoke weights on the real 30 s conversation and real portraits
  (smoke sizes and fps, see below), the dyadic one checked end to end: MP4 duration = the
  conversation's within one frame, size and fps as set, audio present;
* ``python -m beyond_monologue.comfyui.demo`` (its ``main``) against this server.

Cost: the text encoder is the full-size smoke umT5-XXL (ComfyUI's CLIPLoader builds nothing else),
minutes per prompt on a CPU, so every workflow keeps the one shipped prompt and the tests run in
this order on the session's server: ComfyUI then takes the encoded prompt (and every other
unchanged node output) from its cache. The demo test runs the dyadic test's prompt again with
another output prefix, so only Save Video runs.
"""

from __future__ import annotations

import json

import pytest

from beyond_monologue.comfyui import demo
from beyond_monologue.comfyui.comfy_launcher import PACK_DIR_NAME
from beyond_monologue.comfyui.example_workflows import BUILDERS, WORKFLOWS_DIR, build_all, file_texts
from beyond_monologue.comfyui.workflow_format import get_inputs, missing_node_types, set_inputs, ui_to_api
from beyond_monologue.video.media_info import probe_video

NAMES = [build.__name__ for build in BUILDERS]
CONVERSATION_S = 30.0  # sample.wav: 480000 samples at 16 kHz
AAC_FRAME_S = 1024 / 16000  # the encoder pads the audio stream to whole AAC frames
RENDER_TIMEOUT_S = 900
# Smoke settings of the single-avatar workflows, as the demo's for the dyadic one (demo.SMOKE_SETTINGS).
SMALL = {"fps": 5.0, "width": 32, "height": 32, "steps": 2}


def load(name: str) -> tuple[dict, dict, dict]:
    """The UI graph, API twin and batch map of one example workflow."""
    def read(path):
        return json.loads((WORKFLOWS_DIR / path).read_text())
    return read(f"{name}.json"), read(f"api/{name}.json"), read(f"api/{name}.map.json")


@pytest.fixture(scope="module")
def object_info(comfy_server):
    from beyond_monologue.comfyui.comfy_client import ComfyClient

    return ComfyClient(comfy_server.url).object_info()


@pytest.fixture(scope="module")
def inputs(comfy_server, served, assets):
    """The demo's inputs, uploaded as the demo uploads them (same names: ComfyUI's cache is shared)."""
    from beyond_monologue.comfyui.comfy_client import ComfyClient

    return demo.place_inputs(ComfyClient(comfy_server.url), assets)


def render(client, prompt: dict, tmp_path):
    """Run an API prompt, download its MP4 and describe it."""
    result = client.run(prompt, timeout_s=RENDER_TIMEOUT_S)
    assert result.status == "success", result.error_message()
    return probe_video(demo.download_video(client, result, tmp_path))


def assert_lasts_the_conversation(info, fps: float, size: tuple[int, int]):
    assert (info.width, info.height) == size and info.fps == fps
    assert abs(info.duration_s - CONVERSATION_S) < 1 / fps, info.summary()  # within one frame
    assert info.has_audio and abs(info.audio_s - info.duration_s) <= 1 / fps + AAC_FRAME_S, info.summary()


@pytest.mark.parametrize("name", NAMES)
def test_every_node_type_exists_on_the_server(object_info, name):
    ui, _, _ = load(name)
    assert missing_node_types(ui, object_info) == []
    assert {"MarkdownNote"} <= {node["type"] for node in ui["nodes"]}  # the model-files note


@pytest.mark.parametrize("name", NAMES)
def test_ui_graph_converts_to_its_api_twin(object_info, name):
    ui, api, mapping = load(name)
    assert ui_to_api(ui, object_info) == api
    for column, target in mapping.items():  # every map target is a node input of the twin
        node_id, input_name = target.split(".", 1)
        assert input_name in api[node_id]["inputs"], column


@pytest.mark.parametrize("name", NAMES)
def test_the_batch_client_accepts_every_column_of_the_map(client, inputs, name, tmp_path):
    from beyond_monologue.batch.jobs import load_mapping_file, read_jobs
    from beyond_monologue.batch.patching import load_workflow, prepare_jobs

    _, api, mapping = load(name)
    shipped = get_inputs(api, mapping, list(mapping))  # the shipped file names are on the server (inputs)
    job = {"name": "shipped_values", **shipped}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(job) + "\n")
    jobs = read_jobs(tmp_path / "jobs.jsonl", load_mapping_file(WORKFLOWS_DIR / "api" / f"{name}.map.json"))
    workflow = load_workflow(WORKFLOWS_DIR / "api" / f"{name}.json")
    prepare_jobs(workflow, client.object_info(), jobs, tmp_path)  # raises if a column is refused; the file lists are fresh
    assert len(jobs[0].values) == sum(1 for value in shipped.values() if value != "")  # "" keeps the workflow's


def test_workflow_files_are_what_the_builder_writes_from_the_manifest(object_info):
    for example in build_all(object_info):
        for relative, text in file_texts(example).items():
            assert (WORKFLOWS_DIR / relative).read_text() == text, (
                f"workflows/{relative} is out of date: run python -m beyond_monologue.comfyui.example_workflows")


def test_the_server_lists_the_ui_graphs_as_the_packs_templates(client):
    listed = client.get_json("/workflow_templates")
    assert sorted(listed[PACK_DIR_NAME]) == sorted(NAMES)  # workflows/api/ is not a template folder
    for name in NAMES:
        served = client.get_json(f"/api/workflow_templates/{PACK_DIR_NAME}/{name}.json")
        assert served == load(name)[0]
        # the template browser's thumbnail, next to the graph (listing_pictures.py)
        import urllib.request

        url = f"{client.base_url}/api/workflow_templates/{PACK_DIR_NAME}/{name}.jpg"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.read() == (WORKFLOWS_DIR / f"{name}.jpg").read_bytes(), url


def test_dyadic_conversation_renders_the_real_conversation(client, inputs, tmp_path):
    prompt = demo.dyadic_prompt(inputs, demo.SMOKE_SETTINGS, prefix="bm_test/dyadic")
    info = render(client, prompt, tmp_path)
    settings = demo.SMOKE_SETTINGS
    assert_lasts_the_conversation(info, settings["fps"], (2 * settings["width"], settings["height"]))  # side by side


def test_demo_entry_renders_on_the_session_server(comfy_server, served, tmp_path, capsys):
    code = demo.main(["--server", comfy_server.url, "--comfyui", str(comfy_server.base_dir), "--out", str(tmp_path),
                      "--no-hash"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SMOKE WEIGHTS" in out and "untrained noise" in out and "not been published yet" in out
    for filename in ("wan2.2_ti2v_5B_fp16.safetensors", "wan2.2_vae.safetensors", "umt5_xxl_fp8_e4m3fn_scaled",
                     "huggingface.co/Kijai/wav2vec2_safetensors"):
        assert filename in out  # the files to download, with folders and URLs
    video = tmp_path / "dyadic_conversation.mp4"
    assert f"wrote {video}" in out
    info = probe_video(video)
    assert_lasts_the_conversation(info, demo.SMOKE_SETTINGS["fps"], (2 * demo.SMOKE_SETTINGS["width"], 32))
    assert info.summary() in out


def test_full_duplex_avatar_renders_two_real_streams(client, inputs, tmp_path):
    _, api, mapping = load("full_duplex_avatar")
    values = {"talk": inputs["speaker_1"], "listen": inputs["speaker_2"], "portrait": inputs["portrait_a"], **SMALL}
    info = render(client, set_inputs(api, mapping, values), tmp_path)
    assert_lasts_the_conversation(info, SMALL["fps"], (32, 32))


def clip_vision_fed_to_every_sampler(api: dict) -> None:
    """Every BM Sampler gets CLIP Vision Encode (crop none) of its own portrait from the clip_vision_h loader,
    and no sampler opts out of CLIP vision."""
    samplers = [node for node in api.values() if node["class_type"] == "BMSampler"]
    assert samplers
    for sampler in samplers:
        assert not sampler["inputs"].get("allow_missing_clip_vision", False)
        vision = api[sampler["inputs"]["clip_vision_output"][0]]
        assert vision["class_type"] == "CLIPVisionEncode" and vision["inputs"]["crop"] == "none"
        assert vision["inputs"]["image"] == sampler["inputs"]["reference"]
        loader = api[vision["inputs"]["clip_vision"][0]]
        assert loader["class_type"] == "CLIPVisionLoader" and loader["inputs"]["clip_name"] == "clip_vision_h.safetensors"


def test_infinitetalk_avatar_renders_real_speech(client, inputs, tmp_path):
    _, api, mapping = load("infinitetalk_talking_avatar")
    clip_vision_fed_to_every_sampler(api)
    values = {"speech": inputs["speaker_2"], "portrait": inputs["portrait_b"], **SMALL}
    info = render(client, set_inputs(api, mapping, values), tmp_path)  # the smoke clip_vision_h, no opt-out
    assert_lasts_the_conversation(info, SMALL["fps"], (32, 32))


def test_infinitetalk_lightx2v_puts_the_lora_between_model_and_adapter():
    # No render: the lightx2v LoRA has no smoke stand-in (its key list is not verified, docs/WEIGHTS.md).
    _, api, _ = load("infinitetalk_lightx2v")
    clip_vision_fed_to_every_sampler(api)
    adapter = next(node for node in api.values() if node["class_type"] == "BMApplyDuplexAdapter")
    lora = api[adapter["inputs"]["model"][0]]
    assert lora["class_type"] == "LoraLoaderModelOnly" and lora["inputs"]["strength_model"] == 1.0
    assert lora["inputs"]["lora_name"] == "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors"
    assert api[lora["inputs"]["model"][0]]["class_type"] == "UNETLoader"
    sampler = next(node["inputs"] for node in api.values() if node["class_type"] == "BMSampler")
    assert (sampler["steps"], sampler["shift"], sampler["cfg_text"], sampler["cfg_talk"]) == (6, 2.0, 1.0, 2.0)


def test_dyadic_infinitetalk_renders_the_real_conversation(client, inputs, tmp_path):
    _, api, mapping = load("dyadic_infinitetalk")
    clip_vision_fed_to_every_sampler(api)
    split = next(key for key, node in api.items() if node["class_type"] == "BMSplitConversation")
    a, b = sorted((node["inputs"] for node in api.values() if node["class_type"] == "BMDualStreamEncode"),
                  key=lambda encode: encode["talk"][1])
    assert a["talk"] == [split, 0] and b["talk"] == [split, 1]  # each avatar talks with its own speaker's stream
    values = {"conversation": inputs["conversation"], "portrait_a": inputs["portrait_a"],
              "portrait_b": inputs["portrait_b"], **demo.SMOKE_SETTINGS}
    info = render(client, set_inputs(api, mapping, values), tmp_path)
    settings = demo.SMOKE_SETTINGS
    assert_lasts_the_conversation(info, settings["fps"], (2 * settings["width"], settings["height"]))  # side by side


def test_two_people_one_frame_renders_the_real_conversation(client, inputs, tmp_path):
    _, api, mapping = load("two_people_one_frame")
    clip_vision_fed_to_every_sampler(api)
    patch = next(node for node in api.values() if node["class_type"] == "BMApplyDuplexAdapter")
    assert patch["inputs"]["adapter"] == "wan2.1_infiniteTalk_multi_fp16.safetensors"
    # 64x32 keeps the 832x480 picture's aspect closely enough (a 32x32 crop would cut a person and is refused)
    values = {"conversation": inputs["conversation"], "picture": inputs["two_people"], "fps": 5.0, "width": 64,
              "height": 32, "steps": 2}
    prompt = set_inputs(api, mapping, values)
    sampler = next(node["inputs"] for node in prompt.values() if node["class_type"] == "BMSampler")
    assert sampler["speaker_regions"] == "left_right"
    info = render(client, prompt, tmp_path)
    assert_lasts_the_conversation(info, 5.0, (64, 32))


def test_train_duplex_adapter_trains_saves_and_the_file_renders_the_full_duplex_example(client, comfy_server, inputs,
                                                                                         tmp_path):
    _, api, mapping = load("train_duplex_adapter")
    values = {"video": inputs["training_clip"], "reference": inputs["portrait_a"], "steps": 2, "window_latents": 4,
              "training_dtype": "float32", "checkpointing": False, "adapter_prefix": "bm_test/trained"}
    result = client.run(set_inputs(api, mapping, values), timeout_s=RENDER_TIMEOUT_S)
    assert result.status == "success", result.error_message()
    saved = sorted((comfy_server.base_dir / "models" / "beyond_monologue" / "bm_test").glob("trained_*.safetensors"))
    assert saved, "BM Save Duplex Adapter wrote no file"
    from safetensors import safe_open

    with safe_open(str(saved[-1]), framework="pt") as f:
        meta = f.metadata()
    assert meta["bm_trained"] == "true" and meta["bm_train_steps"] == "2" and meta["bm_train_samples"] == "1"
    images = [image for output in result.outputs.values() for image in output.get("images", [])]
    assert images, "Plot Loss Graph showed no image"

    _, duplex_api, duplex_map = load("full_duplex_avatar")
    prompt = set_inputs(duplex_api, duplex_map, {"talk": inputs["speaker_1"], "listen": inputs["speaker_2"],
                                                 "portrait": inputs["portrait_a"], **SMALL})
    adapter_node = next(node for node in prompt.values() if node["class_type"] == "BMApplyDuplexAdapter")
    adapter_node["inputs"]["adapter"] = f"bm_test/{saved[-1].name}"
    info = render(client, prompt, tmp_path)
    assert_lasts_the_conversation(info, SMALL["fps"], (32, 32))


def test_torchrun_continues_the_trained_adapter_and_its_export_renders_the_full_duplex_example(client, comfy_server,
                                                                                                inputs, tmp_path):
    """Issue 13: ``python -m beyond_monologue.train run`` (torchrun, 1 process) on this server's files: the
    training workflow's saved set and adapter in, an exported adapter out that the full-duplex graph renders."""
    import os
    import shutil
    import subprocess
    import sys

    from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT

    models = comfy_server.base_dir / "models"
    sets = sorted((models / "bm_training_sets").rglob("*.safetensors"))
    trained = sorted((models / "beyond_monologue" / "bm_test").glob("trained_*.safetensors"))
    assert sets and trained, "the training workflow test (just before) saved no set or adapter"
    unet = next(n["inputs"]["unet_name"] for n in load("train_duplex_adapter")[1].values() if n["class_type"] == "UNETLoader")
    # the run gets its own ComfyUI base directory (its output/ and user/ stay apart from the live server's),
    # holding the server's model, set and adapter; its export is then put where the server lists adapters
    run_base = tmp_path / "train_base"
    for folder, path in (("diffusion_models", models / "diffusion_models" / unet), ("bm_training_sets", sets[-1]),
                         ("beyond_monologue/bm_test", trained[-1])):
        (run_base / "models" / folder).mkdir(parents=True, exist_ok=True)
        (run_base / "models" / folder / path.name).symlink_to(path.resolve())
    config = tmp_path / "run.toml"
    config.write_text(f'model = "{unet}"\ntraining_sets = ["{sets[-1].name}"]\n'
                      f'output = "bm_test_torchrun"\nglobal_batch = 1\ncheckpoint_every = 1\ntraining_dtype = "float32"\n'
                      f'checkpointing = false\ncontinue_from = "bm_test/{trained[-1].name}"\n'
                      '[recipe]\nsteps = 1\nlr_new = 1e-4\nwindow_latents = 4\n')
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                           "-m", "beyond_monologue.train", "run", "--config", str(config),
                           "--base-directory", str(run_base), "--cpu"],
                          cwd=PACK_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=RENDER_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    shutil.copy(run_base / "models" / "beyond_monologue" / "bm_test_torchrun.safetensors", models / "beyond_monologue")
    _, duplex_api, duplex_map = load("full_duplex_avatar")
    prompt = set_inputs(duplex_api, duplex_map, {"talk": inputs["speaker_1"], "listen": inputs["speaker_2"],
                                                 "portrait": inputs["portrait_a"], **SMALL})
    adapter_node = next(node for node in prompt.values() if node["class_type"] == "BMApplyDuplexAdapter")
    adapter_node["inputs"]["adapter"] = "bm_test_torchrun.safetensors"
    info = render(client, prompt, tmp_path)
    assert_lasts_the_conversation(info, SMALL["fps"], (32, 32))
