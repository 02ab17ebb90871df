"""The pack's requirements beside ComfyUI's own: they resolve without conflict, also next to onnxruntime-gpu.

Issue 15 item 1. A fresh virtual environment's pip resolves ComfyUI's ``requirements.txt`` together
with the pack's (``pip install --dry-run --ignore-installed --report``: the full resolver on PyPI's
real metadata; a conflict fails the resolution), once as a plain install and once with
``onnxruntime-gpu`` (which shares the ``onnxruntime`` module name: a pack that requires
``onnxruntime`` makes pip install both, and one overwrites the other). The wheels themselves are not
installed here (ComfyUI's CUDA torch alone is ~3 GB); the environment this suite runs in was
installed by ``scripts/setup_env.sh`` exactly as ComfyUI-Manager installs the pack (ComfyUI's
requirements, then ``requirements.txt``, then ``install.py``), and ``pip check`` runs on it.
Needs PyPI (the only network the project's machines have).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMFY_REQUIREMENTS = ROOT / ".comfyui" / "ComfyUI" / "requirements.txt"
# install.py's --no-deps wheels: their metadata asks for what the pack never imports (see install.py)
NO_DEPS = ("resemblyzer", "facenet-pytorch")
NEVER_REQUIRED = ("onnxruntime", "jsonschema", "webrtcvad", "scikit-learn", "librosa", "numba")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def fresh_pip(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    return venv / "bin" / "pip"


def _resolve(pip: Path, tmp_path: Path, *extra: str) -> set[str]:
    report = tmp_path / "report.json"
    done = subprocess.run([str(pip), "install", "--dry-run", "--ignore-installed", "--quiet", "--disable-pip-version-check",
                           "--report", str(report), "-r", str(COMFY_REQUIREMENTS), "-r", str(ROOT / "requirements.txt"),
                           *extra], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.read_text())["install"]}


def test_the_packs_requirements_name_no_dropped_or_module_clashing_dependency():
    names = [_name(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert names and not set(names) & set(NEVER_REQUIRED)
    pinned = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line and not line.startswith("#")]
    assert pinned == ["BS-RoFormer==0.3.10"]  # the one pin a file layout demands (requirements.txt says why)


def test_requirements_resolve_beside_comfyui_with_and_without_onnxruntime_gpu(fresh_pip, tmp_path):
    plain = _resolve(fresh_pip, tmp_path)
    assert {"torch", "silero-vad", "bs-roformer", "safetensors", "huggingface-hub"} <= plain
    assert "onnxruntime" not in plain and "jsonschema" not in plain
    with_gpu = _resolve(fresh_pip, tmp_path, "onnxruntime-gpu")
    assert "onnxruntime-gpu" in with_gpu and "onnxruntime" not in with_gpu  # one provider of the module, not two


def test_pip_check_of_the_installed_environment_reports_only_the_no_deps_wheels():
    done = subprocess.run([sys.executable, "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=300)
    problems = [line for line in done.stdout.splitlines() if line.strip()]
    assert all(_name(line) in NO_DEPS for line in problems), problems
