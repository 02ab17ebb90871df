"""Peak resident memory of one piece of work, measured in a fresh child process (Linux ``/proc``).

How: Linux's peak resident set size of the process (``VmHWM`` in ``/proc/self/status``) is reset just
before the work by writing ``5`` to ``/proc/self/clear_refs``; the work's peak is ``VmHWM`` after it
minus ``VmRSS`` before it. Children run with glibc's mmap threshold pinned
(``MALLOC_MMAP_THRESHOLD_``) so that freed tensors go back to the system and the peak counts only
what was alive at once, and with one OpenMP thread (deterministic, fair on a shared machine).
Used by ``bench/video_decode_memory.py``, ``bench/sampling_memory.py`` and their bounded tests.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}


def status_kib(key: str) -> int:
    """A ``/proc/self/status`` entry in KiB (``VmRSS``, ``VmHWM``)."""
    return int(re.search(key + r":\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def peak_mib(work: Callable[[], object]) -> tuple[object, float]:
    """Run ``work()``; return its result and the peak resident memory it added, in MiB."""
    gc.collect()
    before = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    result = work()
    return result, (status_kib("VmHWM") - before) / 1024


def run_child(script: Path, args: list[str], timeout_s: float = 600) -> dict:
    """Run ``python script *args`` with :data:`CHILD_ENV`; return the JSON object its last stdout line prints."""
    done = subprocess.run([sys.executable, str(script), *args], env=dict(os.environ, **CHILD_ENV), capture_output=True,
                          text=True, timeout=timeout_s)
    if done.returncode:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
