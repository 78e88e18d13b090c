#!/usr/bin/env bash
# Retake's whole test suite, exactly as CI runs it: format, lints, the plugin bundles, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*"; }
summary=()
run() {
  local name=$1; shift
  step "$name"
  local t0=$SECONDS
  "$@"
  summary+=("$(printf '%-28s ok  (%ss)' "$name" $((SECONDS - t0)))")
}

run "cargo fmt --check" cargo fmt --all -- --check
run "clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
run "bundle (release)" cargo xtask bundle retake --release
run "bundle entry symbols" scripts/check-bundles.sh
run "cargo test (workspace)" cargo test --workspace --no-fail-fast

step "summary"
printf '%s\n' "${summary[@]}"
