#!/usr/bin/env bash
# On a machine WITH an NVIDIA GPU: builds the CUDA engine, runs the whole parity set on the GPU in bf16 (every
# float tensor must keep cosine ≥ 0.999 against the f32 reference, integer tensors ≥ 99 % agreement), holds every
# stage's booked activation headroom to the device memory it really takes (the driver's memory-pool peak), then
# prints the benchmark table on the GPU. Paste the table into README's Performance section; for the side-by-side
# with PyTorch on the same GPU run `DEVICE=cuda:0 RETAKE=target/cuda/release/retake PYTHON=<python with CUDA
# torch and diffsynth==2.1.12> bench/compare.sh`.
#   scripts/gpu-check.sh            # device cuda:0
#   DEVICE=cuda:1 scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
device=${DEVICE:-cuda:0}
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}
fi
scripts/build-cuda.sh
cu13=$PWD/target/cuda-toolchain/cu13
# The real driver's libcuda.so.1 must win over the link-time stub: only the wheel libraries go on the path.
export LD_LIBRARY_PATH=$cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CUDA_HOME=$cu13 PATH=$cu13/bin:$PATH CUDARC_CUDA_VERSION=13000

echo "=== parity on $device, bf16 (cosine >= 0.999 against the f32 reference) ==="
RETAKE_PARITY_DEVICE=$device RETAKE_PARITY_DTYPE=bf16 \
  scripts/build-cuda.sh test --release -p retake-engine --features cuda --test parity -- --nocapture

echo "=== activation headroom on $device, bf16 (measured device memory <= booked, stage by stage) ==="
RETAKE_HEADROOM_DEVICE=$device \
  scripts/build-cuda.sh test --release -p retake-engine --features cuda --test headroom -- --nocapture real_geometry

echo "=== benchmark on $device ==="
target/cuda/release/retake bench --device "$device" --json target/bench-cuda.json
