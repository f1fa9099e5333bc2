#!/usr/bin/env bash
# The PyTorch + Hugging Face reference of benchmarks/throughput.py, in its own
# venv: benchmark-only dependencies, never installed into tflm's environment.
#   benchmarks/torch_reference/setup.sh [VENV_DIR]   (default /tmp/tflm_bench/torch_venv)
set -euo pipefail
VENV="${1:-/tmp/tflm_bench/torch_venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The CPU wheel: no CUDA libraries (the plain wheel pulls several GB of them).
"$VENV/bin/pip" install -q "torch==2.13.0+cpu" "transformers>=4.45,<6" safetensors numpy psutil
"$VENV/bin/python" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
