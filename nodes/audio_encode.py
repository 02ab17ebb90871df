"""Node of the audio stage that encodes the talk and listen streams into ``BM_DUPLEX_AUDIO``."""

from __future__ import annotations

from comfy_api.latest import io

from ..beyond_monologue.audio.audio_checks import check_audio
from ..beyond_monologue.audio.duplex_audio import FEATURE_ORDERS
from ..beyond_monologue.audio.speech_features import encode_with_audio_encoder
from ..beyond_monologue.errors import BMInputError
from ..beyond_monologue.timebase import is_valid_frame_count
from .progress import progress_reporter
from .types import DuplexAudioType
from .ui_payloads import duplex_timeline_ui


def _value_problem(fps: float | None, length: int | None) -> BMInputError | None:
    """What is wrong with the fps / length values (None: not known yet, e.g. linked), or None."""
    if fps is not None and not 1.0 <= fps <= 60.0:
        return BMInputError("fps", f"{fps} is outside 1..60.", "use the video's frame rate (InfiniteTalk: 25).")
    if length is not None and (length < 0 or length > 100001):
        return BMInputError("length", f"{length} is outside 0..100001.", "use 0 (match the audio) or a 4n+1 frame count like 81.")
    if length and not is_valid_frame_count(length):
        lower = length - (length - 1) % 4
        return BMInputError("length", f"{length} frames is not 4n+1 (Wan's VAE).",
                            f"use 0 (match the audio), {lower} or {lower + 4}.")
    return None


class BMDualStreamEncode(io.ComfyNode):
    """AUDIO talk + AUDIO listen + AUDIO_ENCODER (wav2vec2) -> BM_DUPLEX_AUDIO (per-frame features of both streams)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMDualStreamEncode",
            display_name="BM Dual Stream Encode",
            category="BeyondMonologue/audio",
            description=(
                "Encodes the avatar's own speech (talk) and the other person's speech (listen) with wav2vec2 "
                "(all hidden layers), each resampled to 16 kHz mono and loudness-normalised to -23 LUFS, aligned "
                "to video frames (4n+1 of them) and grouped into latent-frame windows, with a voice-activity "
                "value per frame for each stream."),
            inputs=[
                io.Audio.Input("talk", tooltip="The avatar's own speech (e.g. 'talk' of BM Split Conversation)."),
                io.Audio.Input("listen", tooltip="The other person's speech (e.g. 'listen' of BM Split Conversation). "
                               "Silence is fine for an avatar that only talks. If the streams differ in length the "
                               "shorter one is padded with silence at the end."),
                io.AudioEncoder.Input("audio_encoder",
                                      tooltip="A wav2vec2 model from Load Audio Encoder: wav2vec2-chinese-base_fp16 "
                                              "(InfiniteTalk/MultiTalk) or wav2vec2-base-960h."),
                io.Float.Input("fps", default=25.0, min=1.0, max=60.0, step=1.0,
                               tooltip="Video frame rate the features are aligned to (InfiniteTalk: 25)."),
                io.Int.Input("length", default=0, min=0, max=100001, step=1,
                             tooltip="Video frames (4n+1, e.g. 81). 0 = just enough to cover the longer stream "
                                     "(padded with silence to the next 4n+1)."),
                io.Combo.Input("feature_order", options=list(FEATURE_ORDERS), default="conv_features",
                               tooltip="conv_features: the original InfiniteTalk order (CNN features brought to the "
                                       "frame rate before the transformer), what the adapter expects. "
                                       "hidden_states: ComfyUI's order (every layer interpolated after)."),
            ],
            outputs=[
                DuplexAudioType.Output("duplex_audio", display_name="duplex_audio",
                                       tooltip="Talk and listen features per video frame [frames, layers, dim], "
                                               "activity per frame, fps: for the Beyond Monologue adapter and sampler."),
            ],
        )

    @classmethod
    def validate_inputs(cls, fps=None, length=None) -> bool | str:
        """Widget values; a linked value arrives as None and is checked when the node runs."""
        problem = _value_problem(fps, length)
        return str(problem) if problem else True

    @classmethod
    def execute(cls, talk, listen, audio_encoder, fps=25.0, length=0, feature_order="conv_features") -> io.NodeOutput:
        problem = _value_problem(fps, length)
        if problem:
            raise problem
        duplex = encode_streams(talk, listen, audio_encoder, fps, length, feature_order)
        return io.NodeOutput(duplex, ui=duplex_timeline_ui(cls, duplex, talk, listen))


def encode_streams(talk, listen, audio_encoder, fps: float, length: int, feature_order: str = "conv_features"):
    """Both AUDIO streams through ComfyUI's wav2vec2 AUDIO_ENCODER into a ``DuplexAudio`` (progress + Cancel).

    Raises:
        BMInputError: a bad AUDIO value (naming ``talk`` / ``listen``) or an encoder that is not wav2vec2.
    """
    talk_wave, talk_rate = check_audio(talk, "talk")
    listen_wave, listen_rate = check_audio(listen, "listen")
    return encode_with_audio_encoder(audio_encoder, talk_wave, talk_rate, listen_wave, listen_rate, fps, length,
                                     feature_order, progress_reporter())


NODES = [BMDualStreamEncode]
