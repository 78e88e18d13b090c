"""Opens Retake's editor in DawDreamer and keeps it open until killed (run by test_editor.py under Xvfb).
Usage: python3 open_editor.py <Retake.vst3>"""

import sys

import dawdreamer as daw

engine = daw.RenderEngine(48_000, 512)
plugin = engine.make_plugin_processor("retake", sys.argv[1])
print("opening the editor", flush=True)
plugin.open_editor()  # blocks while the window is open
