"""Retake's egui editor rendered by DawDreamer under Xvfb + openbox (docs/plugin-hosting.md §5): the window
appears, a screenshot of it lands in target/editor.png, and it is not blank."""

import os
import subprocess
import sys
import time
from pathlib import Path

from retake_host import TARGET, vst3_bundle

HOST = "DawDreamer 0.9.0 editor under Xvfb, Retake.vst3"
SCREENSHOT = TARGET / "editor.png"
WINDOW_TIMEOUT_S = 60
RENDER_WAIT_S = 3.0
MIN_STDDEV = 0.02  # grey-level standard deviation (0..1); a blank or one-colour window is 0


def magick(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def find_window(name: str, editor: subprocess.Popen) -> str:
    deadline = time.monotonic() + WINDOW_TIMEOUT_S
    while time.monotonic() < deadline:
        assert editor.poll() is None, f"{HOST}: the editor process exited with {editor.returncode}"
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.split():
            return found.stdout.split()[0]
        time.sleep(0.5)
    raise AssertionError(f"{HOST}: no visible window named {name!r} after {WINDOW_TIMEOUT_S} s")


def test_editor_opens_and_renders_a_non_blank_screenshot():
    assert os.environ.get("DISPLAY"), f"{HOST}: DISPLAY is not set; run tests/hosts/run.sh (it starts Xvfb)"
    bundle = vst3_bundle()
    assert bundle.is_dir(), f"{HOST}: {bundle} is missing; build it with `cargo xtask bundle retake --release`"
    script = Path(__file__).with_name("open_editor.py")
    editor = subprocess.Popen([sys.executable, str(script), str(bundle)])
    try:
        window = find_window("^Retake$", editor)
        time.sleep(RENDER_WAIT_S)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        magick("import", "-window", window, str(SCREENSHOT))
    finally:
        editor.kill()
        editor.wait()
    width, height = (int(v) for v in magick("identify", "-format", "%w %h", str(SCREENSHOT)).split())
    assert width >= 400 and height >= 300, f"{HOST}: screenshot is only {width}x{height}"
    grey = magick("convert", str(SCREENSHOT), "-colorspace", "Gray", "-format", "%[fx:standard_deviation]", "info:")
    stddev = float(grey)
    assert stddev > MIN_STDDEV, f"{HOST}: screenshot {SCREENSHOT} is blank (grey stddev {stddev:.4f})"
