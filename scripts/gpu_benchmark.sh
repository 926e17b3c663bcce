#!/usr/bin/env bash
# GPU benchmark: engine throughput and latency per fuser on a CUDA machine.
#   bash scripts/gpu_benchmark.sh            (from the repository root)
# Runs test/test_cuda.py first where pytest is installed (CUDA graphs vs eager, half
# precision vs CPU); the benchmark also compares the learned fuser's GPU output with the
# CPU float32 path's over 30 frames of one stream (--compare-cpu: grey levels, PSNR).
# Installs the CUDA build of torch into .venv-gpu (or uses TVF_PYTHON if it
# already has CUDA torch), then prints and writes output/benchmark_gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${TVF_PYTHON:-}
if [ -z "$python" ]; then
  if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    python=python3
  else
    TVF_VENV=.venv-gpu TVF_TORCH=cuda python3 bootstrap.py tvf --help >/dev/null
    python=.venv-gpu/bin/python
  fi
fi
"$python" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda,
      "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
PY
tests=passed
if "$python" -c 'import pytest' 2>/dev/null; then  # the CUDA path's own tests first
  PYTHONPATH=. "$python" -m pytest -q -p no:cacheprovider test/test_cuda.py || tests=FAILED
else
  echo "pytest is not installed: test/test_cuda.py did not run"
fi
PYTHONPATH=. "$python" -m thermal_visible_fusion benchmark-core --device cuda \
  --sizes 1280x720,640x480,320x240 --frames 200 --compare-cpu 30 \
  --json output/benchmark_gpu.json
if [ "$tests" != passed ]; then echo "test/test_cuda.py FAILED (above)"; exit 1; fi
