"""Long-form sampling memory stays flat: 6 windows peak within 15% of 2 windows (measured like bench/sampling_memory.py)."""

import sys

from beyond_monologue.comfyui.comfy_launcher import PACK_ROOT

sys.path.insert(0, str(PACK_ROOT / "bench"))
from peak_rss import run_child  # bench/ is not a package

BENCH = PACK_ROOT / "bench" / "sampling_memory.py"


def measure(windows: int) -> dict:
    return run_child(BENCH, ["--child", str(windows), "--size", "8"], timeout_s=300)


def test_six_windows_peak_within_15_percent_of_two_windows():
    two, six = measure(2), measure(6)
    assert (two["latents"], six["latents"]) == (39, 111)  # 21 + 18 per further window
    assert six["output_mib"] > 2.5 * two["output_mib"]  # the video itself did grow
    # measured: 32.8 MiB (2 windows) vs 33.4 MiB (6 windows) peak RSS added by the run
    assert six["peak_mib"] <= 1.15 * two["peak_mib"], (two, six)
