"""Opens Retake's editor in DawDreamer and keeps it open until killed (run by test_editor.py under Xvfb).

Usage: python3 open_editor.py <Retake.vst3> empty|session

`empty` opens the editor of a fresh instance. `session` first plays a song through Retake (a host transport at
96 bpm, the Start/End region, a prompt and lyrics from a project state, own sampling settings with many steps
so a job on the fixture model runs long enough to be seen), so the editor opens on a captured timeline."""

import json
import sys
from pathlib import Path

import dawdreamer as daw

from retake_host import dawdreamer_state_json, stereo_signal, write_dawdreamer_state_json

SAMPLE_RATE = 48_000
BLOCK = 512
TEMPO = 96.0
SIGNAL_S = 12.0
REGION_S = (3.75, 8.75)
MAX_REGION_S = 3600.0
STEPS = 100  # of the Steps parameter's 1..200
PROMPT = "indie rock, jangly electric guitars, live drums, warm bass"
LYRICS = "[verse]\nsay it again, the way you did"


def session(engine: daw.RenderEngine, bundle: str, state_path: Path) -> daw.PluginProcessor:
    signal = stereo_signal(SAMPLE_RATE, SIGNAL_S)
    engine.set_bpm(TEMPO)
    source = engine.make_playback_processor("source", signal)
    plugin = engine.make_plugin_processor("retake", bundle)
    assert engine.load_graph([(source, []), (plugin, ["source"])]), "load_graph failed"
    index = {p["name"]: p["index"] for p in plugin.get_plugin_parameters_description()}
    plugin.save_state(str(state_path))
    state = dawdreamer_state_json(state_path)
    state["fields"]["prompt"] = json.dumps(PROMPT)
    state["fields"]["lyrics"] = json.dumps(LYRICS)
    write_dawdreamer_state_json(state_path, state)
    plugin.load_state(str(state_path))
    for name, value in {
        "Follow loop": 0.0,
        "Start": REGION_S[0] / MAX_REGION_S,
        "End": REGION_S[1] / MAX_REGION_S,
        "Monitor": 1.0,
        "Variant defaults": 0.0,
        "Steps": (STEPS - 1) / 199,
    }.items():
        plugin.set_parameter(index[name], value)
    engine.render(SIGNAL_S)
    return plugin


def main() -> None:
    bundle, mode = sys.argv[1], sys.argv[2]
    engine = daw.RenderEngine(SAMPLE_RATE, BLOCK)
    if mode == "session":
        plugin = session(engine, bundle, Path(sys.argv[3]))
    else:
        plugin = engine.make_plugin_processor("retake", bundle)
    print("opening the editor", flush=True)
    plugin.open_editor()  # blocks while the window is open


if __name__ == "__main__":
    main()
