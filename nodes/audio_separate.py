"""Node of the audio stage that separates speech from music and noise (Mel-Band RoFormer vocal model)."""

from __future__ import annotations

import comfy.model_management
import comfy.model_patcher
import folder_paths
from comfy_api.latest import io

from ..beyond_monologue.audio.audio_checks import check_audio, make_audio
from ..beyond_monologue.audio.melband_roformer import (
    DOWNLOAD_HINT,
    load_state_dict_file,
    model_from_state_dict,
    separate_speech,
)
from ..beyond_monologue.weights import missing_file_error
from .progress import progress_reporter

MODEL_FOLDER = "diffusion_models"  # kijai's ComfyUI-MelBandRoFormer convention


def _model_files() -> list[str]:
    return [name for name in folder_paths.get_filename_list(MODEL_FOLDER) if name.endswith(".safetensors")]


class BMSeparateSpeech(io.ComfyNode):
    """AUDIO -> AUDIO speech + AUDIO background with the Mel-Band RoFormer vocal model, chunk by chunk."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMSeparateSpeech",
            display_name="BM Separate Speech",
            category="BeyondMonologue/audio",
            description=(
                "Removes music and noise from speech with the Mel-Band RoFormer vocal model (file from "
                "models/diffusion_models, e.g. MelBandRoformer_fp16.safetensors from Kijai/MelBandRoFormer_comfy). "
                "Long recordings run in overlapping chunks. Both outputs keep the input's length, sample rate "
                "and channels; speech + background equals the input."),
            inputs=[
                io.Audio.Input("audio", tooltip="A recording with speech over music or noise (mono or stereo, any rate)."),
                io.Combo.Input("model_name", options=_model_files(),
                               tooltip="Mel-Band RoFormer vocal model (.safetensors) in ComfyUI/models/diffusion_models."),
                io.Float.Input("chunk_seconds", default=8.0, min=1.0, max=30.0, step=0.5,
                               tooltip="Seconds per chunk the network sees (8 s as the model was run by its authors). "
                                       "Smaller chunks need less memory."),
                io.Int.Input("overlaps", default=2, min=1, max=8,
                             tooltip="How many chunks cover each moment; more = smoother joins, slower."),
            ],
            outputs=[
                io.Audio.Output("speech", display_name="speech", tooltip="The voices only."),
                io.Audio.Output("background", display_name="background",
                                tooltip="Everything but the voices (music, noise): the input minus speech."),
            ],
        )

    @classmethod
    def validate_inputs(cls, model_name: str) -> bool | str:
        if not model_name.endswith(".safetensors"):
            return f"model_name: {model_name} is not a .safetensors file. Fix: {DOWNLOAD_HINT}"
        if folder_paths.get_full_path(MODEL_FOLDER, model_name) is None:
            return str(missing_file_error("model_name", MODEL_FOLDER, model_name))
        return True

    @classmethod
    def execute(cls, audio, model_name, chunk_seconds=8.0, overlaps=2) -> io.NodeOutput:
        waveform, sample_rate = check_audio(audio, "audio")
        path = folder_paths.get_full_path(MODEL_FOLDER, model_name)
        if path is None:
            raise missing_file_error("model_name", MODEL_FOLDER, model_name)
        state, config = load_state_dict_file(path)
        model = model_from_state_dict(state, config, name=model_name)
        del state
        patcher = comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                                   offload_device=comfy.model_management.unet_offload_device())
        # a plain torch module has no ComfyUI weight casting, so it must sit wholly on one device
        comfy.model_management.load_models_gpu([patcher], force_full_load=True)
        speech, background = separate_speech(model, waveform, sample_rate, chunk_seconds, overlaps,
                                             device=patcher.load_device, on_chunk=progress_reporter())
        return io.NodeOutput(make_audio(speech, sample_rate), make_audio(background, sample_rate))


NODES = [BMSeparateSpeech]
