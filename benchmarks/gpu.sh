#!/usr/bin/env bash
# The CUDA checks in one go, for a machine with a GPU: the test suite on CUDA, then the cost benchmark at the
# sizes users bring (benchmarks/bench_scale.py) with the figures written to $OUT (default results/gpu).
#
#   bash benchmarks/gpu.sh                 # from the repository root; OUT=dir to choose the folder
#
# The code is device-agnostic: tests that need CUDA run when it is available (tests/test_devices.py), the rest
# run as on CPU. Nothing here downloads weights: the CIFAR-10 and CelebA-HQ models are the published DDPM
# configurations with random weights.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
mkdir -p "$OUT"
python -c "import torch, sys; ok = torch.cuda.is_available(); print('cuda', ok, torch.cuda.get_device_name() if ok else ''); sys.exit(0 if ok else 1)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" || true
python -m pytest -q -x -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" | tail -3
python benchmarks/bench_scale.py --device cuda --models mnist cifar10 celebahq --particles 1 4 16 64 --steps 5 \
    --chunk-size 4 --out "$OUT/scale.jsonl" | tee "$OUT/scale.md" | tail -40
echo "figures in $OUT"
