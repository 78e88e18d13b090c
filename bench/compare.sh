#!/usr/bin/env bash
# Retake's engine against the PyTorch reference (DiffSynth 2.1.12) on the same CPU threads, in one go:
# builds `retake` in release, times `retake bench` and bench/reference.py alternately, one part of the
# operations at a time, then prints both tables and the speed-ups side by side. Both load one model group at a
# time (the DiT alone is 6.3 GB in f32) and they run one after the other, never together.
#
#   bench/compare.sh                    # everything, 3 runs per operation, all cores
#   RUNS=5 THREADS=2 bench/compare.sh   # more runs, 2 threads on both sides
#   ONLY=dit bench/compare.sh           # operations whose name contains "dit"
#   DEVICE=cuda:0 bench/compare.sh      # on the GPU: Retake's CUDA build against PyTorch on CUDA, both bf16
#   PRECISIONS=bf16 bench/compare.sh    # on the CPU only in bf16 (default both: f32 and bf16 weights)
#   ISA=avx2 bench/compare.sh           # Retake as on a CPU without AVX-512 (see below)
#   PYTORCH=no bench/compare.sh         # Retake alone (its bf16 / f32 table)
#
# On the CPU each part runs in every precision of PRECISIONS, alternating: Retake with `--precision P` (bf16: bf16
# weights, f32 activations) and PyTorch with `--dtype P` (bf16: its modules and inputs in bf16). Then each
# precision's Retake/PyTorch table, and Retake bf16 against Retake f32.
#
# The first run creates bench/.venv from bench/requirements.txt (PyPI: torch's default wheel is large).
# ISA=avx2 builds `retake` without the gemm crate's AVX-512 kernels (`--no-default-features`, in target/avx2) and
# runs it with RETAKE_CPU_ISA=avx2, and PyTorch with ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2 and
# MKL_ENABLE_INSTRUCTIONS=AVX2: on an AVX-512 machine, the times of an AVX2-only CPU's paths (Retake f32: the gemm
# crate's AVX2 kernel; bf16: the `widen-avx2` kernel). PyTorch is then left out unless PYTORCH=yes: without
# AVX512-BF16 its bf16 modules took 106 s for one 10 s DiT step.
# On CUDA, RETAKE names a CUDA-built `retake` (scripts/build-cuda.sh builds target/cuda/release/retake) and
# PYTHON an interpreter whose torch sees the GPU; OUT is where the JSON reports go (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
THREADS=${THREADS:-$(nproc)}
ONLY=${ONLY:-}
DEVICE=${DEVICE:-cpu}
OUT=${OUT:-target/bench}
ISA=${ISA:-native}
if [ "$ISA" = avx2 ]; then PYTORCH=${PYTORCH:-no}; else PYTORCH=${PYTORCH:-yes}; fi
if [ "$DEVICE" = cpu ]; then PRECISIONS=${PRECISIONS:-f32 bf16}; else PRECISIONS=bf16; fi
TOKENIZER=tests/fixtures/tiny-acestep/Qwen3-Embedding-0.6B/tokenizer.json
PYTHON=${PYTHON:-bench/.venv/bin/python}

if [ "$PYTHON" = bench/.venv/bin/python ] && [ ! -x "$PYTHON" ]; then
    python3 -m venv bench/.venv
    "$PYTHON" -m pip install --quiet -r bench/requirements.txt
fi
mkdir -p "$OUT"
case "$ISA" in
    native) ;;
    avx2) export RETAKE_CPU_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
    *) echo "ISA=$ISA: use native or avx2" >&2; exit 2 ;;
esac
if [ -z "${RETAKE:-}" ] && [ "$ISA" = avx2 ]; then
    cargo build --release --quiet -p retake-engine --bin retake --no-default-features --target-dir target/avx2
    RETAKE=target/avx2/release/retake
elif [ -z "${RETAKE:-}" ]; then
    cargo build --release --quiet -p retake-engine --bin retake
    RETAKE=target/release/retake
fi

# The two engines alternate part by part (a part is a fragment of operation names), so that a machine whose speed
# drifts over minutes (a shared VM) slows both sides of each ratio alike.
if [ -n "$ONLY" ]; then parts=("$ONLY"); else parts=(text_encoder condition_encoder dit_step diffusion vae_ cover repaint); fi
for precision in $PRECISIONS; do
    eval "retake_$precision=() pytorch_$precision=()"
done
for part in "${parts[@]}"; do
    for precision in $PRECISIONS; do
        echo "== $part: Retake on $DEVICE ($THREADS threads, $precision, ISA $ISA), PyTorch: $PYTORCH" >&2
        retake_json="$OUT/retake-$precision-$part.json" pytorch_json="$OUT/pytorch-$precision-$part.json"
        eval "retake_$precision+=(\"\$retake_json\") pytorch_$precision+=(\"\$pytorch_json\")"
        RAYON_NUM_THREADS=$THREADS "$RETAKE" bench --device "$DEVICE" --precision "$precision" --runs "$RUNS" \
            --tokenizer "$TOKENIZER" --json "$retake_json" --only "$part" > /dev/null
        [ "$PYTORCH" = yes ] || continue
        OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PYTHON" bench/reference.py --device "$DEVICE" \
            --dtype "$precision" --threads "$THREADS" --runs "$RUNS" --tokenizer "$TOKENIZER" \
            --json "$pytorch_json" --only "$part" > /dev/null
    done
done
for precision in $PRECISIONS; do
    eval "retake_parts=(\"\${retake_$precision[@]}\") pytorch_parts=(\"\${pytorch_$precision[@]}\")"
    "$PYTHON" bench/reference.py --merge "$OUT/retake-$precision.json" "${retake_parts[@]}"
    [ "$PYTORCH" = yes ] || continue
    "$PYTHON" bench/reference.py --merge "$OUT/pytorch-$precision.json" "${pytorch_parts[@]}"
    "$PYTHON" bench/reference.py --compare "$OUT/retake-$precision.json" "$OUT/pytorch-$precision.json"
done
if [[ " $PRECISIONS " == *" f32 "* && " $PRECISIONS " == *" bf16 "* ]]; then
    "$PYTHON" bench/reference.py --compare "$OUT/retake-bf16.json" "$OUT/retake-f32.json"
fi
