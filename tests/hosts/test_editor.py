"""Retake's egui editor rendered by DawDreamer under Xvfb + openbox (docs/plugin-hosting.md §5), driven through the
states a musician sees, each kept as a screenshot in target/: editor-empty.png (a fresh instance),
editor-captured.png (a song played through it with a region marked), editor-job.png (a job running, mid-progress,
started with the G key), editor-takes-newest.png (three takes as lanes, the newest playing) and editor-takes.png (another chosen with a
click). A screenshot that is
blank, or identical to the previous state's, fails the test."""

import os
import subprocess
import sys
import time
from pathlib import Path

from retake_host import TARGET, fixture_model, vst3_bundle

HOST = "DawDreamer 0.9.0 editor under Xvfb, Retake.vst3"
WINDOW_TIMEOUT_S = 60
RENDER_WAIT_S = 3.0
JOB_SHOWN_TIMEOUT_S = 30.0  # after G, the job shows (queued, loading, then steps) well before it ends (15 s or more)
JOB_PROGRESS_S = 3.0  # then a few diffusion steps run before the "job" screenshot
TAKE_TIMEOUT_S = 300.0
MIN_STDDEV = 0.02  # grey-level standard deviation (0..1); a blank or one-colour window is 0
MIN_CHANGED_PIXELS = 200  # a new state changes more than a blinking cursor does
# Where the editor draws the second take lane (plugin/src/editor/mod.rs: a 10 px margin, the title row, the
# 130 px timeline, then 46 px lanes, newest on top), in window coordinates: a point inside the lane's body.
SECOND_LANE = (600, 245)


def magick(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=30)


def find_window(name: str, editor: subprocess.Popen) -> str:
    deadline = time.monotonic() + WINDOW_TIMEOUT_S
    while time.monotonic() < deadline:
        assert editor.poll() is None, f"{HOST}: the editor process exited with {editor.returncode}"
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", name], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.split():
            return found.stdout.split()[0]
        time.sleep(0.5)
    raise AssertionError(f"{HOST}: no visible window named {name!r} after {WINDOW_TIMEOUT_S} s")


def press_key(window: str, key: str) -> None:
    """A key the editor takes: its window gets the X input focus first (a click alone does not always give it
    under openbox), and the key is held 0.2 s like a click (docs/plugin-hosting.md §5)."""
    xdotool("windowfocus", window)
    time.sleep(0.3)
    xdotool("keydown", key)
    time.sleep(0.2)
    xdotool("keyup", key)
    time.sleep(0.3)


def click(window: str, x: int, y: int) -> None:
    """A click egui takes: press and release 0.2 s apart (docs/plugin-hosting.md §5; an instant click is lost)."""
    xdotool("mousemove", "--window", window, "--sync", str(x), str(y))
    xdotool("mousedown", "1")
    time.sleep(0.2)
    xdotool("mouseup", "1")
    time.sleep(0.3)


class Shots:
    """Screenshots of the editor window, each checked against blankness and against the previous one."""

    def __init__(self):
        self.previous: Path | None = None

    def take(self, window: str, state: str, pointer_away: bool = False) -> Path:
        if pointer_away:  # no tooltip of whatever lies under the pointer
            xdotool("mousemove", "--sync", "0", "0")
            time.sleep(1.0)
        path = TARGET / f"editor-{state}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        magick("import", "-window", window, str(path))
        width, height = (int(v) for v in magick("identify", "-format", "%w %h", str(path)).split())
        assert width >= 700 and height >= 500, f"{HOST}: {state}: screenshot is only {width}x{height}"
        grey = magick("convert", str(path), "-colorspace", "Gray", "-format", "%[fx:standard_deviation]", "info:")
        assert float(grey) > MIN_STDDEV, f"{HOST}: {state}: screenshot {path} is blank (grey stddev {grey})"
        if self.previous is not None:
            changed = changed_pixels(self.previous, path)
            assert changed > MIN_CHANGED_PIXELS, (
                f"{HOST}: {state}: screenshot {path} is the same as {self.previous} ({changed} pixels differ)"
            )
        self.previous = path
        return path

    def wait_for_change(self, window: str, state: str, timeout_s: float) -> None:
        """Waits until the window differs from the previous screenshot; fails after `timeout_s`."""
        assert self.previous is not None
        probe = TARGET / f"editor-{state}-probe.png"
        deadline = time.monotonic() + timeout_s
        while True:
            magick("import", "-window", window, str(probe))
            changed = changed_pixels(self.previous, probe)
            if changed > MIN_CHANGED_PIXELS:
                probe.unlink()
                return
            assert time.monotonic() < deadline, (
                f"{HOST}: {state}: the window did not change in {timeout_s} s ({changed} pixels differ)"
            )
            time.sleep(0.5)


def changed_pixels(a: Path, b: Path) -> int:
    """Pixels that differ between two screenshots (ImageMagick `compare -metric AE` prints the count)."""
    done = subprocess.run(["compare", "-metric", "AE", str(a), str(b), "null:"], capture_output=True, text=True)
    assert done.returncode in (0, 1), f"{HOST}: compare {a} {b} failed: {done.stderr}"
    return int(float(done.stderr.split()[0]))


def take_files(data: Path) -> list[Path]:
    return sorted(data.glob("retake/takes/*/take-*-48k.wav"))


def wait_for_takes(data: Path, count: int, editor: subprocess.Popen) -> None:
    deadline = time.monotonic() + TAKE_TIMEOUT_S
    while len(take_files(data)) < count:
        assert editor.poll() is None, f"{HOST}: the host exited with {editor.returncode} while take {count} was made"
        assert time.monotonic() < deadline, f"{HOST}: take {count} did not appear in {TAKE_TIMEOUT_S} s"
        time.sleep(0.25)


def open_editor(mode: str, tmp_path: Path) -> subprocess.Popen:
    bundle = vst3_bundle()
    assert bundle.is_dir(), f"{HOST}: {bundle} is missing; build it with `cargo xtask bundle retake --release`"
    env = dict(
        os.environ,
        RETAKE_MODEL_DIR=str(fixture_model()),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
    )
    script = Path(__file__).with_name("open_editor.py")
    return subprocess.Popen([sys.executable, str(script), str(bundle), mode, str(tmp_path / "song.state")], env=env)


def test_editor_screenshots_of_empty_captured_running_and_three_takes(tmp_path):
    assert os.environ.get("DISPLAY"), f"{HOST}: DISPLAY is not set; run tests/hosts/run.sh (it starts Xvfb)"
    shots = Shots()
    editor = open_editor("empty", tmp_path)
    try:
        window = find_window("^Retake$", editor)
        time.sleep(RENDER_WAIT_S)
        shots.take(window, "empty", pointer_away=True)
    finally:
        editor.kill()
        editor.wait()

    data = tmp_path / "data"
    editor = open_editor("session", tmp_path)
    try:
        window = find_window("^Retake$", editor)
        time.sleep(RENDER_WAIT_S)
        shots.take(window, "captured", pointer_away=True)

        # The title row holds no control: a click there gives the editor the keyboard, then G generates.
        click(window, 700, 16)
        press_key(window, "g")
        shots.wait_for_change(window, "job", JOB_SHOWN_TIMEOUT_S)
        time.sleep(JOB_PROGRESS_S)
        shots.take(window, "job")
        assert take_files(data) == [], f"{HOST}: the job was over before its screenshot; raise STEPS in open_editor.py"
        wait_for_takes(data, 1, editor)

        for count in (2, 3):
            click(window, 700, 16)
            press_key(window, "g")
            wait_for_takes(data, count, editor)
        time.sleep(1.0)
        shots.take(window, "takes-newest")  # the newest take plays
        click(window, *SECOND_LANE)
        time.sleep(1.0)
        shots.take(window, "takes")  # the second take, chosen with a click, plays: its lane lights up instead
    finally:
        editor.kill()
        editor.wait()
