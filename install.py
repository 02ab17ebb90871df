"""Install step run by ComfyUI-Manager (and scripts/setup_env.sh) after requirements.txt.

Resemblyzer (its bundled speaker-encoder weights ``resemblyzer/pretrained.pt`` for BM Split
Conversation's diarize mode) is installed with ``--no-deps``: its metadata asks for the
``webrtcvad`` sdist (needs a C compiler), the ``typing`` backport (breaks Python 3) and librosa.
The pack never imports Resemblyzer: beyond_monologue/audio/voice_encoder.py rebuilds its network
in torch and reads only the weight file (checked against the wheel's RECORD, ``weights_only``).

facenet-pytorch (MTCNN face detection with its weights inside the wheel, and the InceptionResnetV1
network of BM Evaluate Avatar's identity metric) is installed with ``--no-deps`` too: its metadata
pins ``torch<2.3`` and ``torchvision<0.18``, while it imports only torch, torchvision, numpy,
Pillow and requests, which ComfyUI already has.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

NO_DEPS = {"resemblyzer": "0.1.4", "facenet-pytorch": "2.6.0"}


def main() -> int:
    for package, version in NO_DEPS.items():
        try:
            if metadata.version(package) == version:
                continue
        except metadata.PackageNotFoundError:
            pass
        print(f"[beyond-monologue] installing {package}=={version} (--no-deps)", flush=True)
        code = subprocess.call([sys.executable, "-m", "pip", "install", "--no-deps", f"{package}=={version}"])
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
