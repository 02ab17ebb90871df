"""The decode's working memory does not grow with the video's length (measured like bench/video_decode_memory.py)."""

import sys

from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT

sys.path.insert(0, str(PACK_ROOT / "bench"))
from peak_rss import run_child  # bench/ is not a package

BENCH = PACK_ROOT / "bench" / "video_decode_memory.py"


def working_mib(num_latents: int) -> dict:
    return run_child(BENCH, ["--child", "bm_stream", str(num_latents), "--size", "8", "--dim", "4"], timeout_s=300)


def test_four_times_more_latents_need_no_more_working_memory():
    short, long = working_mib(8), working_mib(32)
    assert long["frames"] == 125 and long["output_mib"] > 3.5 * short["output_mib"]
    # peak RSS of the decode minus its output IMAGE (ComfyUI's VAE.decode: x2.4 from 16 to 64 latents in the bench)
    assert long["working_mib"] <= 1.15 * short["working_mib"], (short, long)
