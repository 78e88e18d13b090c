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
#
# The first run creates bench/.venv from bench/requirements.txt (PyPI: torch's default wheel is large).
# On CUDA, RETAKE names a CUDA-built `retake` (scripts/build-cuda.sh builds target/cuda/release/retake) and
# PYTHON an interpreter whose torch sees the GPU; OUT is where the JSON reports go (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
THREADS=${THREADS:-$(nproc)}
ONLY=${ONLY:-}
DEVICE=${DEVICE:-cpu}
OUT=${OUT:-target/bench}
TOKENIZER=tests/fixtures/tiny-acestep/Qwen3-Embedding-0.6B/tokenizer.json
PYTHON=${PYTHON:-bench/.venv/bin/python}

if [ "$PYTHON" = bench/.venv/bin/python ] && [ ! -x "$PYTHON" ]; then
    python3 -m venv bench/.venv
    "$PYTHON" -m pip install --quiet -r bench/requirements.txt
fi
mkdir -p "$OUT"
if [ -z "${RETAKE:-}" ]; then
    cargo build --release --quiet -p retake-engine --bin retake
    RETAKE=target/release/retake
fi

# The two engines alternate part by part (a part is a fragment of operation names), so that a machine whose speed
# drifts over minutes (a shared VM) slows both sides of each ratio alike.
if [ -n "$ONLY" ]; then parts=("$ONLY"); else parts=(text_encoder condition_encoder dit_step diffusion vae_ cover repaint); fi
retake_parts=() pytorch_parts=()
for part in "${parts[@]}"; do
    echo "== $part: Retake on $DEVICE ($THREADS threads), then PyTorch" >&2
    retake_parts+=("$OUT/retake-$part.json") pytorch_parts+=("$OUT/pytorch-$part.json")
    RAYON_NUM_THREADS=$THREADS "$RETAKE" bench --device "$DEVICE" --runs "$RUNS" --tokenizer "$TOKENIZER" \
        --json "$OUT/retake-$part.json" --only "$part" > /dev/null
    OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PYTHON" bench/reference.py --device "$DEVICE" \
        --threads "$THREADS" --runs "$RUNS" --tokenizer "$TOKENIZER" --json "$OUT/pytorch-$part.json" \
        --only "$part" > /dev/null
done
"$PYTHON" bench/reference.py --merge "$OUT/retake.json" "${retake_parts[@]}"
"$PYTHON" bench/reference.py --merge "$OUT/pytorch.json" "${pytorch_parts[@]}"

"$PYTHON" bench/reference.py --compare "$OUT/retake.json" "$OUT/pytorch.json"
