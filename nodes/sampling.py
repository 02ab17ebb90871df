"""Node of the sampling stage (category ``BeyondMonologue/sampling``): long-form talking-listening video latents."""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io
from comfy_extras.nodes_model_advanced import ModelSamplingSD3

from ..beyond_monologue.errors import BMInputError
from ..beyond_monologue.model.duplex_adapter import LAYOUT_INFINITETALK
from ..beyond_monologue.model.mhgk import parse_per_head
from ..beyond_monologue.model.wan_patch import backbone, require_adapter
from ..beyond_monologue.sampling.apg import OFFICIAL_MOMENTUM, OFFICIAL_NORM_THRESHOLD, APGSettings
from ..beyond_monologue.sampling.guidance import GuidanceScales
from ..beyond_monologue.sampling.long_video import SamplingSettings, sample_long_video
from ..beyond_monologue.sampling.reference import (
    GUIDE_POSITIONS,
    encode_reference,
    require_clip_vision,
    resolve_guide_position,
)
from ..beyond_monologue.sampling.schedule import SCHEDULER_NAME
from ..beyond_monologue.sampling.speakers import SPEAKER_REGIONS, speaker_masks
from ..beyond_monologue.timebase import is_valid_frame_count, latent_count
from .types import DuplexAudioType

MAX_SIZE = 16384  # ComfyUI's nodes.MAX_RESOLUTION
SIZE_STEP = 16  # the smallest multiple any Wan backbone needs (Wan2.1 VAE 8 x patch 2); Wan2.2-5B needs 32
MAX_MOTION_LATENTS = 16
MAX_WINDOW_FRAMES = 1001
# Two people in one frame (the pack's choices): a stream counts as speaking when some frame's voice activity
# (Silero speech probability) passes Silero's usual 0.5, and the reference's centre crop to the video's aspect
# may drop at most 20 % of its width or height (more and a person at the edge is cut out of the frame).
SPEECH_PROBABILITY = 0.5
MAX_TWO_PEOPLE_CROP = 0.2
KERNEL_INPUTS = ("talk_sigma", "talk_alpha", "listen_sigma", "listen_alpha")
GUIDANCE_METHODS = ("cfg", "apg")
LAST_WINDOWS = ("auto", "full_mirrored", "shortened")


def _scale_input(name: str, default: float, what: str) -> io.Float.Input:
    return io.Float.Input(name, default=default, min=0.0, max=30.0, step=0.1, round=0.01,
                          tooltip=f"Guidance scale of {what}. 1 = no guidance on this path; with cfg_text, cfg_talk "
                                  "and cfg_listen all 1 each step needs one model evaluation (distilled LoRAs).")


class BMSampler(io.ComfyNode):
    """MODEL (adapter attached) + text + BM_DUPLEX_AUDIO + VAE + reference IMAGE -> LATENT video of the audio's length."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        per_head = "One value for all heads or one per head, comma separated ('inf' allowed). Empty = the adapter node's."
        return io.Schema(
            node_id="BMSampler",
            display_name="BM Sampler",
            category="BeyondMonologue/sampling",
            description=(
                "Renders the whole conversation as one video latent, window after window with ComfyUI's own "
                "samplers and schedulers: each window continues from the last latents of the previous one "
                "(motion latents, no decode/encode round trip), the reference portrait holds identity and colour "
                "in every window, and memory stays flat however long the audio is. Guidance mixes text, talking "
                "and listening: u + cfg_listen (l - u) + cfg_talk (t - l) + cfg_text (c - t), where u has the "
                "negative prompt and both audio streams null, l adds the listening audio, t adds the talking "
                "audio and c uses the positive prompt. The video lasts exactly as long as the encoded audio; "
                "decode it with BM Decode Video or VAE Decode. With InfiniteTalk it samples like the official "
                "generator (every window restarts its audio as a clip, known latents held clean before every "
                "call, official two/three-pass guidance, a full last window over mirrored audio, optional "
                "official schedule and APG); one deliberate difference: motion latents are carried as latents "
                "instead of decoding the last 9 frames and encoding them again."),
            inputs=[
                io.Model.Input("model", tooltip="The Wan model with the adapter attached (BM Apply Duplex Adapter): "
                               "Wan2.2-TI2V-5B for Beyond Monologue, Wan2.1-I2V-14B for InfiniteTalk."),
                io.Conditioning.Input("positive", tooltip="The prompt (CLIP Text Encode with the umT5 text encoder)."),
                io.Conditioning.Input("negative", tooltip="The negative prompt; it is the 'null text' of the three "
                                      "unconditional guidance evaluations. An empty prompt gives plain text CFG."),
                DuplexAudioType.Input("duplex_audio", tooltip="Both encoded speech streams of this avatar (BM Dual "
                                      "Stream Encode). Their length sets the video's length."),
                io.Vae.Input("vae", tooltip="The native VAE of the model (wan2.2_vae for Wan2.2-TI2V-5B, wan_2.1_vae "
                             "for Wan2.1); encodes the reference once."),
                io.Image.Input("reference", tooltip="The avatar's portrait; scaled and centre-cropped to width x height."),
                io.Int.Input("width", default=1280, min=32, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip="Video width in pixels: a multiple of 32 for Wan2.2-TI2V-5B (VAE 16 x patch 2), "
                                     "of 16 for Wan2.1 (VAE 8 x patch 2). 1280x704 (5B) or 832x480 (Wan2.1-480p)."),
                io.Int.Input("height", default=704, min=32, max=MAX_SIZE, step=SIZE_STEP,
                             tooltip="Video height in pixels, same multiples as width."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed. The same seed and inputs give the same video; each window draws "
                                     "its own noise from the seed and its index."),
                io.Int.Input("steps", default=30, min=1, max=1000, tooltip="Sampling steps per window."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="uni_pc",
                               tooltip="ComfyUI sampler (as in KSampler). uni_pc is Wan's own solver."),
                io.Combo.Input("scheduler", options=[*comfy.samplers.KSampler.SCHEDULERS, SCHEDULER_NAME], default="simple",
                               tooltip="ComfyUI scheduler (as in KSampler), or infinitetalk_linear: the official "
                                       "InfiniteTalk schedule, timesteps linspace(1000, 1, steps) then 0, shifted by "
                                       "shift (use it with the euler sampler for the official steps)."),
                io.Float.Input("shift", default=5.0, min=0.0, max=100.0, step=0.01,
                               tooltip="Flow shift (ModelSamplingSD3). Wan2.2-TI2V-5B uses 5; InfiniteTalk 7 at "
                                       "480p, 11 at 720p; distilled LoRAs often 2. 0 = keep the MODEL's own."),
                _scale_input("cfg_text", 5.0, "the text prompt (c - t). At exactly 1 there is no text path and every "
                             "evaluation uses the positive prompt: with InfiniteTalk the official two passes "
                             "drop_audio + cfg_talk (cond - drop_audio)"),
                _scale_input("cfg_talk", 4.0, "the talking stream, the avatar's own speech: lip sync (t - l)"),
                _scale_input("cfg_listen", 3.0, "the listening stream, the other person's speech: reactions (l - u); "
                             "no effect with a talk-only adapter (InfiniteTalk)"),
                io.Int.Input("window_frames", default=81, min=5, max=MAX_WINDOW_FRAMES, step=4,
                             tooltip="Frames per sampling window (4n+1; 81 = 21 latents = 3.24 s at 25 fps, what "
                                     "the models were trained on). See last_window for the last one."),
                io.Int.Input("motion_latents", default=3, min=1, max=MAX_MOTION_LATENTS,
                             tooltip="Latent frames each window takes over from the previous one, held clean in "
                                     "every model call (3 latents; with 81-frame windows every window then starts "
                                     "72 frames after the last, as InfiniteTalk's clips with its 9 motion frames). "
                                     "Deliberate difference to the official code: they are carried as latents, "
                                     "not decoded and encoded again. More = smoother joins, fewer new frames."),
                io.Combo.Input("guide_position", options=list(GUIDE_POSITIONS), default="auto",
                               tooltip="Where the reference goes. past_end: a clean guide frame just past each "
                                       "window (the paper's best; Wan2.2-TI2V-5B). first_frame: the reference as "
                                       "frame 0 (Wan2.1-I2V / InfiniteTalk, through its image input in every window). "
                                       "auto: first_frame on I2V models, else past_end."),
                io.Int.Input("guide_offset", default=1, min=0, max=16,
                             tooltip="past_end only: guide RoPE index = window latents - 1 + offset. 1 = one latent "
                                     "past the end (paper's best); 0 limits motion; large values weaken the guide."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                          tooltip="Wan2.1-I2V (InfiniteTalk): CLIP Vision Encode (clip_vision_h, crop "
                                                  "none) of the reference, given to every call as in the official "
                                                  "generator; required unless allow_missing_clip_vision is on or the "
                                                  "positive conditioning carries one. Ignored by Wan2.2-TI2V-5B."),
                *(io.String.Input(name, default="", optional=True, placeholder="from the adapter node",
                                  tooltip=f"MHGK {name.split('_')[1]} of the {name.split('_')[0].capitalize()}ing heads "
                                          f"for this run ({'seconds' if name.endswith('sigma') else 'logits'}). "
                                          + per_head)
                  for name in KERNEL_INPUTS),
                io.Combo.Input("guidance_method", options=list(GUIDANCE_METHODS), default="cfg", optional=True,
                               tooltip="cfg: the linear mix above. apg: adaptive projected guidance, the official "
                                       "InfiniteTalk option (--use_apg): each guidance difference of the velocity is "
                                       "momentum-averaged, norm-clipped and stripped of its part along the "
                                       "conditional prediction; less oversaturation at high audio CFG."),
                io.Float.Input("apg_momentum", default=OFFICIAL_MOMENTUM, min=-1.0, max=1.0, step=0.01, optional=True,
                               tooltip="apg only: momentum of the running guidance difference per window "
                                       "(official default -0.75)."),
                io.Float.Input("apg_norm_threshold", default=OFFICIAL_NORM_THRESHOLD, min=0.0, max=1000.0, step=0.5,
                               optional=True, tooltip="apg only: the guidance difference's L2 norm is clipped to this "
                                                      "(0 = no clipping; official default 55)."),
                io.Combo.Input("last_window", options=list(LAST_WINDOWS), default="auto", optional=True,
                               tooltip="full_mirrored: the last window keeps window_frames over audio mirrored at "
                                       "its end, and the frames past the audio are dropped (the official "
                                       "InfiniteTalk last clip). shortened: the last window covers only the audio "
                                       "left (the pack's earlier behaviour). auto: full_mirrored with the "
                                       "InfiniteTalk adapter, shortened with a Beyond Monologue adapter (the "
                                       "pack's choice: its training recipe is not public)."),
                io.Combo.Input("speaker_regions", options=list(SPEAKER_REGIONS), default="off", optional=True,
                               tooltip="Two people in one frame (the InfiniteTalk multi patch, "
                                       "wan2.1_infiniteTalk_multi): speaker 1 speaks the talk stream, speaker 2 the "
                                       "listen stream, each bound to its region (official L-RoPE binding and "
                                       "routing). masks: speaker_1_mask and speaker_2_mask drawn on the reference; "
                                       "left_right: the official default boxes of the left and right halves. "
                                       "off: one avatar."),
                io.Mask.Input("speaker_1_mask", optional=True,
                              tooltip="speaker_regions masks: the region of speaker 1 (talk stream) on the reference "
                                      "image, same size as the image."),
                io.Mask.Input("speaker_2_mask", optional=True,
                              tooltip="speaker_regions masks: the region of speaker 2 (listen stream); must not "
                                      "overlap speaker 1's."),
                io.Boolean.Input("allow_missing_clip_vision", default=False, optional=True,
                                 tooltip="Run a Wan2.1-I2V model without CLIP vision features of the reference "
                                         "(off: such a run is refused, since the official generator always "
                                         "gives them)."),
            ],
            outputs=[io.Latent.Output(display_name="LATENT", tooltip="The video latent [1, channels, latent frames, "
                                      "height/stride, width/stride]; 4n+1 frames decode from n+1 latents.")],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None, window_frames=None, motion_latents=None, talk_sigma="",
                        talk_alpha="", listen_sigma="", listen_alpha="") -> bool | str:
        """Widget values (linked values arrive as None and are checked when the node runs).

        ComfyUI skips its own min/max checks for inputs named here, so the ranges are checked again.
        """
        problem = _setting_problem(width, height, window_frames, motion_latents)
        if problem:
            return str(problem)
        texts = {"talk_sigma": talk_sigma, "talk_alpha": talk_alpha, "listen_sigma": listen_sigma, "listen_alpha": listen_alpha}
        for name, text in texts.items():
            if isinstance(text, str):
                try:
                    parse_per_head(text, max(len(text.replace(",", " ").split()), 1), name)
                except BMInputError as err:
                    return str(err)
        return True

    @classmethod
    def execute(cls, model, positive, negative, duplex_audio, vae, reference, width, height, seed, steps, sampler_name,
                scheduler, shift, cfg_text, cfg_talk, cfg_listen, window_frames, motion_latents, guide_position,
                guide_offset, clip_vision_output=None, talk_sigma="", talk_alpha="", listen_sigma="",
                listen_alpha="", guidance_method="cfg", apg_momentum=OFFICIAL_MOMENTUM,
                apg_norm_threshold=OFFICIAL_NORM_THRESHOLD, last_window="auto", speaker_regions="off",
                speaker_1_mask=None, speaker_2_mask=None, allow_missing_clip_vision=False) -> io.NodeOutput:
        problem = _setting_problem(width, height, window_frames, motion_latents)
        if problem:
            raise problem
        info = backbone(model)
        adapter_patcher, adapter_settings = require_adapter(model)
        trained_fps = adapter_patcher.model.config.fps
        if abs(duplex_audio.fps - trained_fps) > 1e-3:
            logging.warning("BMSampler: the audio was aligned to %g fps but the adapter was trained at %g fps; "
                            "lip timing may drift. Encode the audio at %g fps.", duplex_audio.fps, trained_fps, trained_fps)
        _check_vae(vae, info, width, height)
        position = resolve_guide_position(guide_position, info)
        if clip_vision_output is not None and info.image_concat_channels == 0:
            logging.info("BMSampler: clip_vision_output is ignored (only Wan2.1-I2V models use it).")
        clip_vision_output = require_clip_vision(info, clip_vision_output, positive, allow_missing_clip_vision)
        apg = _apg_settings(guidance_method, apg_momentum, apg_norm_threshold)
        full_last = _full_last(last_window, adapter_patcher.model.config.layout)
        window_latents = latent_count(window_frames, "window_frames")
        texts = {"talk": (talk_sigma, talk_alpha), "listen": (listen_sigma, listen_alpha)}
        kernels = _kernel_overrides(adapter_settings.kernels, texts)
        if shift > 0:
            model = ModelSamplingSD3().patch(model, shift)[0]
        ref = encode_reference(vae, reference, width, height, position, info, window_latents, clip_vision_output)
        masks = speaker_masks(speaker_regions, width, height, reference, speaker_1_mask, speaker_2_mask)
        if masks is not None and adapter_patcher.model.config.layout != LAYOUT_INFINITETALK:
            raise BMInputError("speaker_regions", f"is {speaker_regions}, but two people in one frame need the "
                               "InfiniteTalk multi patch.", "load wan2.1_infiniteTalk_multi with BM Apply Duplex "
                               "Adapter, or set speaker_regions to off.")
        if masks is not None:
            _check_two_people(duplex_audio, reference, width, height)
        settings = SamplingSettings(steps, sampler_name, scheduler, seed, GuidanceScales(cfg_text, cfg_talk, cfg_listen),
                                    window_latents, motion_latents, guide_offset, kernels, apg, full_last, masks)
        samples = sample_long_video(model, positive, negative, duplex_audio, ref, settings, _step_callback(model))
        return io.NodeOutput({"samples": samples})


def _check_two_people(duplex_audio, reference, width: int, height: int) -> None:
    """Refuse a two-people run that cannot be right: a speaker without speech, or a reference whose centre crop
    to ``width`` x ``height`` would cut away more than :data:`MAX_TWO_PEOPLE_CROP` of it.

    Not checkable: a single-speaker InfiniteTalk patch in a two-people graph (the single and multi files hold
    the same tensors, so nothing in the keys tells them apart).

    Raises:
        BMInputError: ``duplex_audio`` with a silent stream, or ``reference`` of the wrong aspect.
    """
    for stream, who in (("talk", "speaker 1"), ("listen", "speaker 2")):
        activity = getattr(duplex_audio, f"{stream}_activity")
        if not bool((activity > SPEECH_PROBABILITY).any()):
            raise BMInputError("duplex_audio", f"has no speech in its {stream} stream ({who}), but "
                               "speaker_regions puts two speaking people in one frame.",
                               "give each person their own stream (BM Split Conversation: talk = speaker 1, listen = "
                               "speaker 2, into BM Dual Stream Encode), or set speaker_regions to off for one avatar.")
    image_height, image_width = reference.shape[1:3]
    image_aspect, video_aspect = image_width / image_height, width / height
    kept = min(image_aspect / video_aspect, video_aspect / image_aspect)
    if kept < 1 - MAX_TWO_PEOPLE_CROP:
        side = "width" if image_aspect > video_aspect else "height"
        raise BMInputError("reference", f"is {image_width}x{image_height} but the video is {width}x{height}: the "
                           f"centre crop would cut {1 - kept:.0%} of the picture's {side}, and with it a person at "
                           "the edge.", f"set width and height to the picture's aspect (e.g. {width}x"
                           f"{round(width / image_aspect / SIZE_STEP) * SIZE_STEP}), or crop the picture first.")


def _setting_problem(width, height, window_frames, motion_latents) -> BMInputError | None:
    """What is wrong with the size and window values (None for a value not known yet, e.g. linked), or None."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, int) and (not 32 <= value <= MAX_SIZE or value % SIZE_STEP):
            return BMInputError(name, f"is {value}.", f"use a multiple of {SIZE_STEP} from 32 to {MAX_SIZE} "
                                "(of 32 for Wan2.2-TI2V-5B), e.g. 1280x704 or 832x480.")
    if isinstance(motion_latents, int) and not 1 <= motion_latents <= MAX_MOTION_LATENTS:
        return BMInputError("motion_latents", f"is {motion_latents}.", f"use 1 to {MAX_MOTION_LATENTS} (default 3); "
                            "each window needs at least one latent from the previous one to continue smoothly.")
    if isinstance(window_frames, int):
        if not 5 <= window_frames <= MAX_WINDOW_FRAMES or not is_valid_frame_count(window_frames):
            return BMInputError("window_frames", f"is {window_frames}.",
                                f"use 4n+1 frames from 5 to {MAX_WINDOW_FRAMES} (e.g. 81).")
        latents = latent_count(window_frames)
        if isinstance(motion_latents, int) and motion_latents >= latents:
            return BMInputError("motion_latents", f"is {motion_latents} but a window of {window_frames} frames has "
                                f"{latents} latents.", f"use 1 to {latents - 1}, or longer windows.")
    return None


def _apg_settings(method: str, momentum: float, norm_threshold: float) -> APGSettings | None:
    if method not in GUIDANCE_METHODS:
        raise BMInputError("guidance_method", f"is {method!r}.", f"use one of {', '.join(GUIDANCE_METHODS)}.")
    if method == "cfg":
        return None
    if not -1.0 <= momentum <= 1.0 or norm_threshold < 0:
        raise BMInputError("apg_momentum/apg_norm_threshold", f"are {momentum}/{norm_threshold}.",
                           "use a momentum from -1 to 1 and a threshold >= 0 (official: -0.75 and 55).")
    return APGSettings(momentum, norm_threshold)


def _full_last(last_window: str, layout: str) -> bool:
    if last_window not in LAST_WINDOWS:
        raise BMInputError("last_window", f"is {last_window!r}.", f"use one of {', '.join(LAST_WINDOWS)}.")
    if last_window == "auto":
        return layout == LAYOUT_INFINITETALK
    return last_window == "full_mirrored"


def _check_vae(vae, info, width: int, height: int) -> None:
    latent_channels = getattr(vae, "latent_channels", None)
    if latent_channels != info.latent_channels:
        raise BMInputError("vae", f"makes {latent_channels}-channel latents but the model works on {info.latent_channels}.",
                           "use wan2.2_vae with Wan2.2-TI2V-5B and wan_2.1_vae with Wan2.1 (Load VAE).")
    multiple = vae.spacial_compression_encode() * info.patch_size[1]
    for name, value in (("width", width), ("height", height)):
        if value < multiple or value % multiple:
            lower = max(multiple, value - value % multiple)
            raise BMInputError(name, f"is {value} pixels; this VAE and model need a multiple of {multiple}.",
                               f"use {lower} or {lower + multiple}.")


def _kernel_overrides(kernels: dict, texts: dict) -> dict:
    """Per-run MHGK kernels from the sigma/alpha widgets (only streams with an override)."""
    out = {}
    for stream, (sigma_text, alpha_text) in texts.items():
        if not (sigma_text or "").strip() and not (alpha_text or "").strip():
            continue
        if stream not in kernels:
            name = f"{stream}_sigma" if (sigma_text or "").strip() else f"{stream}_alpha"
            raise BMInputError(name, f"is set but the adapter has no {stream} branch.",
                               "clear the field, or use an adapter with that branch.")
        heads = kernels[stream].num_heads
        sigma, alpha = (parse_per_head(text or "", heads, f"{stream}_{kind}")
                        for text, kind in ((sigma_text, "sigma"), (alpha_text, "alpha")))
        out[stream] = kernels[stream].with_overrides(sigma, alpha)
    return out


def _step_callback(model):
    """Progress over all steps of all windows with a latent preview; Cancel is checked at every step."""
    bar = comfy.utils.ProgressBar(1)
    previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)

    def on_step(done: int, total: int, x0) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        preview = previewer.decode_latent_to_preview_image("JPEG", x0[:, :, -1:]) if previewer is not None else None
        bar.update_absolute(done, total, preview)

    return on_step


NODES = [BMSampler]
