"""Silero VAD as the pack runs it: streaming hop by hop with Cancel checks between blocks."""

import numpy as np
import pytest
import torch

from beyond_monologue.audio.vad import VAD_BLOCK_HOPS, VAD_HOP, frame_activity, load_vad, speech_probabilities


def test_blockwise_streaming_equals_silero_audio_forward_and_checks_between_blocks(librivox):
    length = 2 * VAD_BLOCK_HOPS * VAD_HOP + 700  # two blocks (about 60 s) and a part hop
    voice = torch.from_numpy(np.resize(np.concatenate([librivox[0], librivox[1]]), length))
    calls = []
    ours = speech_probabilities(voice, lambda: calls.append(1))
    reference = load_vad().audio_forward(voice.view(1, -1), 16000)[0]
    assert ours.shape == reference.shape == (-(-voice.shape[0] // VAD_HOP),)
    assert torch.equal(ours, reference.float())
    assert len(calls) == 3  # two full blocks and the remainder
    assert ours.max() > 0.9  # real speech is found


def test_audio_shorter_than_one_hop_is_padded_not_refused():
    assert speech_probabilities(torch.zeros(100)).shape == (1,)
    assert frame_activity(torch.zeros(1, 800), 16000, num_frames=1, fps=60.0).shape == (1,)


def test_cancel_raised_between_blocks_stops_the_pass(librivox):
    voice = torch.from_numpy(np.resize(librivox[0], 2 * VAD_BLOCK_HOPS * VAD_HOP))

    class Cancelled(Exception):
        pass

    def cancel():
        raise Cancelled

    with pytest.raises(Cancelled):
        speech_probabilities(voice, cancel)
