"""The size a compressed image frame will decode to, read from the codestream's own header.

A DICOM file's Rows and Columns may disagree with its compressed pixel data, and decoders allocate
what the codestream says. So before a compressed frame is decoded its header is read:

- JPEG (baseline, extended, lossless) and JPEG-LS: the first SOFn / SOF55 segment (height, width, components);
- JPEG 2000: the SIZ segment of the codestream (also inside a JP2 file's `jp2c` box).

Only the first bytes of the frame are read; nothing is decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

JPEG_SOI = b"\xff\xd8"
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
# Start-of-frame markers: SOF0-SOF15 except DHT (C4), JPG (C8), DAC (CC); F7 is JPEG-LS's SOF55.
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC} | {0xF7}
STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}
MAX_BOXES = 64


@dataclass(frozen=True)
class FrameSize:
    """What a codestream declares: rows, columns and components per pixel."""

    rows: int
    columns: int
    components: int


def _jpeg_size(data: bytes) -> FrameSize | None:
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in STANDALONE_MARKERS:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in SOF_MARKERS:
            if position + 10 > len(data):
                return None
            rows, columns = struct.unpack_from(">HH", data, position + 5)
            return FrameSize(rows, columns, data[position + 9])
        position += 2 + length
    return None


def _j2k_size(data: bytes) -> FrameSize | None:
    if len(data) < 42:
        return None
    width, height, x_offset, y_offset = struct.unpack_from(">IIII", data, 8)
    (components,) = struct.unpack_from(">H", data, 40)
    return FrameSize(max(height - y_offset, 0), max(width - x_offset, 0), components)


def _jp2_codestream(data: bytes) -> bytes | None:
    position = 0
    for _ in range(MAX_BOXES):
        if position + 8 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if length == 1:  # a 64-bit length follows
            if position + 16 > len(data):
                return None
            (length,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        if kind == b"jp2c":
            return data[position + header :]
        if length < header:  # 0: the box runs to the end of the file
            return None
        position += length
    return None


def frame_size(data: bytes) -> FrameSize | None:
    """The size a JPEG, JPEG-LS or JPEG 2000 frame declares, or None when its header cannot be read."""
    if data.startswith(JPEG_SOI):
        return _jpeg_size(data)
    if data.startswith(JP2_SIGNATURE):
        data = _jp2_codestream(data) or b""
    if data.startswith(J2K_SOC_SIZ):
        return _j2k_size(data)
    return None
