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


@pytest.mark.parametrize("recording", ["librivox", "sample.wav"])
def test_onnx_and_torchscript_backends_give_the_same_probabilities_on_real_speech(recording, librivox, conversation):
    # measured: max |onnx - torchscript| = 1.2e-6 (LibriVox) and 2.0e-6 (sample.wav); 1e-4 leaves room
    # for other CPUs' float rounding while staying far below anything that moves a 0.5 threshold
    voice = torch.from_numpy(np.concatenate(librivox) if recording == "librivox" else conversation[0])
    onnx = speech_probabilities(voice, backend="onnx")
    script = speech_probabilities(voice, backend="torchscript")
    assert onnx.shape == script.shape
    assert (onnx - script).abs().max() < 1e-4
    assert onnx.max() > 0.9 and onnx.min() < 0.1  # real speech and real pauses were both seen
    assert torch.equal(onnx > 0.5, script > 0.5)


def test_without_onnxruntime_the_wheels_torchscript_model_is_used():
    import importlib.util

    from beyond_monologue.audio import vad

    real_find_spec = importlib.util.find_spec
    vad.vad_backend.cache_clear()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(importlib.util, "find_spec",
                          lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a))
            assert vad.vad_backend() == "torchscript"
            assert isinstance(vad.load_vad(), torch.jit.ScriptModule)
    finally:
        vad.vad_backend.cache_clear()
    assert vad.vad_backend() == "onnx"  # this environment has onnxruntime


def test_an_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="torchscript"):
        load_vad("tensorrt")
