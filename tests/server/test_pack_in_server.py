"""The pack loads in a real ComfyUI and its nodes execute through the HTTP API."""

import io
import json

import numpy as np
import pytest
from audio_fixtures import read_wav, write_wav

PACK_MODULE = "custom_nodes.comfyui-beyond-monologue"


def test_pack_imports_without_failure(comfy_server, client):
    assert client.system_stats()["system"]["comfyui_version"]
    log = comfy_server.log_text()
    for failure in ("IMPORT FAILED", "Cannot import", "Error while calling comfy_entrypoint", "Traceback"):
        assert failure not in log, f"{failure!r} in ComfyUI log:\n{comfy_server.log_tail()}"


def test_every_node_listed_with_category_description_and_tooltips(client, pack_nodes):
    info = client.object_info()
    ours = {name: entry for name, entry in info.items() if entry.get("python_module") == PACK_MODULE}
    assert set(ours) == set(pack_nodes), "object_info and the pack's extension disagree"
    for name, entry in ours.items():
        assert entry["category"].startswith("BeyondMonologue/"), name
        assert entry["description"], name
        for section in ("required", "optional"):
            for input_name, spec in entry["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{name}.{input_name} has no tooltip in /object_info"


def test_every_nodes_help_page_is_served_where_the_frontend_fetches_it(client, pack_nodes):
    # NodeHelpService (frontend 1.32): /extensions/<pack folder>/docs/<node id>.md after the
    # <node id>/<locale>.md variant; the pack folder is the second part of python_module
    import urllib.request
    from pathlib import Path

    folder = PACK_MODULE.split(".", 1)[1]
    docs = Path(__file__).resolve().parents[2] / "web" / "docs"
    for node_id in pack_nodes:
        url = f"{client.base_url}/extensions/{folder}/docs/{node_id}.md"
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200, url
            assert answer.read().decode() == (docs / f"{node_id}.md").read_text(), url


@pytest.fixture(scope="module")
def stereo_conversation(assets, tmp_path_factory):
    """The real two-speaker sample.wav made stereo with its ground-truth turns: left = speaker90, right = speaker91."""
    from beyond_monologue.audio.turns import parse_turns_text, turns_to_mask

    mono, sr = read_wav(assets / "sample.wav")  # mono: [T]
    turns = parse_turns_text((assets / "sample.rttm").read_text())
    masks = [turns_to_mask(turns[s], len(mono), sr).numpy() for s in ("speaker90", "speaker91")]
    stereo = np.stack([mono * masks[0], mono * masks[1]], axis=1)
    path = tmp_path_factory.mktemp("audio") / "conversation_stereo.wav"
    write_wav(path, stereo, sr)
    return path, stereo, sr


def test_split_conversation_runs_through_the_api(client, stereo_conversation):
    path, stereo, sr = stereo_conversation
    name = client.upload_file(path)
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
        "2": {"class_type": "BMSplitConversation",
              "inputs": {"conversation": ["1", 0], "mode": "stereo", "avatar_speaker": "speaker_2", "turns": ""}},
        "3": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 0], "filename_prefix": "test/talk"}},
        "4": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 1], "filename_prefix": "test/listen"}},
        "5": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    result = client.run(prompt, timeout_s=120)
    assert result.status == "success", result.error_message()

    import av  # ComfyUI's own audio decoder

    def decode(entry):
        data = client.view(entry["filename"], entry["subfolder"], entry["type"])
        with av.open(io.BytesIO(data)) as container:
            frames = [f.to_ndarray() for f in container.decode(audio=0)]
            rate = container.streams.audio[0].rate
        samples = np.concatenate(frames, axis=1)[0]
        if samples.dtype.kind == "i":  # FLAC decodes to integer PCM
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
        return samples, rate

    talk, talk_sr = decode(result.outputs["3"]["audio"][0])
    listen, _ = decode(result.outputs["4"]["audio"][0])
    assert talk_sr == sr and len(talk) == len(stereo) and len(listen) == len(stereo)
    turns = json.loads(result.outputs["5"]["text"][0])
    # avatar = speaker_2 = right channel = speaker91: each stream is its channel inside that speaker's
    # found turns (FLAC keeps the 16-bit samples) and silence between them, which loses almost no energy
    from beyond_monologue.audio.turns import turns_to_mask

    for stream, channel, speaker in ((talk, stereo[:, 1], "speaker_2"), (listen, stereo[:, 0], "speaker_1")):
        inside = turns_to_mask(turns[speaker], len(stereo), sr).numpy()
        assert np.max(np.abs(stream[inside] - channel[inside])) < 1e-3
        assert float(np.sum(stream.astype(np.float64) ** 2)) > 0.99 * float(np.sum(channel.astype(np.float64) ** 2))

    assert set(turns) == {"speaker_1", "speaker_2"}
    first_start = min(s for s, _ in turns["speaker_1"])
    assert first_start == pytest.approx(6.69, abs=0.1)  # speaker90's first ground-truth turn


def test_bad_input_is_a_node_error_and_the_server_stays_up(client, assets):
    name = client.upload_file(assets / "sample.wav")  # mono: stereo mode must refuse it
    prompt = {
        "1": {"class_type": "LoadAudio", "inputs": {"audio": name}},
        "2": {"class_type": "BMSplitConversation",
              "inputs": {"conversation": ["1", 0], "mode": "stereo", "avatar_speaker": "speaker_1", "turns": ""}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 2]}},
    }
    result = client.run(prompt, timeout_s=120)
    assert result.status == "error"
    assert "stereo mode needs 2" in result.error_message() and "Fix:" in result.error_message()
    assert client.system_stats()  # still serving


def test_a_server_started_from_a_process_that_ignores_sigint_still_stops_cleanly(tmp_path):
    """A child inherits an ignored SIGINT (and Python then installs no KeyboardInterrupt handler); the
    launcher gives ComfyUI the default back, so ``stop()``'s SIGINT still reaches its clean shutdown."""
    import signal

    from beyond_monologue.comfyui.comfy_launcher import ComfyServer

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server = ComfyServer(tmp_path / "base")
        server.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert server.stop(timeout_s=30.0) == 0, server.log_tail()
    assert "Stopped server" in server.log_text()
