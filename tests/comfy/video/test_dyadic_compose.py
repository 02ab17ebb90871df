"""BM Dyadic Compose as ComfyUI runs it: IMAGE and VIDEO outputs, conversation audio muxed, clear errors."""

import pytest
import torch


def test_compose_node_outputs_frames_and_video_with_the_conversation(pack_nodes):
    a = torch.rand(21, 32, 40, 3)
    b = torch.rand(20, 64, 48, 3)  # taller and one frame shorter
    conversation = {"waveform": torch.rand(1, 2, 32000) - 0.5, "sample_rate": 16000}  # 2 s, stereo
    frames, video = pack_nodes["BMDyadicCompose"].execute(
        image_a=a, image_b=b, conversation=conversation, layout="side_by_side", length_rule="hold_last_frame",
        fps=25.0, gap=0).args
    assert frames.shape == (21, 64, 80 + 48, 3)
    parts = video.get_components()
    assert parts.frame_rate == 25 and parts.images.shape == frames.shape
    assert parts.audio["waveform"].shape == (1, 2, 21 * 16000 // 25)
    assert torch.equal(parts.audio["waveform"], conversation["waveform"][..., :13440])


def test_compose_node_ends_with_the_conversation(pack_nodes):
    a, b = torch.rand(153, 8, 8, 3), torch.rand(153, 8, 8, 3)  # 4n+1 frames rendered for 30 s at 5 fps
    conversation = {"waveform": torch.rand(1, 1, 480000) - 0.5, "sample_rate": 16000}  # 30.0 s
    frames, video = pack_nodes["BMDyadicCompose"].execute(
        image_a=a, image_b=b, conversation=conversation, layout="side_by_side", length_rule="hold_last_frame",
        fps=5.0, gap=0).args
    assert frames.shape[0] == 150 and video.get_components().images.shape[0] == 150  # 30.0 s
    assert torch.equal(frames[-1, :, :8], a[149])
    assert torch.equal(video.get_components().audio["waveform"], conversation["waveform"])


def test_compose_node_refuses_clips_of_very_different_length(pack_nodes, pack):
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match=r"image_a.*Fix:"):
        pack_nodes["BMDyadicCompose"].execute(
            image_a=torch.rand(10, 8, 8, 3), image_b=torch.rand(81, 8, 8, 3),
            conversation={"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000},
            layout="stacked", length_rule="hold_last_frame", fps=25.0, gap=0)


def test_compose_validate_inputs(pack_nodes):
    node = pack_nodes["BMDyadicCompose"]
    assert node.validate_inputs(fps=25.0, gap=0) is True
    assert "gap" in node.validate_inputs(fps=25.0, gap=-2)
    assert "fps" in node.validate_inputs(fps=500.0, gap=0)
    assert node.validate_inputs(fps=None, gap=None) is True  # linked (e.g. from a Float primitive): checked at run


def test_compose_node_checks_a_linked_fps_when_it_runs(pack_nodes, pack):
    with pytest.raises(pack.beyond_monologue.errors.BMInputError, match=r"^fps: .*Fix:"):
        pack_nodes["BMDyadicCompose"].execute(
            image_a=torch.rand(9, 8, 8, 3), image_b=torch.rand(9, 8, 8, 3),
            conversation={"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000},
            layout="stacked", length_rule="hold_last_frame", fps=0.0, gap=0)


def test_compose_node_previews_the_video_as_a_playable_temp_mp4(pack_nodes):
    import os

    import av
    import folder_paths

    a, b = torch.rand(13, 32, 32, 3), torch.rand(13, 32, 32, 3)
    conversation = {"waveform": torch.rand(1, 1, 8000) - 0.5, "sample_rate": 16000}  # 0.5 s = 12.5 frames
    output = pack_nodes["BMDyadicCompose"].execute(
        image_a=a, image_b=b, conversation=conversation, layout="stacked", length_rule="hold_last_frame",
        fps=25.0, gap=0)
    frames = output.args[0]
    preview = output.ui.as_dict()
    assert preview["animated"] == (True,)  # what Save Video sends: the frontend shows a player
    (entry,) = preview["images"]
    assert entry["type"] == "temp" and entry["filename"].endswith(".mp4")
    path = os.path.join(folder_paths.get_temp_directory(), entry["subfolder"], entry["filename"])
    with av.open(path) as container:
        video_frames = sum(1 for _ in container.decode(video=0))
        assert container.streams.audio  # the conversation is in the preview too
    assert video_frames == frames.shape[0]
    os.remove(path)
