"""Unit tests of the host-test helpers in retake_host.py (state decoders and the WAV reader)."""

import json
import struct

import numpy as np

from retake_host import (
    dawdreamer_state_json,
    juce_base64_decode,
    juce_base64_encode,
    nice_plug_json,
    read_wav,
    vst3_preset_component,
    write_dawdreamer_state_json,
)


def test_juce_base64_packs_six_bit_groups_least_significant_first():
    # 0xff 0x00: bits 0-5 = 63 ('+'), bits 6-11 = 0b000011 ('C'), bits 12-15 = 0 ('.').
    assert juce_base64_decode("2.+C.") == b"\xff\x00"
    assert juce_base64_decode("1.A.") == b"\x01"
    assert juce_base64_encode(b"\xff\x00") == "2.+C."
    assert juce_base64_encode(b"\x01") == "1.A."


def test_juce_base64_decodes_a_megabyte_state_exactly():
    # A state of 1 MiB (a JSON of many takes); the decoder once took ~47 s here, quadratic in the length.
    data = bytes((i * 7919 + i // 251) % 256 for i in range(1 << 20))
    assert juce_base64_decode(juce_base64_encode(data)) == data


def test_a_rewritten_dawdreamer_state_reads_back_with_the_rest_of_the_file_kept(tmp_path):
    path = tmp_path / "retake.state"
    xml = '<?xml version="1.0"?> <VST3PluginState><IComponent>2.+C.</IComponent></VST3PluginState>'
    path.write_bytes(b"VC2!" + len(xml).to_bytes(4, "little") + xml.encode() + b"\x00")
    state = {"params": {"key": {"i32": 25}}, "fields": {"takes": "null"}}
    write_dawdreamer_state_json(path, state)
    assert dawdreamer_state_json(path) == state
    data = path.read_bytes()
    assert data.endswith(b"</IComponent></VST3PluginState>\x00")
    assert int.from_bytes(data[4:8], "little") == len(data) - 9


def test_vst3_preset_component_returns_exactly_the_comp_chunk():
    component = json.dumps({"params": {}, "fields": {}}).encode()
    header = b"VST3" + struct.pack("<i", 1) + b"0" * 32
    listing = len(header) + 8 + len(component) + 4
    entries = b"Comp" + struct.pack("<qq", 48, len(component)) + b"Cont" + struct.pack("<qq", listing, 0)
    data = header + struct.pack("<q", listing) + component + b"tail" + b"List" + struct.pack("<i", 2) + entries
    assert vst3_preset_component(data) == component
    assert nice_plug_json(vst3_preset_component(data)) == {"params": {}, "fields": {}}


def test_read_wav_scales_24_bit_extensible_pcm_like_the_engine(tmp_path):
    codes = [-(2**23), 2**23 - 1, 1, -1]  # two stereo frames
    body = b"".join(code.to_bytes(3, "little", signed=True) for code in codes)
    subformat_pcm = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 48_000, 48_000 * 6, 6, 24, 22, 24, 3) + subformat_pcm
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body
    path = tmp_path / "take.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    rate, audio = read_wav(path)
    assert rate == 48_000
    expected = np.array([[-1.0, 2.0**-23], [1.0 - 2.0**-23, -(2.0**-23)]], dtype=np.float32)
    assert np.array_equal(audio, expected)
