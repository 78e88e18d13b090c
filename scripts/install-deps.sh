#!/usr/bin/env bash
# Installs what the test suite needs on a Debian 12 machine and is missing: the Rust components, the Debian
# packages of the host tests (Ardour 7 with its Lua session tool, a virtual display with a window manager,
# screenshots, software OpenGL for the editor: docs/plugin-hosting.md §1, §3c, §5), the Windows x64 cross build and
# its test runner (mingw-w64, Wine, Rust's x86_64-pc-windows-gnu target) and, in target/host-venv, DawDreamer, pytest
# and numpy. Run as root (or with sudo available); otherwise it prints the exact command to run
# and fails. scripts/test.sh runs it first.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v nm >/dev/null || need_apt+=(binutils)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v cc >/dev/null || need_apt+=(build-essential)
command -v ardour7-lua >/dev/null || need_apt+=(ardour)
command -v Xvfb >/dev/null || need_apt+=(xvfb)
command -v xdpyinfo >/dev/null || need_apt+=(x11-utils)
command -v xdotool >/dev/null || need_apt+=(xdotool)
command -v import >/dev/null || need_apt+=(imagemagick)
command -v openbox >/dev/null || need_apt+=(openbox)
[ -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] || need_apt+=(libgl1-mesa-dri)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v x86_64-w64-mingw32-gcc >/dev/null || need_apt+=(gcc-mingw-w64-x86-64)
command -v wine >/dev/null || need_apt+=(wine wine64)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo)
  else
    echo "The tests need these Debian packages: ${need_apt[*]}" >&2
    echo "Install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${need_apt[*]}" >&2
    exit 1
  fi
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

host_venv=target/host-venv
[ -x "$host_venv/bin/python3" ] || python3 -m venv "$host_venv"
"$host_venv/bin/python3" -m pip install -q -r tests/hosts/requirements.txt
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy
rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu || rustup target add x86_64-pc-windows-gnu
