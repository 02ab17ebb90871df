#!/usr/bin/env bash
# The whole GPU suite in one command (< 8 min on one H100; `--quick` < 2 min); see bench/gpu_suite.py. Extra args pass through.
cd "$(dirname "$0")/.." && exec "${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}" bench/gpu_suite.py --json bench/results/gpu_suite.json --markdown bench/results/gpu_suite.md --publish "$@"
