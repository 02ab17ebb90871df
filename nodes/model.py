"""Nodes of the model stage (category ``BeyondMonologue/model``): attach the dual-stream audio adapter."""

from __future__ import annotations

import logging
import math
import os

import comfy.model_management
import comfy.model_patcher
import comfy.ops
import folder_paths
from comfy_api.latest import io

from ..beyond_monologue.errors import BMInputError
from ..beyond_monologue.model.adapter_checkpoint import load_adapter
from ..beyond_monologue.model.mhgk import parse_per_head
from ..beyond_monologue.model.mhgk_attention import BACKENDS
from ..beyond_monologue.model.trained_adapter import attachable_module, save_trained_adapter
from ..beyond_monologue.model.wan_patch import AdapterSettings, attach_duplex_adapter
from ..beyond_monologue.weights import missing_file_error
from .model_files import new_model_file
from .types import DuplexAdapterType

ADAPTER_FOLDER = "beyond_monologue"
ADAPTER_FOLDERS = (ADAPTER_FOLDER, "model_patches")


def register_adapter_folder() -> None:
    """Register ``models/beyond_monologue`` (safetensors only) with ``folder_paths`` once."""
    if ADAPTER_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[ADAPTER_FOLDER] = (
            [os.path.join(folder_paths.models_dir, ADAPTER_FOLDER)], {".safetensors"})


def adapter_files() -> list[str]:
    """Adapter files offered by the node: safetensors in ``models/beyond_monologue`` and ``models/model_patches``."""
    names = set()
    for folder in ADAPTER_FOLDERS:
        names.update(n for n in folder_paths.get_filename_list(folder) if n.lower().endswith(".safetensors"))
    return sorted(names)


def resolve_adapter_file(name: str) -> str:
    """Full path of ``name`` in the adapter folders (never a path typed by the user).

    Raises:
        BMInputError: the file is in neither folder.
    """
    for folder in ADAPTER_FOLDERS:
        path = folder_paths.get_full_path(folder, name) if name.lower().endswith(".safetensors") else None
        if path:
            return path
    known = missing_file_error("adapter", "model_patches", name)  # names the set, folder and URL when known
    raise BMInputError("adapter", f"file {name!r} is not in models/{ADAPTER_FOLDER} or models/model_patches.",
                       f"{known.fix} Then refresh (press r) in ComfyUI.")


register_adapter_folder()


class BMApplyDuplexAdapter(io.ComfyNode):
    """MODEL (native Wan) + adapter file -> MODEL with Talking/Listening audio cross-attention in every block."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        per_head = ("One value for all heads or one per head, comma separated ('inf' allowed). "
                    "Empty = the schedule stored in the adapter file.")
        return io.Schema(
            node_id="BMApplyDuplexAdapter",
            display_name="BM Apply Duplex Adapter",
            category="BeyondMonologue/model",
            # the Beyond Monologue adapter weights are not published (weights_manifest: waiting-for-weights)
            is_experimental=True,
            description=(
                "Attaches a dual-stream audio adapter to a native Wan model: a Talking and a Listening "
                "cross-attention with the multi-head Gaussian kernel (MHGK) in every DiT block. Takes a "
                "Beyond Monologue adapter (Wan2.2-TI2V-5B) or the public InfiniteTalk model patch "
                "(Wan2.1-I2V-14B, Talking branch with frame-local attention). The audio itself comes per run "
                "from the BM sampler; without it the model renders exactly as before. Experimental: the Beyond "
                "Monologue adapter weights are not published yet (train your own, or use the InfiniteTalk patch, "
                "which is public)."),
            inputs=[
                io.Model.Input("model", tooltip="A Wan model from Load Diffusion Model: Wan2.2-TI2V-5B for Beyond "
                               "Monologue adapters, Wan2.1-I2V-14B for InfiniteTalk."),
                io.Combo.Input("adapter", options=adapter_files(),
                               tooltip=f"Adapter .safetensors from models/{ADAPTER_FOLDER} or models/model_patches."),
                io.Float.Input("talk_strength", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="Scale of the Talking branch (the avatar's own speech, lip sync). 0 = off."),
                io.Float.Input("listen_strength", default=1.0, min=0.0, max=4.0, step=0.05,
                               tooltip="Scale of the Listening branch (the interlocutor's speech, reactions). 0 = off."),
                io.String.Input("talk_sigma", default="", optional=True, placeholder="from the adapter file",
                                tooltip="MHGK sigma of the Talking heads in seconds (0 = frame-local). " + per_head),
                io.String.Input("talk_alpha", default="", optional=True, placeholder="from the adapter file",
                                tooltip="MHGK alpha (bias strength, logits) of the Talking heads; inf = hard mask: each "
                                        "latent frame sees only its own audio window, whatever sigma (InfiniteTalk). " + per_head),
                io.String.Input("listen_sigma", default="", optional=True, placeholder="from the adapter file",
                                tooltip="MHGK sigma of the Listening heads in seconds (inf = global). " + per_head),
                io.String.Input("listen_alpha", default="", optional=True, placeholder="from the adapter file",
                                tooltip="MHGK alpha of the Listening heads. " + per_head),
                io.Combo.Input("attention_backend", options=list(BACKENDS), default="auto", optional=True,
                               tooltip="MHGK attention kernel. auto picks the fastest exact one for the GPU and "
                                       "follows ComfyUI's attention flags (no xformers when ComfyUI has it off); "
                                       "the others are for benchmarking and debugging. One that cannot run here "
                                       "falls back to auto with a log line."),
                DuplexAdapterType.Input("trained_adapter", optional=True,
                                        tooltip="An adapter in memory, e.g. BM Train Duplex Adapter's output. When "
                                                "connected it is attached instead of the file, and the adapter "
                                                "file choice is ignored; it computes exactly as its saved file would."),
            ],
            outputs=[io.Model.Output(display_name="MODEL", tooltip="The Wan model with the adapter attached.")],
        )

    @classmethod
    def validate_inputs(cls, adapter=None, talk_sigma="", talk_alpha="", listen_sigma="", listen_alpha=""):
        """Syntax of the per-head overrides (the head count is only known once the file is read).

        ``adapter`` is taken here so that ComfyUI does not refuse a file name missing from the list
        while an in-memory ``trained_adapter`` is connected (a training graph may have no adapter
        file yet); a missing file without one fails when the node runs, naming folder and download.
        No ``**kwargs`` on purpose: ComfyUI then keeps checking the other inputs' ranges and options.
        """
        if adapter is not None and not isinstance(adapter, str):
            return f"adapter: expected a file name, got {type(adapter).__name__}"
        values = {"talk_sigma": talk_sigma, "talk_alpha": talk_alpha, "listen_sigma": listen_sigma, "listen_alpha": listen_alpha}
        for name, text in values.items():
            if not isinstance(text, str):
                continue  # linked from another node: checked when it runs
            try:
                count = len(text.replace(",", " ").split())
                parse_per_head(text, max(count, 1), name)
            except BMInputError as err:
                return str(err)
        return True

    @classmethod
    def execute(cls, model, adapter, talk_strength, listen_strength, talk_sigma="", talk_alpha="", listen_sigma="",
                listen_alpha="", attention_backend="auto", trained_adapter=None) -> io.NodeOutput:
        offload = comfy.model_management.unet_offload_device()
        if trained_adapter is not None:
            label = "trained_adapter"
            module = attachable_module(trained_adapter, operations=comfy.ops.manual_cast, device=offload)
        else:
            label = f"adapter file {adapter!r}"
            module = load_adapter(resolve_adapter_file(adapter), label=label, operations=comfy.ops.manual_cast,
                                  device=offload)
        cfg = module.config
        overrides = {"talk": (talk_sigma, talk_alpha), "listen": (listen_sigma, listen_alpha)}
        kernels = {}
        for stream in cfg.streams:
            sigma, alpha = (parse_per_head(text or "", cfg.num_heads, f"{stream}_{kind}")
                            for text, kind in zip(overrides[stream], ("sigma", "alpha"), strict=True))
            current = cfg.kernel(stream)
            if sigma is not None and alpha is None and any(math.isinf(a) for a in current.alpha):
                raise BMInputError(f"{stream}_sigma", f"has no effect: this adapter's {stream} alpha is inf, a hard mask "
                                   "that keeps each latent frame's own audio window whatever sigma is.",
                                   f"also set {stream}_alpha (e.g. 8) for a soft Gaussian kernel, or leave {stream}_sigma empty.")
            kernels[stream] = current.with_overrides(sigma, alpha)
        if not cfg.trained:
            logging.warning("BeyondMonologue: %s holds generated (untrained) smoke weights; the audio will not drive the video.", label)
        patcher = comfy.model_patcher.ModelPatcher(module, load_device=comfy.model_management.get_torch_device(),
                                                   offload_device=comfy.model_management.unet_offload_device())
        settings = AdapterSettings(kernels, {"talk": talk_strength, "listen": listen_strength}, attention_backend)
        return io.NodeOutput(attach_duplex_adapter(model, patcher, settings, label=label))


class BMSaveDuplexAdapter(io.ComfyNode):
    """BM_DUPLEX_ADAPTER -> a layout (a) file in ``models/beyond_monologue`` with ``bm_trained=true`` and training metadata."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMSaveDuplexAdapter",
            display_name="BM Save Duplex Adapter",
            category="BeyondMonologue/model",
            is_experimental=True,  # saves the output of the experimental BM Train Duplex Adapter
            description=(
                f"Saves a trained dual-stream adapter as a Beyond Monologue adapter file (docs/ADAPTER_FORMAT.md) in "
                f"ComfyUI/models/{ADAPTER_FOLDER}, with its training metadata (stage, steps, samples, hours of audio, "
                "base model, dropout rates, learning rates) and its RoPE/MHGK settings. Never overwrites: a new "
                "numbered file each run. BM Apply Duplex Adapter loads it back bit-exactly."),
            inputs=[
                DuplexAdapterType.Input("trained_adapter", tooltip="The adapter to save (BM Train Duplex Adapter's output)."),
                io.String.Input("filename_prefix", default="bm_adapter",
                                tooltip=f"File name prefix inside models/{ADAPTER_FOLDER} (sub-folders allowed, e.g. "
                                        "'stage1/bm_adapter'); a counter and .safetensors are appended."),
            ],
            outputs=[io.String.Output(display_name="file", tooltip=f"The saved file's name in models/{ADAPTER_FOLDER}, "
                                      "as BM Apply Duplex Adapter lists it.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, trained_adapter, filename_prefix="bm_adapter") -> io.NodeOutput:
        path, listed = new_model_file(filename_prefix, ADAPTER_FOLDER)
        save_trained_adapter(trained_adapter, path)
        logging.info("BeyondMonologue: saved the trained adapter to models/%s/%s", ADAPTER_FOLDER, listed)
        return io.NodeOutput(listed, ui={"text": [f"models/{ADAPTER_FOLDER}/{listed}"]})


NODES = [BMApplyDuplexAdapter, BMSaveDuplexAdapter]
