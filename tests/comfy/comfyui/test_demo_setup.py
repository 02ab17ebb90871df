"""The demo's set-up steps without a server: model files (smoke generation, broken files), the notice,
the speakers' streams cut from the real conversation. (Its render runs in tests/server/test_workflows.py.)

In the comfy tier because it uses the session's generated smoke checkpoints (``smoke_models``).
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from beyond_monologue.audio.turns import parse_turns_text
from beyond_monologue.comfyui import demo
from beyond_monologue.weights import load_manifest
from beyond_monologue.weights.verify import Status

SMALL_FILES = {"wan22_ti2v_5b_fp16", "beyond_monologue_adapter_wan22_5b"}  # cheap to generate (a few MB each)


@pytest.fixture()
def models_dir(tmp_path, smoke_models):
    """A models folder holding the set's big smoke files (linked) and missing its two small ones."""
    models = tmp_path / "models"
    for entry in load_manifest().get_set(demo.DEMO_SET).entries:
        if entry.file.id not in SMALL_FILES:
            target = entry.file.target_path(models)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(entry.file.target_path(smoke_models))
    return models


def test_missing_files_become_smoke_checkpoints_and_the_notice_says_what_to_download(models_dir):
    state = demo.prepare_weights(models_dir, check_hash=False)
    assert {f.id for f in state.generated} == SMALL_FILES
    assert all(r.status is Status.SMOKE for r in state.reports if r.required)
    assert (models_dir / "model_patches" / "beyond_monologue_wan2.2_5B_adapter.safetensors").is_file()
    assert demo.demo_settings(state) == demo.SMOKE_SETTINGS and demo.demo_settings(state, full_size=True) is None

    notice = demo.smoke_notice(state, models_dir, demo.SMOKE_SETTINGS)
    assert "SMOKE WEIGHTS" in notice and "untrained noise" in notice and "not been published yet" in notice
    for report in state.reports:
        assert f"models/{report.file.folder}/{report.file.filename}" in notice
        if report.file.published:
            assert report.file.url in notice
    assert "32x32 px per avatar, 5 fps, 2 sampling steps" in notice
    assert "workflow's own 704x1280 px per avatar, 25 fps, 30 sampling steps" in notice  # read from the workflow


def test_a_broken_model_file_stops_the_demo_and_is_left_alone(models_dir):
    broken = models_dir / "diffusion_models" / "wan2.2_ti2v_5B_fp16.safetensors"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")  # header length 16, header cut short
    with pytest.raises(demo.DemoError, match="present but not usable") as error:
        demo.prepare_weights(models_dir, check_hash=False)
    assert str(broken) in str(error.value) and error.value.exit_code == 2
    assert broken.read_bytes() == b"\x10\x00\x00\x00\x00\x00\x00\x00{}"


def turn_mask(turns, samples: int, rate: int, grow_s: float = 0.0) -> np.ndarray:
    """Boolean [samples]: inside one of ``turns`` (each widened by ``grow_s`` on both sides)."""
    mask = np.zeros(samples, dtype=bool)
    for start, end in turns:
        mask[max(0, int((start - grow_s) * rate)):int((end + grow_s) * rate)] = True
    return mask


def test_speaker_streams_are_the_real_conversation_cut_by_its_turns(assets, tmp_path):
    first, second = demo.speaker_streams(assets, tmp_path)
    mix, rate = soundfile.read(str(assets / "sample.wav"), dtype="float32")
    turns = list(parse_turns_text((assets / "sample.rttm").read_text()).values())  # speakers by first turn
    for path, own in ((first, turns[0]), (second, turns[1])):
        stream, stream_rate = soundfile.read(str(path), dtype="float32")
        assert stream_rate == rate and stream.shape == mix.shape  # same clock as the conversation
        core = turn_mask(own, len(mix), rate, grow_s=-0.02)  # well inside its own turns (past the 10 ms ramps)
        near = turn_mask(own, len(mix), rate, grow_s=0.02)
        assert np.allclose(stream[core], mix[core], atol=1e-4)  # its own turns: the recording itself
        assert not stream[~near].any() and np.abs(mix[~near]).max() > 0.1  # elsewhere silence, not the mix
