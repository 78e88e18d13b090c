#!/usr/bin/env bash
# Builds the engine (and the `retake` CLI) with the `cuda` feature on a machine WITHOUT a GPU or a system CUDA
# toolkit, using NVIDIA's CUDA 13.0 wheels from PyPI (see docs/candle.md §1 for why these pins):
#   - nvcc/ptxas/cicc/headers/runtime/cuBLAS/cuRAND come from pip wheels into target/cuda-toolchain/venv;
#   - the wheels ship only versioned sonames, so unversioned link names are added;
#   - there is no libcuda.so on PyPI, so a link-only stub (never shipped, never loaded on a GPU host) is
#     generated from cudarc's driver symbol list.
# Output: target/cuda/release/retake. Arguments replace the default cargo command, with the same toolchain and
# environment (so nothing is rebuilt twice), e.g. the parity tests for a GPU host without cargo:
#   scripts/build-cuda.sh test --release -p retake-engine --features cuda --test parity --no-run
# On the GPU host run it with the real driver and the wheel libraries:
#   LD_LIBRARY_PATH=target/cuda-toolchain/cu13/lib target/cuda/release/retake ... --device cuda:0
# Env: CUDA_COMPUTE_CAP (default 90 = H100/H200, built as sm_90a), CUDAFORGE_THREADS (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD/target/cuda-toolchain
venv=$root/venv
if [ ! -x "$venv/bin/nvcc-ok" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88" \
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-nvrtc==13.0.88" "nvidia-cublas>=13.0,<13.1" \
    "nvidia-cuda-cccl==13.0.85" "nvidia-curand>=10.4.0,<10.4.1"
  touch "$venv/bin/nvcc-ok" && chmod +x "$venv/bin/nvcc-ok"
fi
cu13=$(echo "$venv"/lib/python3*/site-packages/nvidia/cu13)
ln -sfn "$cu13" "$root/cu13"
(cd "$cu13/lib" && for l in cudart cublas cublasLt nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done \
  && ln -sf libcurand.so.10 libcurand.so)

# Link-only libcuda stub: every driver entry point cudarc binds, each returning an error code.
cargo fetch -q
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -n 1)
mkdir -p "$cu13/lib/stubs"
grep -oE 'fn cu[A-Za-z0-9_]+\(' "$cudarc/src/driver/sys/mod.rs" | sed 's/^fn //; s/($//' | sort -u \
  | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$root/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$cu13/lib/stubs/libcuda.so" "$root/libcuda_stub.c"

export CUDA_HOME=$cu13 PATH=$cu13/bin:$PATH CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc)}
if [ $# -gt 0 ]; then
  CARGO_TARGET_DIR=target/cuda cargo "$@"
  exit
fi
CARGO_TARGET_DIR=target/cuda cargo build --release -p retake-engine --features cuda
echo "built target/cuda/release/retake (sm_${CUDA_COMPUTE_CAP}); run with LD_LIBRARY_PATH=$cu13/lib and the real libcuda"
