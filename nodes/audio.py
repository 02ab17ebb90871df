"""Nodes of the audio stage (category ``BeyondMonologue/audio``): split a conversation into streams."""

from __future__ import annotations

from comfy_api.latest import io

from ..beyond_monologue.audio.audio_checks import check_audio, make_audio
from ..beyond_monologue.audio.conversation import SPEAKER_CHOICES, speaker_index, split_by_turns, split_stereo
from ..beyond_monologue.audio.diarization import diarize
from ..beyond_monologue.audio.turns import parse_turns_text, turns_to_json
from .progress import progress_reporter
from .ui_payloads import conversation_timeline_ui

SPLIT_MODES = ("stereo", "diarize", "turns")


class BMSplitConversation(io.ComfyNode):
    """AUDIO conversation -> AUDIO talk (the avatar's speech), AUDIO listen (the interlocutor's), STRING turns."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="BMSplitConversation",
            display_name="BM Split Conversation",
            category="BeyondMonologue/audio",
            description=(
                "Splits one conversation recording into the avatar's own speech (talk) and the other "
                "person's speech (listen). Both outputs keep the input's length and sample rate; outside a "
                "speaker's turns its stream is silence and overlapping speech stays in both. Modes: stereo "
                "(one speaker per channel), diarize (mono mix, two voices found automatically), turns (your "
                "turns or an RTTM file)."),
            inputs=[
                io.Audio.Input("conversation", tooltip="The whole conversation: one stereo file with one speaker per "
                               "channel, or a mono recording of both speakers (any sample rate)."),
                io.Combo.Input("mode", options=list(SPLIT_MODES), default="stereo",
                               tooltip="stereo: left channel = speaker_1, right = speaker_2. "
                                       "diarize: find the two voices in a mono mix (Silero VAD + Resemblyzer "
                                       "speaker embeddings; each moment goes to one voice, so overlaps go to the "
                                       "closer one; a recording whose voices are as alike as one speaker's is refused or warned about); "
                                       "run BM Separate Speech first if music is under it. "
                                       "turns: mask the mono mix with the turns written below."),
                io.Combo.Input("avatar_speaker", options=list(SPEAKER_CHOICES), default="speaker_1",
                               tooltip="Which speaker the avatar is. stereo: speaker_1 = left channel. "
                                       "diarize and turns: speakers are numbered by their first turn in time."),
                io.String.Input("turns", multiline=True, default="",
                                tooltip="Only for mode 'turns': one turn per line, 'start_s end_s speaker' "
                                        "(e.g. '6.7 10.2 alice'), or an RTTM file's lines."),
            ],
            outputs=[
                io.Audio.Output("talk", display_name="talk", tooltip="The avatar's own speech (mono)."),
                io.Audio.Output("listen", display_name="listen", tooltip="The interlocutor's speech (mono)."),
                io.String.Output("turns_json", display_name="turns",
                                 tooltip='Turns per speaker as JSON: {"speaker": [[start_s, end_s], ...]}.'),
            ],
        )

    @classmethod
    def execute(cls, conversation, mode, avatar_speaker, turns="") -> io.NodeOutput:
        waveform, sample_rate = check_audio(conversation, "conversation")
        avatar = speaker_index(avatar_speaker)
        if mode == "stereo":
            talk, listen, found = split_stereo(waveform, sample_rate, avatar)
        elif mode == "diarize":
            found_turns = diarize(waveform, sample_rate, progress_reporter()).turns
            talk, listen, found = split_by_turns(waveform, sample_rate, found_turns, avatar, "conversation")
        else:
            found_turns = parse_turns_text(turns, "turns")
            talk, listen, found = split_by_turns(waveform, sample_rate, found_turns, avatar)
        return io.NodeOutput(make_audio(talk, sample_rate), make_audio(listen, sample_rate), turns_to_json(found),
                             ui=conversation_timeline_ui(cls, found, avatar, conversation))


NODES = [BMSplitConversation]
