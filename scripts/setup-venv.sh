#!/usr/bin/env bash
# The project's Python venv for the reference scripts (golden numbers) and the PyTorch peer benches.
# Usage: scripts/setup-venv.sh [VENV_DIR]   (default .venv; needs python3 ≥ 3.10 and PyPI access)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -r scripts/requirements.txt
"$venv/bin/python" -c "import torch, numpy, scipy; print('venv ok:', torch.__version__, numpy.__version__, scipy.__version__)"
