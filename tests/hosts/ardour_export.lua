-- Ardour 7 headless session with Retake (docs/plugin-hosting.md §3c): one stereo track, Ardour's "ACE Noise" as the
-- source, Retake.vst3 after it, a tempo, an export of a few seconds and a saved session.
-- Run with `ardour7-lua ardour_export.lua`; settings come from the environment:
--   RETAKE_ARDOUR_DIR      folder for the session (created)
--   RETAKE_ARDOUR_SECONDS  export length in seconds
-- Any failed step raises an error (luasession then exits non-zero).

local dir = assert(os.getenv("RETAKE_ARDOUR_DIR"), "RETAKE_ARDOUR_DIR is not set")
local seconds = assert(tonumber(os.getenv("RETAKE_ARDOUR_SECONDS")), "RETAKE_ARDOUR_SECONDS is not a number")
local rate = 48000

AudioEngine:set_backend("None (Dummy)", "", "")
assert(AudioEngine:start(false) == 0, "the dummy audio backend did not start")
assert(create_session(dir, "retake", rate), "create_session failed in " .. dir)

local track = Session:new_audio_track(1, 2, nil, 1, "Retake track", ARDOUR.PresentationInfo.max_order,
  ARDOUR.TrackMode.Normal, true):front()
assert(not track:isnil(), "new_audio_track failed")

local noise = ARDOUR.LuaAPI.new_luaproc(Session, "ACE Noise")
assert(not noise:isnil(), "the ACE Noise source is not available")
track:add_processor_by_index(noise, 0, nil, true)

local retake = ARDOUR.LuaAPI.new_plugin(Session, "Retake", ARDOUR.PluginType.VST3, "")
assert(not retake:isnil(), "Retake.vst3 was not found: was ardour-vst3-scanner run on the installed bundle?")
assert(track:add_processor_by_index(retake, 1, nil, true) == 0, "inserting Retake failed")

local tempo_map = Temporal.TempoMap.write_copy()
tempo_map:set_tempo(Temporal.Tempo(96, 96, 4), Temporal.timepos_t(0))
Temporal.TempoMap.update(tempo_map)

local export = Session:simple_export()
export:set_name("retake_export")
export:set_folder(dir)
export:set_range(0, rate * seconds)
export:set_preset("df340c53-88b5-4342-a1c8-58e0704872ea") -- "CD only": 16-bit, 44.1 kHz WAV
assert(export:check_outputs(), "the export has no outputs")
assert(export:run_export(), "the export failed")

assert(Session:save_state("", false, false, false, false, false) == 0, "saving the session failed")
print("retake-ardour: exported and saved")
