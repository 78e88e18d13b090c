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

# The Windows x64 build in one cargo run: the bundles and retake.exe through the xtask, plus the CLAP harness for the
# Wine tests. Moved to target/windows, so the Linux bundles built next keep target/bundled to themselves.
windows=x86_64-pc-windows-gnu
bundle_windows() {
  cargo xtask bundle retake --release --target "$windows" -p retake-tests --bin retake-clap-host
  rm -rf target/windows && mkdir -p target/windows/Retake.vst3/Contents
  mv target/bundled/Retake.vst3/Contents/x86_64-win target/windows/Retake.vst3/Contents/
  mv target/bundled/Retake.clap target/bundled/retake.exe target/windows/
  cp "target/$windows/release/retake-clap-host.exe" target/windows/
}

# tests/tests/wine.rs, headless, in a Wine prefix made once and kept beside the build cache, with the
# bcryptprimitives.dll that Rust programs need and Debian's Wine 8 lacks (tests/wine/bcryptprimitives.c).
wine_tests() (
  export WINEPREFIX=${WINEPREFIX:-$HOME/.cache/retake-ci/wine} WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
  unset DISPLAY
  [ -e "$WINEPREFIX/system.reg" ] || wine wineboot --init
  shim=tests/wine/bcryptprimitives.c dll=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
  [ "$dll" -nt "$shim" ] || x86_64-w64-mingw32-gcc -shared -O2 -o "$dll" "$shim" -lbcrypt
  cargo test -p retake-tests --test wine -- --ignored
)

run "cargo fmt --check" cargo fmt --all -- --check
run "clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
run "bundle (Windows, release)" bundle_windows
run "bundle (debug, alloc check)" bundle_alloc_check
run "bundle (release)" cargo xtask bundle retake --release
run "bundle entry symbols" scripts/check-bundles.sh
run "cargo test (workspace)" cargo test --workspace --no-fail-fast
# The conformance suite and the remote backend against the official ACE-Step 1.5 server (tests/tests/conformance.rs,
# tests/tests/remote.rs), from the shared peers folder beside the clone; start-server.sh makes its venv once, in
# ~/.cache/retake-peers (outside the clone).
run "official server: conformance, remote backend" \
  cargo test -p retake-tests --test conformance --test remote -- --ignored
run "hosts: DawDreamer, editor, Ardour" tests/hosts/run.sh
run "Windows entry symbols" scripts/check-bundles.sh windows
run "Windows under Wine" wine_tests

step "summary"
printf '%s\n' "${summary[@]}"
