"""Retake.vst3 in DawDreamer 0.9.0 (a JUCE VST3 host with a playing transport; docs/plugin-hosting.md §3a):
pass-through, the parameter list, state save/load, a repaint round trip triggered by the Generate
parameter, and what a careless host or a crafted project does (no channels, parameters out of range).
DawDreamer reports no loop range, so the region comes from the Start/End parameters."""

import json
import multiprocessing
import os
import signal
import time

import dawdreamer as daw
import numpy as np
import pytest

from retake_host import (
    dawdreamer_state_json,
    fixture_model,
    persisted_field,
    read_wav,
    stereo_signal,
    vst3_bundle,
    write_dawdreamer_state_json,
)

HOST = "DawDreamer 0.9.0, Retake.vst3"
SAMPLE_RATE = 48_000
BLOCK = 512
TEMPO = 96.0
SIGNAL_S = 6.0
REGION_S = (2.0, 4.0)
XFADE_MS = 50.0
MAX_REGION_S = 3600.0  # the Start/End range, 0..3600 s
MAX_XFADE_MS = 500.0
TAKE_TIMEOUT_S = 300.0

# name: (text at the minimum, text at the maximum, unit label), as a user sees the range in a host.
EXPECTED_RANGES = {
    "Mode": ("Repaint", "Text2Music", ""),
    "Start": ("0.00", "3600.00", " s"),
    "End": ("0.00", "3600.00", " s"),
    "Follow loop": ("Off", "On", ""),
    "Strength": ("0.00", "1.00", ""),
    "Monitor": ("Original", "Take", ""),
    "Crossfade": ("0", "500", " ms"),
    "Seed": ("0", "999999", ""),
    "Key": ("Auto", "B minor", ""),
    "Generate": ("Off", "On", ""),
    "Variant defaults": ("Off", "On", ""),
    "Guidance": ("1.0", "10.0", ""),
    "Steps": ("1", "200", ""),
    "Shift": ("1.0", "5.0", ""),
    "Cover noise": ("0.00", "1.00", ""),
}


@pytest.fixture(autouse=True)
def engine_environment(tmp_path, monkeypatch):
    """Jobs use the fixture model and write takes under a private folder."""
    monkeypatch.setenv("RETAKE_MODEL_DIR", str(fixture_model()))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


class Rig:
    """A DawDreamer engine playing the test signal through Retake."""

    def __init__(self, signal: np.ndarray):
        bundle = vst3_bundle()
        assert bundle.is_dir(), f"{HOST}: {bundle} is missing; build it with `cargo xtask bundle retake --release`"
        self.signal = signal
        self.engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
        self.engine.set_bpm(TEMPO)
        source = self.engine.make_playback_processor("source", signal)
        self.plugin = self.engine.make_plugin_processor("retake", str(bundle))
        assert self.engine.load_graph([(source, []), (self.plugin, ["source"])]), f"{HOST}: load_graph failed"
        self.index = {p["name"]: p["index"] for p in self.plugin.get_plugin_parameters_description()}

    def set(self, name: str, normalized: float) -> None:
        self.plugin.set_parameter(self.index[name], normalized)

    def text(self, name: str) -> str:
        return self.plugin.get_parameter_text(self.index[name])

    def render(self, seconds: float) -> np.ndarray:
        """Renders from the start of the timeline (DawDreamer restarts the transport at 0 on each render)."""
        self.engine.render(seconds)
        return self.engine.get_audio()

    def state(self, path) -> dict:
        self.plugin.save_state(str(path))
        return dawdreamer_state_json(path)


def first_mismatch(output: np.ndarray, expected: np.ndarray, start: int, end: int) -> str | None:
    """Where `output` and `expected` differ bit for bit within frames [start, end), described; None if equal."""
    got, want = output[:, start:end], expected[:, start:end]
    differs = got.view(np.uint32) != want.view(np.uint32)
    if not differs.any():
        return None
    channel, frame = (int(i) for i in np.argwhere(differs)[0])
    got, want = got[channel, frame], want[channel, frame]
    return f"channel {channel}, frame {start + frame}: output {got!r}, expected {want!r}"


def test_render_with_tempo_passes_the_signal_through_bit_exact():
    signal = stereo_signal(SAMPLE_RATE, 2.0)
    rig = Rig(signal)
    output = rig.render(2.0)
    assert output.shape == signal.shape, f"{HOST}: rendered {output.shape}, expected {signal.shape}"
    mismatch = first_mismatch(output.astype(np.float32), signal, 0, signal.shape[1])
    assert mismatch is None, f"{HOST}: dry pass-through is not bit-exact at {mismatch}"


def test_every_parameter_is_listed_with_name_and_range():
    rig = Rig(stereo_signal(SAMPLE_RATE, 0.1))
    listed = {p["name"]: (p["min"], p["max"], p["label"]) for p in rig.plugin.get_plugin_parameters_description()}
    for name, (low, high, unit) in listed.items():
        print(f"{HOST}: {name}: {low}..{high}{unit}")
    assert listed == EXPECTED_RANGES, f"{HOST}: parameters and ranges are {listed}"


def test_state_save_and_load_restores_parameters(tmp_path):
    signal = stereo_signal(SAMPLE_RATE, 0.2)
    first = Rig(signal)
    settings = {"Mode": 1.0, "Follow loop": 0.0, "Start": 1.5 / MAX_REGION_S, "Monitor": 0.0, "Seed": 0.5}
    for name, value in settings.items():
        first.set(name, value)
    first.render(0.1)
    state = first.state(tmp_path / "first.state")
    assert state["params"]["start"] == {"f32": 1.5}, f"{HOST}: saved Start is {state['params']['start']}"
    assert set(state["fields"]) >= {"prompt", "takes"}, f"{HOST}: saved fields are {sorted(state['fields'])}"

    second = Rig(signal)
    second.plugin.load_state(str(tmp_path / "first.state"))
    second.render(0.1)
    for name in EXPECTED_RANGES:
        assert second.text(name) == first.text(name), f"{HOST}: {name} after load_state"
    assert second.state(tmp_path / "second.state")["params"] == state["params"], f"{HOST}: reloaded params"


def test_repaint_round_trip_via_generate(tmp_path):
    signal = stereo_signal(SAMPLE_RATE, SIGNAL_S)
    rig = Rig(signal)
    for name, value in {
        "Mode": 0.0,
        "Follow loop": 0.0,
        "Start": REGION_S[0] / MAX_REGION_S,
        "End": REGION_S[1] / MAX_REGION_S,
        "Crossfade": XFADE_MS / MAX_XFADE_MS,
        "Monitor": 1.0,
    }.items():
        rig.set(name, value)
    captured = rig.render(SIGNAL_S).astype(np.float32)
    assert first_mismatch(captured, signal, 0, signal.shape[1]) is None, f"{HOST}: capture pass altered the input"
    assert (rig.text("Start"), rig.text("End"), rig.text("Mode")) == ("2.00", "4.00", "Repaint")

    rig.set("Generate", 1.0)
    rig.render(0.05)
    rig.set("Generate", 0.0)
    rig.render(0.05)
    deadline = time.monotonic() + TAKE_TIMEOUT_S
    while True:
        takes = persisted_field(rig.state(tmp_path / "poll.state"), "takes")
        selected = [t for t in takes["takes"] if t["id"] == takes["selected"]]
        if selected:
            take = selected[0]
            break
        assert time.monotonic() < deadline, f"{HOST}: no take after {TAKE_TIMEOUT_S} s; takes state {takes}"
        time.sleep(0.25)

    start, end = (round(s * SAMPLE_RATE) for s in REGION_S)
    assert take["region"] == {"start": start, "end": end, "sample_rate": SAMPLE_RATE}, f"{HOST}: region {take}"
    rate, take_audio = read_wav(take["host_file"]["path"])
    shape = (rate, take_audio.shape)
    assert shape == (SAMPLE_RATE, (2, end - start)), f"{HOST}: take file (rate, shape) is {shape}"

    output = rig.render(SIGNAL_S).astype(np.float32)
    expected = signal.copy()
    expected[:, start:end] = take_audio
    fade = round(XFADE_MS * 1e-3 * SAMPLE_RATE)
    outside = first_mismatch(output, signal, 0, start) or first_mismatch(output, signal, end, signal.shape[1])
    assert outside is None, f"{HOST}: outside the region the output is not the input at {outside}"
    inside = first_mismatch(output, expected, start + fade, end - fade)
    assert inside is None, f"{HOST}: inside the region the output is not the take at {inside}"
    assert os.path.isfile(take["model_file"]["path"]), f"{HOST}: the 48 kHz take file is missing"


def in_child_process(work, *args) -> None:
    """Runs `work(*args)` in a forked process, so a plugin that crashes its host fails this test (naming the
    signal) instead of ending the whole test run."""
    child = multiprocessing.get_context("fork").Process(target=work, args=args)
    child.start()
    child.join(TAKE_TIMEOUT_S)
    if child.exitcode is None:
        child.kill()
        child.join()
        raise AssertionError(f"{HOST}: the host process hung for {TAKE_TIMEOUT_S} s")
    if child.exitcode < 0:
        raise AssertionError(f"{HOST}: the host process died of {signal.Signals(-child.exitcode).name}")
    assert child.exitcode == 0, f"{HOST}: the check failed in the host process (see its output above)"


def render_without_channels() -> None:
    engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
    plugin = engine.make_plugin_processor("retake", str(vst3_bundle()))
    assert plugin.set_bus(0, 0), f"{HOST}: set_bus(0, 0) refused"
    assert engine.load_graph([(plugin, [])]), f"{HOST}: load_graph failed"
    engine.render(0.5)
    assert engine.get_audio().shape == (0, SAMPLE_RATE // 2), f"{HOST}: rendered {engine.get_audio().shape}"


def test_a_layout_without_channels_renders_nothing_and_keeps_the_host_alive():
    # JUCE keeps calling process() with null channel pointers; reading them was a segfault.
    in_child_process(render_without_channels)


def load_crafted_parameters(path) -> None:
    signal_in = stereo_signal(SAMPLE_RATE, 0.2)
    rig = Rig(signal_in)
    rig.state(path)
    state = dawdreamer_state_json(path)
    state["params"].update(
        {"key": {"i32": 25}, "mode": {"i32": 7}, "monitor": {"i32": -3}, "xfade_ms": {"f32": 3e38}, "seed": {"i32": -7}}
    )
    state["fields"]["capture_minutes"] = json.dumps(4_000_000_000)
    write_dawdreamer_state_json(path, state)
    rig.plugin.load_state(str(path))
    rig.render(0.1)
    shown = {name: rig.text(name) for name in ("Key", "Mode", "Monitor", "Crossfade", "Seed")}
    expected = {"Key": "Auto", "Mode": "Repaint", "Monitor": "Take", "Crossfade": "500", "Seed": "0"}
    assert shown == expected, f"{HOST}: after loading out-of-range values the parameters show {shown}"
    saved = rig.state(path)
    assert persisted_field(saved, "capture_minutes") == 120, f"{HOST}: capture size saved as {saved['fields']}"


def test_out_of_range_parameters_in_a_state_are_clamped_before_the_host_reads_them(tmp_path):
    # An enum index past the last variant aborted the host when it asked for the parameter's text.
    in_child_process(load_crafted_parameters, tmp_path / "crafted.state")
