#!/usr/bin/env bash
# The project's main command (README.md): on a fresh machine, set up the environment, fetch the
# real inputs, start ComfyUI with this pack and render the dyadic conversation example into
# demo_output/. With the real model files it renders with them; otherwise with generated smoke
# weights (untrained noise), and it says so and lists the files to download.
# Extra arguments go to `python -m beyond_monologue.comfyui.demo` (--help lists them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BM_VENV:-$ROOT/.venv}
bash "$ROOT/scripts/setup_env.sh"
"$VENV/bin/python" "$ROOT/scripts/fetch_assets.py"
cd "$ROOT"
exec "$VENV/bin/python" -m beyond_monologue.comfyui.demo "$@"
