#!/usr/bin/env bash
# Checks that the built bundles export the plugin entry points hosts look for: the Linux bundles in target/bundled,
# or with `windows`, the Windows x64 DLLs in target/windows (their PE export tables).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = windows ]; then
  clap=target/windows/Retake.clap
  vst3=target/windows/Retake.vst3/Contents/x86_64-win/Retake.vst3
  exports() { x86_64-w64-mingw32-objdump -p "$1" | sed -n '/^\[Ordinal\/Name Pointer\] Table/,/^$/p'; }
else
  clap=target/bundled/Retake.clap
  vst3=target/bundled/Retake.vst3/Contents/x86_64-linux/Retake.so
  exports() { nm -D --defined-only "$1"; }
fi
for f in "$clap" "$vst3"; do
  [ -f "$f" ] || { echo "missing bundle file: $f" >&2; exit 1; }
done
exports "$clap" | grep -w clap_entry >/dev/null || { echo "$clap does not export clap_entry" >&2; exit 1; }
exports "$vst3" | grep -w GetPluginFactory >/dev/null || { echo "$vst3 does not export GetPluginFactory" >&2; exit 1; }
echo "bundles ok: $clap exports clap_entry, $vst3 exports GetPluginFactory"
