#!/usr/bin/env bash
# The project's test command (README.md, .ci/run): prepares the environment on a fresh machine
# (idempotent: fast when already done) and runs every test tier. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh tests/unit` for the seconds-long unit tier only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${BM_VENV:-$ROOT/.venv}
bash "$ROOT/scripts/setup_env.sh"
"$VENV/bin/python" "$ROOT/scripts/fetch_assets.py"
cd "$ROOT"
"$VENV/bin/python" -m ruff check .
if [ $# -eq 0 ]; then set -- tests; fi
exec "$VENV/bin/python" -m pytest "$@"
