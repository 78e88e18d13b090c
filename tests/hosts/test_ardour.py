"""Retake.vst3 in Ardour 7 run headless by `ardour7-lua` (plugin-hosting.md §3c): install and pre-scan the
bundle, build a session with a noise source and Retake on one track, export a few seconds, save the session;
then check the WAV and Retake's state in the session file. Ardour 7 has no CLAP support."""

import os
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from retake_host import ardour_chunk_json, persisted_field, read_wav, vst3_bundle

HOST = "Ardour 7, Retake.vst3"
EXPORT_S = 3
EXPORT_RATE = 44_100  # the "CD only" export preset
SCRIPT = Path(__file__).with_name("ardour_export.lua")
ARDOUR_LIBS = Path("/usr/lib/ardour7")


def run(command: list[str], env: dict, what: str, timeout: float) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{HOST}: {what} exited {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    """Runs the Lua session once; returns its folder. HOME is private, so the installed bundle, Ardour's
    plugin cache and its configuration stay out of the user's home."""
    bundle = vst3_bundle()
    assert bundle.is_dir(), f"{HOST}: {bundle} is missing; build it with `cargo xtask bundle retake --release`"
    home = tmp_path_factory.mktemp("home")
    installed = home / ".vst3" / bundle.name
    shutil.copytree(bundle, installed)
    env = {**os.environ, "HOME": str(home), "LD_LIBRARY_PATH": str(ARDOUR_LIBS)}
    env.pop("XDG_CONFIG_HOME", None)
    env.pop("XDG_CACHE_HOME", None)
    # luasession only reads the plugin cache; the scanner fills it for the installed path.
    run([str(ARDOUR_LIBS / "ardour-vst3-scanner"), str(installed)], env, "ardour-vst3-scanner", 120)
    folder = tmp_path_factory.mktemp("ardour") / "session"
    env |= {"RETAKE_ARDOUR_DIR": str(folder), "RETAKE_ARDOUR_SECONDS": str(EXPORT_S)}
    run(["ardour7-lua", str(SCRIPT)], env, "the Lua session (ardour_export.lua)", 300)
    return folder


def test_export_has_the_expected_length_and_is_not_silent(session):
    exports = sorted(session.rglob("retake_export*.wav"))
    assert exports, f"{HOST}: no exported WAV under {session}"
    rate, audio = read_wav(exports[0])
    assert rate == EXPORT_RATE, f"{HOST}: export is {rate} Hz"
    assert audio.shape == (2, EXPORT_S * EXPORT_RATE), f"{HOST}: export is {audio.shape} (channels, frames)"
    peak = float(np.abs(audio).max())
    assert peak > 0.01, f"{HOST}: export is silent (peak {peak})"


def test_saved_session_holds_retakes_state(session):
    session_file = session / "retake.ardour"
    assert session_file.is_file(), f"{HOST}: {session_file} was not saved"
    tree = ElementTree.parse(session_file)
    processors = [p for p in tree.iter("Processor") if p.get("name") == "Retake"]
    assert len(processors) == 1, f"{HOST}: session has {len(processors)} Retake processors"
    chunks = [chunk.text for chunk in processors[0].iter("chunk") if chunk.text]
    assert chunks, f"{HOST}: Retake's processor node has no <chunk> state"
    state = ardour_chunk_json(chunks[0])
    assert set(state["params"]) == {
        "mode", "start", "end", "follow_loop", "strength", "monitor", "xfade_ms", "seed", "key", "generate"
    }, f"{HOST}: saved params {sorted(state['params'])}"
    takes = persisted_field(state, "takes")
    assert takes["takes"] == [] and len(takes["project_id"]) == 16, f"{HOST}: saved takes field {takes}"
