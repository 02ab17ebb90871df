"""The pack's example workflows, written from code: ``workflows/*.json`` (UI format, shown in ComfyUI's
template browser) and their API-format twins ``workflows/api/*.json`` with batch maps ``*.map.json``.

1. ``dyadic_conversation``: one conversation recording -> BM Split Conversation -> two avatars (each
   talks with its own speech and listens to the other's) -> BM Sampler x2 -> BM Decode Video x2 ->
   BM Dyadic Compose -> Save Video, on Wan2.2-TI2V-5B (set ``beyond-monologue-wan22-5b``).
2. ``full_duplex_avatar``: one avatar from two audio files (its own speech, the other person's).
3. ``infinitetalk_talking_avatar``: a talking avatar on the public InfiniteTalk weights
   (Wan2.1-I2V-14B-480P with CLIP ViT-H, set ``infinitetalk-wan21-14b-480p``), official settings;
   ``infinitetalk_lightx2v``: the same with the lightx2v distillation LoRA (the fast recipe).
5. ``dyadic_infinitetalk``: the dyadic conversation of 1. on the public InfiniteTalk weights.
6. ``two_people_one_frame``: two people in one picture, each speaking their stream of one recording
   (InfiniteTalk multi patch, BM Sampler ``speaker_regions``).
4. ``train_duplex_adapter``: a conversation video -> training samples -> BM Train Duplex Adapter ->
   BM Save Duplex Adapter and Plot Loss Graph (Wan2.2-TI2V-5B).

Every graph uses ComfyUI's native loaders and text encoding, and carries a note listing the model
files it needs (name, folder, URL, from the weights manifest). Regenerate the files after changing
a graph or the manifest: ``python -m beyond_monologue.comfyui.example_workflows`` (starts a ComfyUI with
the pack to read ``/object_info``, or ``--server URL``); the server tests check they are current.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..weights import load_manifest
from ..weights.messages import CLI
from .comfy_launcher import PACK_DIR_NAME, PACK_ROOT
from .workflow_builder import UIGraph, UINode
from .workflow_format import ui_to_api

WORKFLOWS_DIR = PACK_ROOT / "workflows"
PROMPT = ("A person in a video call looks into the camera and has a natural conversation: they speak clearly when "
          "it is their turn and listen attentively while the other person talks, with small nods and facial "
          "reactions. Soft studio light, plain background, static camera.")
PORTRAIT_A, PORTRAIT_B = "grace_hopper.jpg", "astronaut.png"  # placed in ComfyUI's input folder by the demo
CONVERSATION = "sample.wav"
SPEAKER_STREAMS = ("sample_speaker_1.wav", "sample_speaker_2.wav")
TRAINING_CLIP = "training_clip.mp4"  # a stereo conversation clip the demo makes (demo.training_clip)
TWO_PEOPLE = "two_people.png"  # portraits A and B side by side, 832x480, made by the demo (demo.two_people_picture)
COLOURS = {"models": "#3f789e", "prompt": "#3f789e", "audio": "#8A8", "settings": "#b58b2a", "a": "#a1309b",
           "b": "#88A", "output": "#444"}


@dataclass(frozen=True)
class ExampleWorkflow:
    """One example: the UI graph, its API twin and the batch map (column -> ``node_id.input``)."""

    name: str
    ui: dict
    api: dict
    mapping: dict


def model_entry(file_id: str) -> dict:
    """``properties.models`` entry of a manifest file (the frontend's missing-models list), or {} if unpublished."""
    file = load_manifest().files[file_id]
    if not file.published:
        return {}
    entry = {"name": file.filename, "url": file.url, "directory": file.folder}
    if file.sha256:
        entry.update(hash=file.sha256, hash_type="SHA256")
    return entry


def files_note(title: str, how_to: str, set_name: str, file_ids: list[str]) -> str:
    """The Markdown of a workflow's note: what it does, then every model file with folder and URL (from the manifest)."""
    manifest = load_manifest()
    model_set = manifest.get_set(set_name)
    lines = [f"## {title}", "", how_to, "", f"### Model files (set `{set_name}`)", ""]
    for file_id in file_ids:
        file = manifest.files[file_id]
        where = f"[download]({file.url})" if file.published else "**not published yet**"
        lines.append(f"- `{file.filename}` in `ComfyUI/models/{file.folder}/`: {where} ({file.size_text()})")
    required = {file.id for file in model_set.files(required_only=True)}
    optional_flag = "" if set(file_ids) <= required else " --with-optional"  # only when the graph needs one
    lines += ["", f"Check them: `{CLI} verify --set {set_name}`; fetch the published ones: "
              f"`{CLI} download --set {set_name}{optional_flag}` (run in the pack's folder)."]
    if model_set.status != "ready":
        lines += ["", "**The Beyond Monologue adapter has not been published yet.** Until it is, you can try the "
                  f"graph without the real weights: `{CLI} smoke --out <ComfyUI folder> --set {set_name}` writes "
                  "untrained stand-ins for the missing files (it never replaces a real model file), and "
                  "`bash scripts/demo.sh` does that and renders the example. Stand-ins render noise: the pipeline "
                  "works end to end, the pictures do not."]
    return "\n".join(lines)


class _Builder:
    """Shared pieces of the three graphs (loaders, prompt, a video-settings primitive)."""

    def __init__(self, object_info: dict, name: str):
        self.graph = UIGraph(object_info, (PACK_DIR_NAME, __version__), name)
        self.files = load_manifest().files

    def loader(self, class_type: str, pos, file_id: str, widget: str, title: str | None = None, **widgets) -> UINode:
        entry = model_entry(file_id)
        return self.graph.node(class_type, pos, {widget: self.files[file_id].filename, **widgets}, title=title,
                               models=[entry] if entry else None)

    def text(self, pos, clip: UINode) -> tuple[UINode, UINode]:
        positive = self.graph.node("CLIPTextEncode", pos, {"text": PROMPT}, title="Prompt", size=(420, 200),
                                   colour={"color": "#232", "bgcolor": "#353"})
        self.graph.link(clip, 0, positive, "clip")
        negative = self.graph.node("ConditioningZeroOut", (pos[0], pos[1] + 250), title="Negative (empty prompt)")
        self.graph.link(positive, 0, negative, "conditioning")
        return positive, negative

    def primitive(self, class_type: str, pos, value, title: str) -> UINode:
        return self.graph.node(class_type, pos, {"value": value}, title=title, size=(240, 84))

    def conversation_split(self) -> tuple[UINode, UINode]:
        """Load Audio of the conversation -> BM Split Conversation (diarize, talk = speaker_1), grouped."""
        g = self.graph
        conversation = g.node("LoadAudio", (900, 470), {"audio": CONVERSATION}, title="Conversation", size=(420, 150))
        split = g.node("BMSplitConversation", (900, 660), {"mode": "diarize", "avatar_speaker": "speaker_1"},
                       title="Split: talk = speaker_1 (avatar A)", size=(420, 380))
        g.link(conversation, 0, split, "conversation")
        g.group("Conversation", [conversation, split], COLOURS["audio"])
        return conversation, split

    def dyadic_settings(self, width: int, height: int) -> tuple[UINode, UINode, UINode]:
        """The fps, width and height primitives (each avatar's size) of a two-avatar graph, grouped."""
        fps = self.primitive("PrimitiveFloat", (1400, 40), 25.0, "fps")
        width_node = self.primitive("PrimitiveInt", (1400, 160), width, "width (each avatar)")
        height_node = self.primitive("PrimitiveInt", (1400, 280), height, "height (each avatar)")
        self.graph.group("Video settings", [fps, width_node, height_node], COLOURS["settings"])
        return fps, width_node, height_node

    def avatar(self, x: float, y: float, models: dict, portrait: str, seed: int, size: tuple, label: str,
               fps: UINode, talk: tuple, listen: tuple, decode_audio: tuple | None = None,
               sampler: dict | None = None) -> dict[str, UINode]:
        """Portrait + Dual Stream Encode + Sampler + Decode Video of one avatar; returns its nodes.

        ``size``: ``(width, height)`` sampler widgets, or ``{"width": node, "height": node}`` primitives
        linked to them; ``talk``/``listen``/``decode_audio``: ``(node, output)`` sources. With a
        ``models["clip_vision"]`` loader (Wan2.1-I2V), a CLIP Vision Encode of the portrait (crop none,
        as the official InfiniteTalk generator encodes the whole reference) feeds the sampler, and the portrait
        is BM Decode Video's ``color_reference`` (the official colour correction, default strength 1).
        """
        g = self.graph
        image = g.node("LoadImage", (x, y), {"image": portrait}, title=f"Portrait {label}", size=(320, 380))
        encode = g.node("BMDualStreamEncode", (x, y + 420), {"fps": 25.0}, title=f"Audio {label} (talk / listen)")
        g.link(*talk, encode, "talk")
        g.link(*listen, encode, "listen")
        g.link(models["audio_encoder"], 0, encode, "audio_encoder")
        g.link(fps, 0, encode, "fps")
        widgets = {"seed": seed, **(sampler or {})}
        if isinstance(size, tuple):
            widgets.update(width=size[0], height=size[1])
        sample = g.node("BMSampler", (x + 360, y), widgets, title=f"Sampler {label}")
        for source, name in ((models["model"], "model"), (models["positive"], "positive"),
                             (models["negative"], "negative"), (encode, "duplex_audio"), (models["vae"], "vae"),
                             (image, "reference")):
            g.link(source, 0, sample, name)
        if not isinstance(size, tuple):
            g.link(size["width"], 0, sample, "width")
            g.link(size["height"], 0, sample, "height")
        nodes = {"image": image, "encode": encode, "sampler": sample}
        if "clip_vision" in models:
            vision = g.node("CLIPVisionEncode", (x, y + 640), {"crop": "none"}, title=f"CLIP vision {label}".strip())
            g.link(models["clip_vision"], 0, vision, "clip_vision")
            g.link(image, 0, vision, "image")
            g.link(vision, 0, sample, "clip_vision_output")
            nodes["clip_vision"] = vision
        decode = g.node("BMDecodeVideo", (x + 720, y), {"fps": 25.0}, title=f"Decode {label}")
        g.link(sample, 0, decode, "latent")
        g.link(models["vae"], 0, decode, "vae")
        g.link(fps, 0, decode, "fps")
        if decode_audio:
            g.link(*decode_audio, decode, "audio")
        if "clip_vision" in models:  # InfiniteTalk: the official colour correction towards the portrait (strength 1)
            g.link(image, 0, decode, "color_reference")
        return {**nodes, "decode": decode}

    def models_5b(self, x: float, y: float) -> dict[str, UINode]:
        g = self.graph
        unet = self.loader("UNETLoader", (x, y), "wan22_ti2v_5b_fp16", "unet_name", weight_dtype="default")
        adapter = self.loader("BMApplyDuplexAdapter", (x, y + 150), "beyond_monologue_adapter_wan22_5b", "adapter")
        g.link(unet, 0, adapter, "model")
        vae = self.loader("VAELoader", (x, y + 440), "wan22_vae", "vae_name")
        clip = self.loader("CLIPLoader", (x, y + 560), "umt5_xxl_fp8_scaled", "clip_name", type="wan")
        encoder = self.loader("AudioEncoderLoader", (x, y + 730), "wav2vec2_chinese_base_fp16", "audio_encoder_name")
        g.group("Models: Wan2.2-TI2V-5B", [unet, adapter, vae, clip, encoder], COLOURS["models"])
        return {"unet": unet, "model": adapter, "vae": vae, "clip": clip, "audio_encoder": encoder}

    def models_wan21(self, x: float, y: float, patch: str = "infinitetalk_single_fp16",
                     lora: bool = False) -> dict[str, UINode]:
        """Wan2.1-I2V-14B-480P with an InfiniteTalk patch (``patch``: manifest id), the optional lightx2v
        LoRA (Load LoRA, model only, strength 1, between the model loader and the adapter, as in ComfyUI's
        own InfiniteTalk template), VAE, umT5, wav2vec2 and the CLIP ViT-H vision loader."""
        g = self.graph
        unet = self.loader("UNETLoader", (x, y), "wan21_i2v_14b_480p_fp8_scaled_kj", "unet_name",
                           weight_dtype="default")
        nodes, model, dy = [unet], unet, 150
        if lora:
            model = self.loader("LoraLoaderModelOnly", (x, y + dy), "lightx2v_i2v_14b_480p_lora", "lora_name",
                                title="lightx2v distillation LoRA", strength_model=1.0)
            g.link(unet, 0, model, "model")
            nodes.append(model)
            dy += 140
        adapter = self.loader("BMApplyDuplexAdapter", (x, y + dy), patch, "adapter")
        g.link(model, 0, adapter, "model")
        vae = self.loader("VAELoader", (x, y + dy + 290), "wan21_vae_bf16_kijai", "vae_name")
        clip = self.loader("CLIPLoader", (x, y + dy + 410), "umt5_xxl_fp8_scaled", "clip_name", type="wan")
        encoder = self.loader("AudioEncoderLoader", (x, y + dy + 580), "wav2vec2_chinese_base_fp16",
                              "audio_encoder_name")
        vision = self.loader("CLIPVisionLoader", (x, y + dy + 700), "clip_vision_h", "clip_name")
        nodes += [adapter, vae, clip, encoder, vision]
        g.group("Models: Wan2.1-I2V-14B-480P + InfiniteTalk", nodes, COLOURS["models"])
        return {"unet": unet, "model": adapter, "vae": vae, "clip": clip, "audio_encoder": encoder,
                "clip_vision": vision}


def _finish(builder: _Builder, name: str, targets: dict[str, tuple[UINode, str]], view) -> ExampleWorkflow:
    ui = builder.graph.to_json(view)
    api = ui_to_api(ui, builder.graph.object_info)
    mapping = {column: f"{node.id}.{input_name}" for column, (node, input_name) in targets.items()}
    return ExampleWorkflow(name, ui, api, mapping)


FILES_5B = ["wan22_ti2v_5b_fp16", "beyond_monologue_adapter_wan22_5b", "wan22_vae", "umt5_xxl_fp8_scaled",
            "wav2vec2_chinese_base_fp16"]


def dyadic_conversation(object_info: dict) -> ExampleWorkflow:
    """Workflow 1: a dyadic conversation video from one recording and two portraits (Wan2.2-TI2V-5B)."""
    b = _Builder(object_info, "dyadic_conversation")
    g = b.graph
    models = b.models_5b(520, 40)
    models["positive"], models["negative"] = b.text((900, 40), models["clip"])
    g.group("Prompt (both)", [models["positive"], models["negative"]], COLOURS["prompt"])
    conversation, split = b.conversation_split()
    fps, width, height = b.dyadic_settings(704, 1280)
    size = {"width": width, "height": height}
    a = b.avatar(1800, 40, models, PORTRAIT_A, 1, size, "A", fps, talk=(split, "talk"), listen=(split, "listen"))
    g.group("Avatar A: talks with speaker_1, listens to speaker_2", list(a.values()), COLOURS["a"])
    bb = b.avatar(1800, 900, models, PORTRAIT_B, 2, size, "B", fps, talk=(split, "listen"), listen=(split, "talk"))
    g.group("Avatar B: talks with speaker_2, listens to speaker_1", list(bb.values()), COLOURS["b"])
    compose = g.node("BMDyadicCompose", (2900, 300), {"fps": 25.0}, title="Dyadic Compose")
    g.link(a["decode"], "frames", compose, "image_a")
    g.link(bb["decode"], "frames", compose, "image_b")
    g.link(conversation, 0, compose, "conversation")
    g.link(fps, 0, compose, "fps")
    save = g.node("SaveVideo", (3260, 300), {"filename_prefix": "beyond_monologue/dyadic"}, size=(480, 520))
    g.link(compose, "video", save, "video")
    g.group("Output", [compose, save], COLOURS["output"])
    g.note(files_note(
        "Beyond Monologue: dyadic conversation",
        "One conversation recording and two portraits make a video of two avatars side by side: each speaks its "
        "own lines and listens while the other talks. Load the conversation (mono: the speakers are found "
        "automatically; stereo: set the split mode to stereo) and the two portraits, then Queue. The video lasts "
        "as long as the conversation; set fps and size once in Video settings. Avatar B gets the split streams "
        "swapped. For a different prompt per avatar, add a second CLIP Text Encode.",
        "beyond-monologue-wan22-5b", FILES_5B), (0, 40), (460, 860), "Read me: dyadic conversation")
    targets = {"conversation": (conversation, "audio"), "portrait_a": (a["image"], "image"),
               "portrait_b": (bb["image"], "image"), "prompt": (models["positive"], "text"),
               "split_mode": (split, "mode"), "speaker_a": (split, "avatar_speaker"), "turns": (split, "turns"),
               "fps": (fps, "value"), "width": (width, "value"), "height": (height, "value"),
               "seed_a": (a["sampler"], "seed"), "seed_b": (bb["sampler"], "seed"), "steps_a": (a["sampler"], "steps"),
               "steps_b": (bb["sampler"], "steps"), "layout": (compose, "layout")}
    return _finish(b, "dyadic_conversation", targets, (0.35, 200.0, 300.0))


def full_duplex_avatar(object_info: dict) -> ExampleWorkflow:
    """Workflow 2: one avatar that talks and listens, from two audio files (its own speech, the other's)."""
    b = _Builder(object_info, "full_duplex_avatar")
    g = b.graph
    models = b.models_5b(520, 40)
    models["positive"], models["negative"] = b.text((900, 40), models["clip"])
    g.group("Prompt", [models["positive"], models["negative"]], COLOURS["prompt"])
    talk = g.node("LoadAudio", (900, 470), {"audio": SPEAKER_STREAMS[0]}, title="Talk: the avatar's own speech",
                  size=(420, 150))
    listen = g.node("LoadAudio", (900, 660), {"audio": SPEAKER_STREAMS[1]},
                    title="Listen: the other person's speech", size=(420, 150))
    mix = g.node("AudioMerge", (900, 850), {"merge_method": "add"}, title="Soundtrack: talk + listen")
    g.link(talk, 0, mix, "audio1")
    g.link(listen, 0, mix, "audio2")
    g.group("Audio", [talk, listen, mix], COLOURS["audio"])
    fps = b.primitive("PrimitiveFloat", (1400, 40), 25.0, "fps")
    g.group("Video settings", [fps], COLOURS["settings"])
    avatar = b.avatar(1400, 240, models, PORTRAIT_A, 1, (704, 1280), "", fps, talk=(talk, 0), listen=(listen, 0),
                      decode_audio=(mix, 0))
    g.group("Avatar", list(avatar.values()), COLOURS["a"])
    save = g.node("SaveVideo", (2500, 240), {"filename_prefix": "beyond_monologue/full_duplex"}, size=(400, 620))
    g.link(avatar["decode"], "video", save, "video")
    g.note(files_note(
        "Beyond Monologue: one full-duplex avatar",
        "The avatar speaks the 'talk' file and reacts while the 'listen' file plays: load both (any sample rate; "
        "they may differ in length) and a portrait, then Queue. The soundtrack is both files mixed (Audio Merge "
        "keeps the length of 'talk'). To split one recording instead, use BM Split Conversation (see the dyadic "
        "example).", "beyond-monologue-wan22-5b", FILES_5B), (0, 40), (460, 860), "Read me: full-duplex avatar")
    sampler = avatar["sampler"]
    targets = {"talk": (talk, "audio"), "listen": (listen, "audio"), "portrait": (avatar["image"], "image"),
               "prompt": (models["positive"], "text"), "fps": (fps, "value"), "width": (sampler, "width"),
               "height": (sampler, "height"), "seed": (sampler, "seed"), "steps": (sampler, "steps")}
    return _finish(b, "full_duplex_avatar", targets, (0.45, 200.0, 250.0))


# InfiniteTalk settings. Official (MeiGen-AI/InfiniteTalk generate_infinitetalk.py defaults and README, 480p,
# no LoRA): 40 steps, shift 7, text CFG 5, audio CFG 4, the official linspace(1000, 1, N) schedule with Euler.
INFINITETALK_SETTINGS = {"steps": 40, "sampler_name": "euler", "scheduler": "infinitetalk_linear", "shift": 7.0,
                         "cfg_text": 5.0, "cfg_talk": 4.0, "cfg_listen": 1.0}
# With the lightx2v distillation LoRA: text CFG 1 and audio CFG 2 (two passes) and shift 2 from the official README
# (its LoRA command and its sample_*_guide_scale notes, MeiGen-AI/InfiniteTalk 0107cd9); 6 steps from ComfyUI's own
# template video_wan2_1_infinitetalk (Comfy-Org/workflow_templates 2a0b959)
# (BasicScheduler normal, 6 steps, euler, CFGGuider 1, LoRA strength 1, no ModelSamplingSD3 node, so Wan's default
# shift 8), which lies inside the README's "4~8 steps" (it names 4 for lightx2v, 8 for FusionX).
LIGHTX2V_SETTINGS = {**INFINITETALK_SETTINGS, "steps": 6, "shift": 2.0, "cfg_text": 1.0, "cfg_talk": 2.0}
FILES_INFINITETALK = ["wan21_i2v_14b_480p_fp8_scaled_kj", "infinitetalk_single_fp16", "wan21_vae_bf16_kijai",
                      "umt5_xxl_fp8_scaled", "wav2vec2_chinese_base_fp16", "clip_vision_h"]
INFINITETALK_HOW = (
    "Runs on the public files of ComfyUI's own InfiniteTalk template plus CLIP ViT-H: the InfiniteTalk model patch "
    "is the talking branch (frame-local audio attention), the reference portrait is frame 0 of every window and its "
    "CLIP vision features (CLIP Vision Encode, crop none) go to every model call, as in the official generator; "
    "BM Decode Video matches the colours to the portrait (the official colour correction, strength 1). "
    "InfiniteTalk has no listening branch: while the talk stream is silent the avatar shows InfiniteTalk's "
    "silent-audio behaviour (it listens), and cfg_listen stays 1 (one model call fewer per step).")


def _infinitetalk_avatar(object_info: dict, name: str, lightx2v: bool) -> ExampleWorkflow:
    """A talking avatar with the public InfiniteTalk weights; ``lightx2v``: the fast recipe with the LoRA."""
    b = _Builder(object_info, name)
    g = b.graph
    models = b.models_wan21(520, 40, lora=lightx2v)
    models["positive"], models["negative"] = b.text((900, 40), models["clip"])
    g.group("Prompt", [models["positive"], models["negative"]], COLOURS["prompt"])
    speech = g.node("LoadAudio", (900, 470), {"audio": SPEAKER_STREAMS[0]}, title="Speech", size=(420, 150))
    silence = g.node("EmptyAudio", (900, 660), {"duration": 0.1, "sample_rate": 16000, "channels": 1},
                     title="Listen: silence (InfiniteTalk only talks)")
    g.group("Audio", [speech, silence], COLOURS["audio"])
    fps = b.primitive("PrimitiveFloat", (1400, 40), 25.0, "fps")
    g.group("Video settings", [fps], COLOURS["settings"])
    settings = LIGHTX2V_SETTINGS if lightx2v else INFINITETALK_SETTINGS
    avatar = b.avatar(1400, 240, models, PORTRAIT_A, 1, (832, 480), "", fps, talk=(speech, 0), listen=(silence, 0),
                      decode_audio=(speech, 0), sampler=settings)
    g.group("Avatar", list(avatar.values()), COLOURS["a"])
    save = g.node("SaveVideo", (2500, 240), {"filename_prefix": f"beyond_monologue/{name}"}, size=(480, 400))
    g.link(avatar["decode"], "video", save, "video")
    if lightx2v:
        title = "Talking avatar with InfiniteTalk, fast (lightx2v LoRA)"
        recipe = ("The fast recipe: the lightx2v distillation LoRA (Load LoRA, model only, strength 1) between the "
                  "model loader and BM Apply Duplex Adapter, 6 steps (ComfyUI's own InfiniteTalk template), shift 2, "
                  "text CFG 1 and audio CFG 2 (the official README's LoRA settings: at text CFG 1 the sampler runs "
                  "the official two passes). ComfyUI's template runs CFG 1 (one pass, no audio guidance) at Wan's "
                  "default shift 8; set cfg_talk 1 and shift 8 for exactly that.")
        files = [*FILES_INFINITETALK, "lightx2v_i2v_14b_480p_lora"]
    else:
        title = "Talking avatar with InfiniteTalk (public weights)"
        recipe = ("Settings of the official generator without a LoRA: 40 steps, Euler on the official schedule "
                  "(infinitetalk_linear), shift 7 at 480p, text CFG 5, audio CFG 4. For the fast recipe (6 steps "
                  "with the lightx2v LoRA) open infinitetalk_lightx2v.")
        files = FILES_INFINITETALK
    g.note(files_note(title, f"{INFINITETALK_HOW} Load speech and a portrait, then Queue; 832x480 at 25 fps. "
                      f"{recipe}", "infinitetalk-wan21-14b-480p", files), (0, 40), (460, 860), "Read me: InfiniteTalk")
    sampler_node = avatar["sampler"]
    targets = {"speech": (speech, "audio"), "portrait": (avatar["image"], "image"),
               "prompt": (models["positive"], "text"), "fps": (fps, "value"), "width": (sampler_node, "width"),
               "height": (sampler_node, "height"), "seed": (sampler_node, "seed"), "steps": (sampler_node, "steps")}
    return _finish(b, name, targets, (0.45, 200.0, 250.0))


def infinitetalk_talking_avatar(object_info: dict) -> ExampleWorkflow:
    """Workflow 3: a talking avatar with the public InfiniteTalk weights on Wan2.1-I2V-14B-480P (official settings)."""
    return _infinitetalk_avatar(object_info, "infinitetalk_talking_avatar", lightx2v=False)


def infinitetalk_lightx2v(object_info: dict) -> ExampleWorkflow:
    """Workflow 3b: the same avatar with the lightx2v distillation LoRA (6 steps, text CFG 1, audio CFG 2, shift 2)."""
    return _infinitetalk_avatar(object_info, "infinitetalk_lightx2v", lightx2v=True)


def dyadic_infinitetalk(object_info: dict) -> ExampleWorkflow:
    """Workflow 5: a dyadic conversation video on the public InfiniteTalk weights (Wan2.1-I2V-14B-480P).

    One recording -> BM Split Conversation -> two avatars, each talking with its own speaker's stream (the
    other person's stream goes to listen, which InfiniteTalk ignores: while its own stream is silent the avatar
    shows InfiniteTalk's silent-audio behaviour) -> BM Dyadic Compose -> Save Video.
    """
    b = _Builder(object_info, "dyadic_infinitetalk")
    g = b.graph
    models = b.models_wan21(520, 40)
    models["positive"], models["negative"] = b.text((900, 40), models["clip"])
    g.group("Prompt (both)", [models["positive"], models["negative"]], COLOURS["prompt"])
    conversation, split = b.conversation_split()
    fps, width, height = b.dyadic_settings(480, 832)
    size = {"width": width, "height": height}
    a = b.avatar(1800, 40, models, PORTRAIT_A, 1, size, "A", fps, talk=(split, "talk"), listen=(split, "listen"),
                 sampler=INFINITETALK_SETTINGS)
    g.group("Avatar A: talks with speaker_1", list(a.values()), COLOURS["a"])
    bb = b.avatar(1800, 1000, models, PORTRAIT_B, 2, size, "B", fps, talk=(split, "listen"),
                  listen=(split, "talk"), sampler=INFINITETALK_SETTINGS)
    g.group("Avatar B: talks with speaker_2", list(bb.values()), COLOURS["b"])
    compose = g.node("BMDyadicCompose", (2900, 300), {"fps": 25.0}, title="Dyadic Compose")
    g.link(a["decode"], "frames", compose, "image_a")
    g.link(bb["decode"], "frames", compose, "image_b")
    g.link(conversation, 0, compose, "conversation")
    g.link(fps, 0, compose, "fps")
    save = g.node("SaveVideo", (3260, 300), {"filename_prefix": "beyond_monologue/dyadic_infinitetalk"},
                  size=(480, 520))
    g.link(compose, "video", save, "video")
    g.group("Output", [compose, save], COLOURS["output"])
    g.note(files_note(
        "Dyadic conversation with InfiniteTalk (public weights)",
        f"{INFINITETALK_HOW} One conversation recording and two portraits make a video of two avatars side by "
        "side: BM Split Conversation gives each avatar its own speaker's stream to talk with (the other stream goes "
        "to listen, which InfiniteTalk does not use). Load the conversation (mono: the speakers are found "
        "automatically; stereo: set the split mode to stereo) and the two portraits, then Queue. 480x832 per "
        "avatar (portrait orientation, the pack's choice for side by side) at 25 fps, the official settings "
        "without a LoRA; for the fast recipe add the lightx2v LoRA as in infinitetalk_lightx2v and use its "
        "settings on both samplers.",
        "infinitetalk-wan21-14b-480p", FILES_INFINITETALK), (0, 40), (460, 860), "Read me: dyadic InfiniteTalk")
    targets = {"conversation": (conversation, "audio"), "portrait_a": (a["image"], "image"),
               "portrait_b": (bb["image"], "image"), "prompt": (models["positive"], "text"),
               "split_mode": (split, "mode"), "speaker_a": (split, "avatar_speaker"), "turns": (split, "turns"),
               "fps": (fps, "value"), "width": (width, "value"), "height": (height, "value"),
               "seed_a": (a["sampler"], "seed"), "seed_b": (bb["sampler"], "seed"), "steps_a": (a["sampler"], "steps"),
               "steps_b": (bb["sampler"], "steps"), "layout": (compose, "layout")}
    return _finish(b, "dyadic_infinitetalk", targets, (0.35, 200.0, 300.0))


def two_people_one_frame(object_info: dict) -> ExampleWorkflow:
    """Workflow 6: two people in one picture talk with each other (InfiniteTalk multi patch, Wan2.1-I2V-14B-480P).

    One recording -> BM Split Conversation (talk = speaker 1, the person on the left; listen = speaker 2) -> BM
    Dual Stream Encode -> BM Sampler with ``speaker_regions`` left_right (the official L-RoPE binding and region
    routing; masks for other layouts) -> BM Decode Video with the whole conversation as soundtrack -> Save Video.
    """
    b = _Builder(object_info, "two_people_one_frame")
    g = b.graph
    models = b.models_wan21(520, 40, patch="infinitetalk_multi_fp16")
    models["positive"], models["negative"] = b.text((900, 40), models["clip"])
    g.group("Prompt", [models["positive"], models["negative"]], COLOURS["prompt"])
    conversation = g.node("LoadAudio", (900, 470), {"audio": CONVERSATION}, title="Conversation", size=(420, 150))
    split = g.node("BMSplitConversation", (900, 660), {"mode": "diarize", "avatar_speaker": "speaker_1"},
                   title="Split: talk = speaker_1 (left), listen = speaker_2 (right)", size=(420, 380))
    g.link(conversation, 0, split, "conversation")
    g.group("Conversation", [conversation, split], COLOURS["audio"])
    fps = b.primitive("PrimitiveFloat", (1400, 40), 25.0, "fps")
    g.group("Video settings", [fps], COLOURS["settings"])
    settings = {**INFINITETALK_SETTINGS, "speaker_regions": "left_right"}
    people = b.avatar(1400, 240, models, TWO_PEOPLE, 1, (832, 480), "(both people)", fps, talk=(split, "talk"),
                      listen=(split, "listen"), decode_audio=(conversation, 0), sampler=settings)
    g.group("Two people: speaker 1 on the left, speaker 2 on the right", list(people.values()), COLOURS["a"])
    save = g.node("SaveVideo", (2500, 240), {"filename_prefix": "beyond_monologue/two_people"}, size=(480, 400))
    g.link(people["decode"], "video", save, "video")
    g.note(files_note(
        "Two people in one frame with InfiniteTalk (public weights)",
        "One picture with two people and one conversation recording: each person speaks their own lines. Uses the "
        "two-speaker InfiniteTalk patch (wan2.1_infiniteTalk_multi) with the official speaker binding (L-RoPE) and "
        "region routing. BM Split Conversation gives speaker 1 (talk) to the person on the left and speaker 2 "
        "(listen) to the person on the right; if the order is wrong, set avatar_speaker to speaker_2. "
        "speaker_regions left_right uses the official default boxes (each half of the frame); for other layouts "
        "set it to masks and connect one mask per person (draw them in the Mask Editor of Load Image). The "
        "picture should have the video's aspect (832x480): a crop that would cut a person out is refused. The "
        "single-speaker patch has the same tensors as the multi one, so loading it here is not detected: use "
        "wan2.1_infiniteTalk_multi. The picture's CLIP vision features go to every model call, as in the official "
        "generator. Official settings without a LoRA (40 steps, shift 7, text CFG 5, audio CFG 4).",
        "infinitetalk-wan21-14b-480p", ["wan21_i2v_14b_480p_fp8_scaled_kj", "infinitetalk_multi_fp16",
                                        "wan21_vae_bf16_kijai", "umt5_xxl_fp8_scaled", "wav2vec2_chinese_base_fp16",
                                        "clip_vision_h"]),
        (0, 40), (460, 860), "Read me: two people in one frame")
    sampler = people["sampler"]
    targets = {"conversation": (conversation, "audio"), "picture": (people["image"], "image"),
               "prompt": (models["positive"], "text"), "split_mode": (split, "mode"),
               "speaker_left": (split, "avatar_speaker"), "turns": (split, "turns"), "fps": (fps, "value"),
               "width": (sampler, "width"), "height": (sampler, "height"), "seed": (sampler, "seed"),
               "steps": (sampler, "steps"), "speaker_regions": (sampler, "speaker_regions")}
    return _finish(b, "two_people_one_frame", targets, (0.45, 200.0, 250.0))


def train_duplex_adapter(object_info: dict) -> ExampleWorkflow:
    """Workflow 4: train the duplex adapter on a conversation video with the base model frozen (Wan2.2-TI2V-5B)."""
    b = _Builder(object_info, "train_duplex_adapter")
    g = b.graph
    unet = b.loader("UNETLoader", (520, 40), "wan22_ti2v_5b_fp16", "unet_name", weight_dtype="default")
    vae = b.loader("VAELoader", (520, 190), "wan22_vae", "vae_name")
    clip = b.loader("CLIPLoader", (520, 310), "umt5_xxl_fp8_scaled", "clip_name", type="wan")
    encoder = b.loader("AudioEncoderLoader", (520, 480), "wav2vec2_chinese_base_fp16", "audio_encoder_name")
    g.group("Models: Wan2.2-TI2V-5B (frozen)", [unet, vae, clip, encoder], COLOURS["models"])
    positive, negative = b.text((900, 40), clip)
    g.group("Prompt of the clip", [positive, negative], COLOURS["prompt"])
    video = g.node("LoadVideo", (900, 470), {"file": TRAINING_CLIP}, title="Conversation clip (stereo)", size=(320, 380))
    parts = g.node("GetVideoComponents", (900, 890), title="Frames, audio, fps")
    g.link(video, 0, parts, "video")
    split = g.node("BMSplitConversation", (1260, 470), {"mode": "stereo", "avatar_speaker": "speaker_1"},
                   title="Split: talk = left channel (the person on screen)", size=(420, 380))
    g.link(parts, "audio", split, "conversation")
    reference = g.node("LoadImage", (1260, 890), {"image": PORTRAIT_A}, title="Reference frame of the person", size=(320, 380))
    g.group("Clip", [video, parts, split, reference], COLOURS["audio"])
    sample = g.node("BMTrainingSample", (1720, 40), {"source": TRAINING_CLIP}, title="Training sample")
    for source, output, name in ((parts, "images", "images"), (split, "talk", "talk"), (split, "listen", "listen"),
                                 (vae, 0, "vae"), (encoder, 0, "audio_encoder"), (reference, 0, "reference"),
                                 (positive, 0, "positive"), (parts, "fps", "fps")):
        g.link(source, output, sample, name)
    save_set = g.node("BMSaveTrainingSet", (1720, 520), {"filename_prefix": "bm_set"}, title="Keep the encoded clip")
    g.link(sample, 0, save_set, "training_set")
    g.group("Samples", [sample, save_set], COLOURS["settings"])
    train = g.node("BMTrainDuplexAdapter", (2120, 40), {"stage": "both", "steps": 100, "seed": 1},
                   title="Train the duplex adapter", size=(380, 760))
    g.link(unet, 0, train, "model")
    g.link(sample, 0, train, "training_set")
    g.link(negative, 0, train, "negative")
    save = g.node("BMSaveDuplexAdapter", (2560, 40), {"filename_prefix": "bm_adapter"}, title="Save the adapter")
    g.link(train, "trained_adapter", save, "trained_adapter")
    graph = g.node("LossGraphNode", (2560, 260), {"filename_prefix": "beyond_monologue/loss"}, title="Loss",
                   size=(480, 420))
    g.link(train, "loss", graph, "loss")
    g.group("Train and save", [train, save, graph], COLOURS["output"])
    g.note(files_note(
        "Beyond Monologue: train the duplex adapter",
        "Trains the Talking and Listening adapter on your own conversation clips, the base model frozen. Each clip: a "
        "video whose frames show the person (face filling the frame as at inference) and whose audio is the "
        "conversation, two-channel (left = the person on screen) or mono with the split mode set to diarize/turns. "
        "Add clips with more BM Training Sample nodes joined by BM Append Training Samples, or keep them with BM "
        "Save Training Set and start from BM Load Training Set. Stage 'talking' first (the paper's stage 1), then "
        "'both' continuing from it. Time and memory: docs/TRAINING.md (Wan2.2-5B at 704x1280 needs an 80 GB GPU "
        "with gradient checkpointing; a few seconds per clip). The adapter goes to models/beyond_monologue for BM "
        "Apply Duplex Adapter.", "beyond-monologue-wan22-5b",
        ["wan22_ti2v_5b_fp16", "wan22_vae", "umt5_xxl_fp8_scaled", "wav2vec2_chinese_base_fp16"]),
        (0, 40), (460, 860), "Read me: training")
    targets = {"video": (video, "file"), "reference": (reference, "image"), "prompt": (positive, "text"),
               "stage": (train, "stage"), "steps": (train, "steps"), "seed": (train, "seed"), "lr": (train, "lr_new"),
               "window_latents": (train, "window_latents"), "training_dtype": (train, "training_dtype"),
               "checkpointing": (train, "gradient_checkpointing"), "adapter_prefix": (save, "filename_prefix")}
    return _finish(b, "train_duplex_adapter", targets, (0.4, 200.0, 250.0))


BUILDERS = (dyadic_conversation, full_duplex_avatar, infinitetalk_talking_avatar, infinitetalk_lightx2v,
            dyadic_infinitetalk, two_people_one_frame, train_duplex_adapter)


def build_all(object_info: dict) -> list[ExampleWorkflow]:
    """Every example workflow, built against a server's ``/object_info``."""
    return [build(object_info) for build in BUILDERS]


def file_texts(example: ExampleWorkflow) -> dict[str, str]:
    """The files of one example, relative to ``workflows/``, as they are written (JSON, 2-space indent)."""
    def dump(data):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return {f"{example.name}.json": dump(example.ui), f"api/{example.name}.json": dump(example.api),
            f"api/{example.name}.map.json": dump(example.mapping)}


def write_all(object_info: dict, folder: Path = WORKFLOWS_DIR) -> list[Path]:
    """Write every example's files into ``folder``; returns their paths."""
    written = []
    for example in build_all(object_info):
        for relative, text in file_texts(example).items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """``python -m beyond_monologue.comfyui.example_workflows [--server URL]``: regenerate ``workflows/``."""
    import argparse
    import tempfile

    from .comfy_client import ComfyClient
    from .comfy_launcher import ComfyServer

    parser = argparse.ArgumentParser(description="Regenerate the pack's example workflows (workflows/).")
    parser.add_argument("--server", help="a running ComfyUI with this pack (default: start one)")
    args = parser.parse_args(argv)
    if args.server:
        object_info = ComfyClient(args.server).object_info()
    else:
        with tempfile.TemporaryDirectory() as base, ComfyServer(base) as server:
            object_info = ComfyClient(server.url).object_info()
    for path in write_all(object_info):
        print(f"wrote {path.relative_to(PACK_ROOT)}")
    from . import listing_pictures  # the templates' thumbnails follow the graphs

    for path in listing_pictures.write_all():
        print(f"wrote {path.relative_to(PACK_ROOT)}")


if __name__ == "__main__":
    main()
