"""The audio-stage nodes in-process with ComfyUI's own wav2vec2 loader and model folders."""

import json

import numpy as np
import pytest
import torch
from audio_fixtures import audio_dict
from safetensors.torch import save_file


@pytest.fixture(scope="module")
def audio_encoder(wav2vec2_base_file):
    """ComfyUI's AUDIO_ENCODER from the random full-size base file, loaded the way AudioEncoderLoader does."""
    import comfy.audio_encoders.audio_encoders
    import comfy.model_patcher  # audio_encoders.py uses it without importing it (ComfyUI 0.3.75)
    import comfy.utils

    sd = comfy.utils.load_torch_file(str(wav2vec2_base_file), safe_load=True)
    return comfy.audio_encoders.audio_encoders.load_audio_encoder_from_sd(sd)


def test_comfy_loader_takes_the_base_file(audio_encoder):
    model = audio_encoder.model
    assert len(model.encoder.layers) == 12 and model.encoder.layer_norm.weight.shape == (768,)
    assert model.do_normalize is False


def test_encode_node_on_real_speech(pack_nodes, pack, audio_encoder, librivox):
    node = pack_nodes["BMDualStreamEncode"]
    talk = audio_dict(librivox[4][:40000], 16000)  # 2.5 s of the LibriVox reader
    listen_wave = torch.from_numpy(librivox[1][:30000]).unsqueeze(0).repeat(2, 1)  # stereo, shorter
    import torchaudio

    listen = audio_dict(torchaudio.functional.resample(listen_wave, 16000, 44100), 44100)
    duplex = node.execute(talk=talk, listen=listen, audio_encoder=audio_encoder, fps=25.0, length=0,
                          feature_order="conv_features").result[0]
    assert isinstance(duplex, pack.beyond_monologue.audio.duplex_audio.DuplexAudio)
    assert duplex.talk.shape == duplex.listen.shape == (65, 12, 768)  # 2.5 s -> 63 frames -> next 4n+1
    assert duplex.encoder == "wav2vec2 12x768" and duplex.fps == 25.0
    assert float(duplex.talk_activity.max()) > 0.9
    assert float(duplex.listen_activity[-8:].max()) < 0.1  # listen ended at 1.875 s: padded silence
    first, rest = duplex.latent_windows("talk")
    assert first.shape == (5, 12, 768) and rest.shape == (16, 8, 12, 768)
    assert torch.isfinite(duplex.talk).all()


def test_hidden_states_order_matches_comfyui_native_pipeline(pack, audio_encoder, librivox):
    """ComfyUI's order = AudioEncoderEncode, then nodes_wan.linear_interpolation of layers 1..12."""
    from comfy_extras.nodes_wan import linear_interpolation

    features = pack.beyond_monologue.audio.speech_features
    wav = torch.from_numpy(librivox[3][: features.samples_for_frames(41, 25)])
    native = audio_encoder.encode_audio(wav.view(1, 1, -1), 16000)["encoded_audio_all_layers"]
    layers = torch.stack(native, dim=0).squeeze(1)[1:]  # [12, T50, 768]
    expected = linear_interpolation(layers, input_fps=50, output_fps=25, output_len=41).movedim(0, 1)
    ours = features.wav2vec2_frame_features(audio_encoder.model, wav, 41, "hidden_states")
    assert torch.allclose(ours, expected.float(), atol=1e-4)

    # InfiniteTalk order: with as many frames as encoder steps the resampling is the identity
    steps = layers.shape[1]
    conv = features.wav2vec2_frame_features(audio_encoder.model, wav, steps, "conv_features")
    assert torch.allclose(conv, layers.movedim(0, 1).float(), atol=1e-4)
    at_25 = features.wav2vec2_frame_features(audio_encoder.model, wav, 41, "conv_features")
    assert at_25.shape == ours.shape and not torch.allclose(at_25, ours, atol=1e-3)


def test_encode_node_validation_and_bad_inputs(pack_nodes, pack, librivox):
    node = pack_nodes["BMDualStreamEncode"]
    assert node.validate_inputs(fps=25.0, length=81) is True
    assert node.validate_inputs(fps=25.0, length=0) is True
    assert "4n+1" in node.validate_inputs(fps=25.0, length=80)
    assert "fps" in node.validate_inputs(fps=0.5, length=0)
    assert node.validate_inputs(fps=None, length=None) is True  # linked (e.g. from a Float primitive): checked at run

    class NotWav2Vec2:
        model = torch.nn.Linear(2, 2)

    speech = audio_dict(librivox[0][:16000], 16000)
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match="audio_encoder"):
        node.execute(talk=speech, listen=speech, audio_encoder=NotWav2Vec2())
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match=r"^fps: .*Fix:"):  # a linked value out of range
        node.execute(talk=speech, listen=speech, audio_encoder=NotWav2Vec2(), fps=0.5)
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match="3 channels"):
        node.execute(talk=audio_dict(np.zeros((3, 16000), np.float32), 16000), listen=speech,
                     audio_encoder=NotWav2Vec2())


@pytest.fixture()
def separator_file(pack, tmp_path):
    """The reduced smoke Mel-Band RoFormer in a temporary diffusion_models folder."""
    import folder_paths

    state, metadata = pack.beyond_monologue.audio.melband_roformer.smoke_state_dict(seed=0)
    save_file(state, str(tmp_path / "MelBandRoformer_smoke.safetensors"), metadata=metadata)
    save_file({"blocks.0.weight": torch.zeros(2)}, str(tmp_path / "not_a_separator.safetensors"))
    folder_paths.add_model_folder_path("diffusion_models", str(tmp_path))
    yield "MelBandRoformer_smoke.safetensors"
    folder_paths.folder_names_and_paths["diffusion_models"][0].remove(str(tmp_path))


def test_separate_node_keeps_length_rate_channels_and_reports_progress(pack_nodes, pack, separator_file, librivox):
    import comfy.model_management
    import comfy.utils

    node = pack_nodes["BMSeparateSpeech"]
    assert node.validate_inputs(model_name=separator_file) is True
    assert "not in ComfyUI's models/diffusion_models" in node.validate_inputs(model_name="missing.safetensors")
    known = node.validate_inputs(model_name="MelBandRoformer_fp16.safetensors")  # the manifest's file, not present here
    assert "https://huggingface.co/Kijai/MelBandRoFormer_comfy" in known and "speech-separation" in known
    assert "not a .safetensors" in node.validate_inputs(model_name="MelBandRoformer.ckpt")

    t = np.arange(33075) / 22050.0
    music = 0.05 * np.sin(2 * np.pi * 196.0 * t) * np.exp(-3 * ((2 * t) % 1))
    import torchaudio

    voice = torchaudio.functional.resample(torch.from_numpy(librivox[2][:24000]), 16000, 22050)[:33075].numpy()
    mix = np.stack([voice + music, 0.8 * voice + music]).astype(np.float32)  # 1.5 s stereo at 22.05 kHz

    updates = []
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    try:
        speech, background = node.execute(audio=audio_dict(mix, 22050), model_name=separator_file,
                                           chunk_seconds=1.0, overlaps=2).result
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
    assert speech["sample_rate"] == background["sample_rate"] == 22050
    assert speech["waveform"].shape == background["waveform"].shape == (1, 2, 33075)
    assert torch.allclose(speech["waveform"] + background["waveform"], torch.from_numpy(mix)[None], atol=1e-5)
    assert updates and updates[-1][0] == updates[-1][1] >= 3  # one update per chunk

    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            node.execute(audio=audio_dict(mix, 22050), model_name=separator_file, chunk_seconds=1.0, overlaps=2)
    finally:
        comfy.model_management.interrupt_current_processing(False)

    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match="not a Mel-Band RoFormer"):
        node.execute(audio=audio_dict(mix, 22050), model_name="not_a_separator.safetensors")


def test_split_node_diarizes_the_real_conversation_at_48_khz(pack_nodes, conversation):
    import torchaudio

    mono, rate, _ = conversation
    stereo = torchaudio.functional.resample(torch.from_numpy(mono), rate, 48000).repeat(2, 1)
    talk, listen, turns_json = pack_nodes["BMSplitConversation"].execute(
        conversation=audio_dict(stereo, 48000), mode="diarize", avatar_speaker="speaker_2").result
    assert talk["sample_rate"] == listen["sample_rate"] == 48000
    assert talk["waveform"].shape == listen["waveform"].shape == (1, 1, stereo.shape[1])
    turns = json.loads(turns_json)
    assert set(turns) == {"speaker_1", "speaker_2"}
    assert turns["speaker_1"][0][0] == pytest.approx(6.7, abs=0.25)  # the first words of the conversation
    first_s1 = round(turns["speaker_1"][0][0] * 48000) + 4800
    assert float(talk["waveform"][0, 0, first_s1:first_s1 + 2400].abs().max()) == 0.0  # speaker_1 talks: talk silent
    assert float(listen["waveform"][0, 0, first_s1:first_s1 + 2400].abs().max()) > 0.0
