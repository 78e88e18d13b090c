#!/usr/bin/env bash
# Checks that the built bundles export the plugin entry points hosts look for.
set -euo pipefail
cd "$(dirname "$0")/.."
clap=target/bundled/Retake.clap
vst3=target/bundled/Retake.vst3/Contents/x86_64-linux/Retake.so
for f in "$clap" "$vst3"; do
  [ -f "$f" ] || { echo "missing bundle file: $f" >&2; exit 1; }
done
nm -D --defined-only "$clap" | grep -qw clap_entry || { echo "$clap does not export clap_entry" >&2; exit 1; }
nm -D --defined-only "$vst3" | grep -qw GetPluginFactory || { echo "$vst3 does not export GetPluginFactory" >&2; exit 1; }
echo "bundles ok: $clap exports clap_entry, $vst3 exports GetPluginFactory"
