"""Nodes of the video stage (category ``BeyondMonologue/video``): decode a Wan video latent, compose two avatars."""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.utils
import torch
from comfy_api.latest import InputImpl, Types, io

from ..beyond_monologue.audio.audio_checks import check_audio, make_audio
from ..beyond_monologue.errors import BMInputError
from ..beyond_monologue.sampling.reference import fit_image
from ..beyond_monologue.video.color_match import OFFICIAL_STRENGTH, match_colors
from ..beyond_monologue.video.compose import LAYOUTS, LENGTH_RULES, MAX_HOLD_S, check_frames, compose_dyadic
from ..beyond_monologue.video.video_audio import fit_audio_to_frames, frame_rate, frames_covering_audio, mismatch_frames
from ..beyond_monologue.video.video_decode import TileSpec, check_video_latent, decode_video
from .ui_payloads import video_preview_ui

FPS_RANGE = (1.0, 120.0)
AUDIO_MISMATCH_WARN_FRAMES = 4  # one latent frame: more than the 4n+1 rounding of a render explains


def _fps_input() -> io.Float.Input:
    return io.Float.Input("fps", default=25.0, min=FPS_RANGE[0], max=FPS_RANGE[1], step=0.01,
                          tooltip="Frame rate of the video in frames per second: the fps BM Dual Stream Encode "
                                  "aligned the audio to (25 by default, as InfiniteTalk/MultiTalk and the Beyond "
                                  "Monologue adapter), or the lips drift from the audio.")


def _fps_problem(fps) -> BMInputError | None:
    """What is wrong with an fps value, or None (also for None: a linked value, checked when the node runs)."""
    if fps is not None and not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        return BMInputError("fps", f"is {fps}.", f"use a frame rate from {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g} frames per second.")
    return None


def _tile_problem(tile_size, tile_overlap) -> BMInputError | None:
    if tile_size is None or tile_overlap is None:
        return None
    if tile_size < 64 or tile_overlap < 0:
        return BMInputError("tile_size/tile_overlap", f"are {tile_size}/{tile_overlap}.",
                            "use tile_size >= 64 and tile_overlap >= 0.")
    if tile_overlap * 4 > tile_size:
        return BMInputError("tile_overlap", f"is {tile_overlap} pixels, more than a quarter of tile_size ({tile_size}).",
                            f"use at most {tile_size // 4}.")
    return None


def _gap_problem(gap) -> BMInputError | None:
    if gap is not None and not 0 <= gap <= 256:
        return BMInputError("gap", f"is {gap} pixels.", "use 0 to 256.")
    return None


def _strength_problem(strength) -> BMInputError | None:
    if strength is not None and not 0.0 <= strength <= 1.0:
        return BMInputError("color_match_strength", f"is {strength}.", "use 0 (no correction) to 1 (official default).")
    return None


def _check_image(image, input_name: str) -> None:
    """None, or an IMAGE ``[B, H, W, >=3]``; else a BMInputError naming ``input_name``."""
    if image is None:
        return
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] < 1 or image.shape[-1] < 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise BMInputError(input_name, f"is {shape}, not an IMAGE [batch, height, width, 3].",
                           "connect the reference portrait (Load Image), or leave it unconnected.")


def _raise_first(*problems: BMInputError | None) -> None:
    for problem in problems:
        if problem:
            raise problem


def _first_message(*problems: BMInputError | None) -> bool | str:
    """``validate_inputs``' answer: the first problem's message, or True."""
    return next((str(p) for p in problems if p), True)


def _progress(total: int):
    """A ``(done, total)`` callback: a Cancel point, then a progress bar step (itself a Cancel point in the server)."""
    bar = comfy.utils.ProgressBar(total)

    def update(done: int, total: int) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return update


def video_with_audio(images, audio_clip: tuple | None, fps: float, audio_input: str, node: str):
    """Wrap IMAGE frames and an optional checked audio clip as ComfyUI's VIDEO that ends with the audio.

    Args:
        images: IMAGE ``[F, H, W, 3]``.
        audio_clip: ``(waveform [C, T], sample_rate)`` from ``check_audio``, or None for a silent VIDEO.
        fps: frames per second (rounded to 1/1000 as ComfyUI writes it).
        audio_input, node: names used in the log message.

    Returns:
        ``(frames, VIDEO)``: up to 3 frames past the audio's end (Wan's 4n+1 rounding) are dropped
        from both, so the video lasts as long as the audio to within one frame; the audio is then
        trimmed or padded with silence at its end to exactly the frames' duration (see
        :mod:`beyond_monologue.video.video_audio`). A difference of more than one latent frame's worth
        (4 frames) is logged, since it usually means a wrong fps or the wrong audio.
    """
    rate = frame_rate(fps)
    muxed = None
    if audio_clip is not None:
        waveform, sample_rate = audio_clip
        images = images[:frames_covering_audio(images.shape[0], waveform.shape[-1], sample_rate, rate)]
        off = mismatch_frames(waveform.shape[-1], sample_rate, images.shape[0], rate)
        if abs(off) > AUDIO_MISMATCH_WARN_FRAMES:
            logging.warning("%s: %s lasts %.2f s but the %d frames at %s fps last %.2f s; the audio was %s to the "
                            "frames. If this is not intended, check fps and which audio is connected.", node,
                            audio_input, waveform.shape[-1] / sample_rate, images.shape[0], float(rate),
                            images.shape[0] / rate, "trimmed" if off > 0 else "padded with silence")
        muxed = make_audio(fit_audio_to_frames(waveform, sample_rate, images.shape[0], rate), sample_rate)
    return images, InputImpl.VideoFromComponents(Types.VideoComponents(images=images, audio=muxed, frame_rate=rate))


class BMDecodeVideo(io.ComfyNode):
    """LATENT + VAE (+ AUDIO) -> IMAGE frames, VIDEO with the audio muxed."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMDecodeVideo",
            is_output_node=True,  # it previews its video (ui.PreviewVideo), so it runs without Save Video
            display_name="BM Decode Video",
            category="BeyondMonologue/video",
            description=(
                "Decodes a Wan video latent with the native VAE one latent frame at a time, keeping the VAE's causal "
                "cache, so the frames equal VAE Decode's while memory stays flat however long the video is. "
                "Works with the Wan2.1 VAE (16-channel latents) and the Wan2.2 VAE (48-channel). Outputs the frames "
                "and a VIDEO carrying the audio; with audio connected the video ends with it (the up to 3 frames "
                "past its end that Wan's 4n+1 frame count adds are dropped), and the audio is trimmed or padded "
                "with silence to exactly frames / fps. With color_reference connected every frame is colour-matched "
                "to the portrait (InfiniteTalk's color correction)."),
            inputs=[
                io.Latent.Input("latent", tooltip="The video latent from the sampler: [1, channels, latent frames, "
                                "height/stride, width/stride]. 4n+1 frames come out of n+1 latent frames."),
                io.Vae.Input("vae", tooltip="The native VAE from Load VAE: wan_2.1_vae for 16-channel latents "
                             "(Wan2.1, Wan2.2-14B), wan2.2_vae for 48-channel latents (Wan2.2-TI2V-5B)."),
                _fps_input(),
                io.Boolean.Input("tiled", default=False,
                                 tooltip="Also cut each frame into tiles (for small GPUs or very large frames). "
                                         "Time is never cut, so there are no seams between windows."),
                io.Int.Input("tile_size", default=256, min=64, max=4096, step=32,
                             tooltip="Only when tiled: tile width and height in image pixels."),
                io.Int.Input("tile_overlap", default=64, min=0, max=1024, step=16,
                             tooltip="Only when tiled: overlap of neighbouring tiles in image pixels "
                                     "(at most a quarter of tile_size); the overlap is blended."),
                io.Audio.Input("audio", optional=True,
                               tooltip="Sound for the VIDEO: the conversation, or the avatar's own stream. The frames "
                                       "end with it (up to 3 frames of 4n+1 padding are dropped); it is trimmed or "
                                       "padded with silence at the end to the video's duration. Without it the "
                                       "VIDEO is silent and all frames are kept."),
                io.Image.Input("color_reference", optional=True,
                               tooltip="The reference portrait given to BM Sampler: every decoded frame gets its "
                                       "colour statistics in Lab (mean and spread of L, a, b), as InfiniteTalk's "
                                       "match_and_blend_colors does per clip. Difference kept by the pack: the "
                                       "official code corrects each clip before encoding its last frames into the "
                                       "next clip; BM Sampler carries latents, so only the output is corrected. "
                                       "Not connected: no correction."),
                io.Float.Input("color_match_strength", default=OFFICIAL_STRENGTH, min=0.0, max=1.0, step=0.05,
                               optional=True,
                               tooltip="Only with color_reference: 0 = no correction, 1 = fully matched (the "
                                       "official default); in between blends the two."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames",
                                tooltip="The decoded frames, [frames, height, width, 3] in 0..1."),
                io.Video.Output("video", display_name="video",
                                tooltip="The frames with the audio muxed in at fps; connect Save Video. The node itself shows a preview player (a temp file, not saved)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, fps=None, tiled=None, tile_size=None, tile_overlap=None,
                        color_match_strength=None) -> bool | str:
        """Widget values; linked values arrive as None and are checked when the node runs. The tile
        values only matter (and are only checked) when ``tiled`` is on."""
        tiles = _tile_problem(tile_size, tile_overlap) if tiled is not False else None
        return _first_message(tiles, _fps_problem(fps), _strength_problem(color_match_strength))

    @classmethod
    def execute(cls, latent, vae, fps, tiled, tile_size, tile_overlap, audio=None, color_reference=None,
                color_match_strength=OFFICIAL_STRENGTH) -> io.NodeOutput:
        _raise_first(_tile_problem(tile_size, tile_overlap) if tiled else None, _fps_problem(fps),
                     _strength_problem(color_match_strength))
        samples = check_video_latent(latent, vae)
        clip = check_audio(audio, "audio") if audio is not None else None  # fail before the long decode
        _check_image(color_reference, "color_reference")  # before the long decode
        tile = TileSpec.from_pixels(tile_size, tile_overlap, vae.spacial_compression_decode()) if tiled else None
        frames = decode_video(vae, samples, tile, on_window=_progress(samples.shape[2]))
        if color_reference is not None and color_match_strength > 0:
            fitted = fit_image(color_reference, frames.shape[2], frames.shape[1])  # the sampler's scale and crop
            frames = match_colors(frames, fitted, color_match_strength, on_chunk=_progress(frames.shape[0]))
        frames, video = video_with_audio(frames, clip, fps, "audio", "BMDecodeVideo")
        return io.NodeOutput(frames, video, ui=video_preview_ui(video, "BMDecodeVideo"))


class BMDyadicCompose(io.ComfyNode):
    """IMAGE a + IMAGE b + AUDIO conversation -> IMAGE, VIDEO of the two avatars side by side or stacked."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMDyadicCompose",
            is_output_node=True,  # it previews its video (ui.PreviewVideo), so it runs without Save Video
            display_name="BM Dyadic Compose",
            category="BeyondMonologue/video",
            description=(
                "Puts two avatars' videos side by side (or stacked) with the conversation audio: one dyadic "
                "conversation video. Clips of different sizes are resized to a common height (width when "
                "stacked); clips of slightly different lengths hold the shorter one's last frame, or are trimmed "
                f"to the shorter one. A hold longer than {MAX_HOLD_S:g} s is refused as a wiring mistake. The video ends "
                "with the conversation (up to 3 frames of Wan's 4n+1 padding past its end are dropped)."),
            inputs=[
                io.Image.Input("image_a", tooltip="Frames of avatar A (left, or top when stacked)."),
                io.Image.Input("image_b", tooltip="Frames of avatar B (right, or bottom when stacked)."),
                io.Audio.Input("conversation", tooltip="The whole conversation (both speakers), muxed into the VIDEO; "
                               "the video ends with it, and it is trimmed or padded with silence to the video's "
                               "duration."),
                io.Combo.Input("layout", options=list(LAYOUTS), default="side_by_side",
                               tooltip="side_by_side: A left, B right, same height. stacked: A on top, B below, "
                                       "same width."),
                io.Combo.Input("length_rule", options=list(LENGTH_RULES), default="hold_last_frame",
                               tooltip="When the clips' lengths differ: hold_last_frame lasts as long as the longer "
                                       f"clip (at most {MAX_HOLD_S:g} s of hold); trim_to_shortest cuts both to the "
                                       "shorter."),
                _fps_input(),
                io.Int.Input("gap", default=0, min=0, max=256, step=2,
                             tooltip="Black pixels between the two avatars."),
            ],
            outputs=[
                io.Image.Output("frames", display_name="frames",
                                tooltip="The composed frames, [frames, height, width, 3] in 0..1 (even sizes)."),
                io.Video.Output("video", display_name="video",
                                tooltip="The composed frames with the conversation muxed in at fps; connect Save Video. The node itself shows a preview player (a temp file, not saved)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, fps=None, gap=None) -> bool | str:
        """Widget values; linked values arrive as None and are checked when the node runs."""
        return _first_message(_gap_problem(gap), _fps_problem(fps))

    @classmethod
    def execute(cls, image_a, image_b, conversation, layout, length_rule, fps, gap) -> io.NodeOutput:
        _raise_first(_gap_problem(gap), _fps_problem(fps))
        a, b = check_frames(image_a, "image_a"), check_frames(image_b, "image_b")
        clip = check_audio(conversation, "conversation")
        frames = compose_dyadic(a, b, layout, length_rule, fps, gap, on_chunk=_progress(max(a.shape[0], b.shape[0])))
        frames, video = video_with_audio(frames, clip, fps, "conversation", "BMDyadicCompose")
        return io.NodeOutput(frames, video, ui=video_preview_ui(video, "BMDyadicCompose"))


NODES = [BMDecodeVideo, BMDyadicCompose]
