"""Helpers shared by the Python host tests: bundle paths, the test signal, and reading what Retake saves
(nice-plug state JSON inside a JUCE VST3 state or an Ardour session, take WAV files) (docs/plugin-hosting.md §3)."""

import base64
import json
import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target"


def vst3_bundle() -> Path:
    """The release VST3 bundle from `cargo xtask bundle retake --release` (RETAKE_VST3_BUNDLE overrides)."""
    return Path(os.environ.get("RETAKE_VST3_BUNDLE", TARGET / "bundled" / "Retake.vst3"))


def fixture_model() -> Path:
    """The tiny random-weight ACE-Step model the tests run jobs with."""
    return ROOT / "tests" / "fixtures" / "tiny-acestep"


def stereo_signal(sample_rate: int, seconds: float) -> np.ndarray:
    """A reproducible stereo float32 signal [2, frames]: two tones per channel plus a little seeded noise."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    noise = np.random.default_rng(20261126).uniform(-1.0, 1.0, size=(2, t.size))
    left = 0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 331.0 * t)
    right = 0.3 * np.sin(2 * np.pi * 277.2 * t) + 0.2 * np.sin(2 * np.pi * 415.3 * t)
    return (np.stack([left, right]) + 0.05 * noise).astype(np.float32)


# JUCE's MemoryBlock::toBase64Encoding alphabet: "<size>.<chars>", 6 bits per char, least significant first.
_JUCE_BASE64 = ".ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+"


_JUCE_DIGIT = {char: value for value, char in enumerate(_JUCE_BASE64)}


def juce_base64_decode(text: str) -> bytes:
    """Decodes JUCE's own base64 variant ("154.6Ihck..."), in one pass over the characters."""
    size_text, _, chars = text.strip().partition(".")
    size = int(size_text)
    out = bytearray()
    bits = pending = 0
    for char in chars:
        bits |= _JUCE_DIGIT[char] << pending
        pending += 6
        if pending >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            pending -= 8
    if pending:
        out.append(bits)
    return bytes(out[:size]).ljust(size, b"\0")


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


def nice_plug_json(payload: bytes) -> dict:
    """Parses a nice-plug VST3 component state: its JSON (`params`, and `fields` for `#[persist]` fields)."""
    return json.loads(payload.decode("utf-8"))


def vst3_preset_component(data: bytes) -> bytes:
    """The component state inside a VST3 preset stream (Steinberg's `.vstpreset` layout: "VST3", version,
    32-byte class id, offset of a chunk list whose "Comp" entry gives the component state's offset and size)."""
    if data[:4] != b"VST3":
        raise ValueError(f"not a VST3 preset stream (starts with {data[:4]!r})")
    listing = int.from_bytes(data[40:48], "little")
    if data[listing : listing + 4] != b"List":
        raise ValueError(f"no chunk list at offset {listing}")
    for entry in range(int.from_bytes(data[listing + 4 : listing + 8], "little")):
        at = listing + 8 + 20 * entry
        if data[at : at + 4] == b"Comp":
            offset = int.from_bytes(data[at + 4 : at + 12], "little")
            size = int.from_bytes(data[at + 12 : at + 20], "little")
            return data[offset : offset + size]
    raise ValueError("the chunk list has no Comp entry")


_ICOMPONENT = re.compile(r"<IComponent>([^<]+)</IComponent>")


def _juce_state(path: Path) -> tuple[str, bytes, re.Match]:
    """A DawDreamer `save_state` file's parts: `VC2!`, a length, JUCE XML whose `<IComponent>` holds the VST3
    component state in JUCE base64, then what follows the XML. Returns the XML, the tail and the match."""
    data = path.read_bytes()
    if data[:4] != b"VC2!":
        raise ValueError(f"{path}: not a JUCE VST3 state (starts with {data[:4]!r})")
    length = int.from_bytes(data[4:8], "little")
    xml = data[8 : 8 + length].decode("utf-8")
    match = _ICOMPONENT.search(xml)
    if match is None:
        raise ValueError(f"{path}: no <IComponent> in the JUCE state XML")
    return xml, data[8 + length :], match


def dawdreamer_state_json(path: Path) -> dict:
    """The nice-plug JSON inside a DawDreamer `save_state` file."""
    return nice_plug_json(juce_base64_decode(_juce_state(path)[2].group(1)))


def write_dawdreamer_state_json(path: Path, state: dict) -> None:
    """Rewrites the DawDreamer `save_state` file at `path` so its component state is `state` (nice-plug JSON),
    as a crafted project file would hold it."""
    xml, tail, match = _juce_state(path)
    payload = juce_base64_encode(json.dumps(state).encode("utf-8"))
    body = (xml[: match.start(1)] + payload + xml[match.end(1) :]).encode("utf-8")
    path.write_bytes(b"VC2!" + len(body).to_bytes(4, "little") + body + tail)


def ardour_chunk_json(chunk: str) -> dict:
    """The nice-plug JSON inside an Ardour session's `<vst3><chunk>` (standard base64)."""
    return nice_plug_json(vst3_preset_component(base64.b64decode(chunk)))


def persisted_field(state: dict, key: str):
    """A `#[persist]` field of a nice-plug state (stored as a JSON string), decoded."""
    return json.loads(state["fields"][key])


def read_wav(path) -> tuple[int, np.ndarray]:
    """(sample rate, float32 [channels, frames]) of a 16/24/32-bit integer PCM WAV (plain or
    WAVE_FORMAT_EXTENSIBLE, which Python 3.11's `wave` cannot read), scaled by 2^(bits-1) as the engine's
    `read_wav` does, so a take file reads back as exactly the samples the plugin plays."""
    data = Path(path).read_bytes()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    chunks, offset = {}, 12
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        chunks.setdefault(data[offset : offset + 4], data[offset + 8 : offset + 8 + size])
        offset += 8 + size + (size & 1)
    fmt, body = chunks[b"fmt "], chunks[b"data"]
    tag, channels, rate = (int.from_bytes(fmt[a:b], "little") for a, b in ((0, 2), (2, 4), (4, 8)))
    bits = int.from_bytes(fmt[14:16], "little")
    pcm = tag == 1 or (tag == 0xFFFE and fmt[24:26] == b"\x01\x00")
    if not pcm or bits not in (16, 24, 32):
        raise ValueError(f"{path}: format tag {tag}, {bits} bits is not 16/24/32-bit integer PCM")
    raw = np.frombuffer(body, dtype=np.uint8)
    if bits == 24:
        padded = np.zeros((raw.size // 3, 4), dtype=np.uint8)
        padded[:, 1:] = raw[: raw.size // 3 * 3].reshape(-1, 3)
        ints = padded.view("<i4").ravel() >> 8
    else:
        ints = raw.view({16: "<i2", 32: "<i4"}[bits]).astype(np.int32)
    samples = ints.astype(np.float32) * np.float32(2.0 ** (1 - bits))
    return rate, samples.reshape(-1, channels).T
