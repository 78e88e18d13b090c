"""Unit tests of the host-test helpers in retake_host.py (state decoders and the WAV reader)."""

import json
import struct

import numpy as np

from retake_host import _JUCE_BASE64, juce_base64_decode, nice_plug_json, read_wav, vst3_preset_component


def test_juce_base64_packs_six_bit_groups_least_significant_first():
    # 0xff 0x00: bits 0-5 = 63 ('+'), bits 6-11 = 0b000011 ('C'), bits 12-15 = 0 ('.').
    assert juce_base64_decode("2.+C.") == b"\xff\x00"
    assert juce_base64_decode("1.A.") == b"\x01"


def juce_base64_encode(data: bytes) -> str:
    """JUCE's MemoryBlock::toBase64Encoding: the bytes' little-endian bits, 6 a char, least significant first."""
    chars, bits, pending = [], 0, 0
    for byte in data:
        bits |= byte << pending
        pending += 8
        while pending >= 6:
            chars.append(_JUCE_BASE64[bits & 63])
            bits >>= 6
            pending -= 6
    if pending:
        chars.append(_JUCE_BASE64[bits])
    return f"{len(data)}." + "".join(chars)


def test_juce_base64_decodes_a_megabyte_state_exactly():
    # A state of 1 MiB (a JSON of many takes); the decoder once took ~47 s here, quadratic in the length.
    data = bytes((i * 7919 + i // 251) % 256 for i in range(1 << 20))
    assert juce_base64_decode(juce_base64_encode(data)) == data


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
