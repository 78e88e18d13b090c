#!/usr/bin/env bash
# Retake's whole test suite, exactly as CI runs it: format, lints, the plugin bundles, every test, real hosts.
set -euo pipefail
cd "$(dirname "$0")/.."

# What a fresh machine lacks (Debian and Python packages, Rust components); the host tests run from its venv.
scripts/install-deps.sh
export PATH="$PWD/target/host-venv/bin:$PATH"

step() { printf '\n=== %s ===\n' "$*"; }
summary=()
run() {
  local name=$1; shift
  step "$name"
  local t0=$SECONDS
  "$@"
  summary+=("$(printf '%-28s ok  (%ss)' "$name" $((SECONDS - t0)))")
}

# The debug CLAP bundle with nice-plug's audio-thread allocation check, kept aside for the allocation test in
# tests/tests/clap_host.rs (the release bundle built next takes target/bundled).
bundle_alloc_check() {
  cargo xtask bundle retake --features assert_process_allocs
  mkdir -p target/alloc-check
  cp target/bundled/Retake.clap target/alloc-check/Retake.clap
}

run "cargo fmt --check" cargo fmt --all -- --check
run "clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
run "bundle (debug, alloc check)" bundle_alloc_check
run "bundle (release)" cargo xtask bundle retake --release
run "bundle entry symbols" scripts/check-bundles.sh
run "cargo test (workspace)" cargo test --workspace --no-fail-fast
run "hosts: DawDreamer, editor, Ardour" tests/hosts/run.sh

step "summary"
printf '%s\n' "${summary[@]}"
