#!/usr/bin/env bash
# Host stage: Retake.vst3 in DawDreamer, the editor under Xvfb, and Ardour 7 (docs/plugin-hosting.md §3, §5).
# Needs target/bundled/Retake.vst3 and what scripts/install-deps.sh installs (scripts/test.sh runs both).
set -euo pipefail
cd "$(dirname "$0")/../.."

display=:97
Xvfb "$display" -screen 0 1280x1024x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
openbox_pid=
cleanup() {
  [ -n "$openbox_pid" ] && kill "$openbox_pid" 2>/dev/null
  kill "$xvfb" 2>/dev/null
}
trap cleanup EXIT
export DISPLAY=$display
for _ in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
xdpyinfo >/dev/null 2>&1 || { echo "Xvfb did not start on $display" >&2; exit 1; }
openbox >/dev/null 2>&1 &
openbox_pid=$!

python3 -m pytest -v -p no:cacheprovider tests/hosts "$@"
