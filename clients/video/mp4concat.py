"""Join MP4 segments by copying their coded samples: no frame is decoded or encoded.

The output is the first segment's ftyp, one mdat holding every segment's chunks in order, and the
first segment's moov with its sample tables replaced by the concatenation of all of them (sample
sizes; time-to-sample runs; sync samples shifted by the samples before; chunks renumbered, their
offsets those of the new layout, co64 when the file passes 4 GiB) and its durations (mvhd, tkhd,
mdhd, the edit list) those of the whole. Segments join when they are alike: one video track, the
same timescales, the same sample description (codec, frame size, decoder configuration) up to the
bitrate fields FFmpeg writes per file (esds, btrt), which are set for the whole. Otherwise
``Incompatible`` says why and the caller re-encodes (clients.video.mp4).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from clients.video.isobmff import (
    U32,
    Box,
    DamagedMp4,
    Incompatible,
    Segment,
    box_header,
    chunk_offsets,
    encode_table,
    read_segment,
    set_duration,
)

COPY_BLOCK = 8 << 20


def join(parts: list[Path], out: Path) -> int:
    """Write the segments, in order, as one MP4 at ``out``; returns its number of frames.

    Raises Incompatible when they cannot be joined by copying (before writing anything), DamagedMp4
    for a segment that is not a whole MP4 (``out`` may then hold part of a file: the caller removes
    it)."""
    segs = _read_all(parts)
    first = segs[0]
    for seg in segs[1:]:
        reason = _difference(first, seg)
        if reason:
            raise Incompatible(reason, [s.samples for s in segs])
    sizes = np.concatenate([s.sizes for s in segs])
    chunk_sizes = np.concatenate([s.chunk_sizes for s in segs])
    payload = int(sizes.sum())
    mdat = box_header(b"mdat", payload)
    offsets = len(first.ftyp) + len(mdat) + np.cumsum(chunk_sizes) - chunk_sizes
    moov = _moov(segs, sizes, offsets)
    with open(out, "wb") as dst:
        dst.write(first.ftyp)
        dst.write(mdat)
        for seg in segs:
            _copy_chunks(seg, dst)
        dst.write(moov.encode())
    return len(sizes)


def _read_all(parts: list[Path]) -> list[Segment]:
    segs: list[Segment | None] = []
    reasons = []
    for path in parts:
        try:
            segs.append(read_segment(path))
        except Incompatible as exc:  # read on: a damaged segment further on must still be reported
            segs.append(None)
            reasons.append(str(exc))
    if reasons:
        raise Incompatible("; ".join(reasons), [s.samples if s else None for s in segs])
    return [s for s in segs if s is not None]


def _difference(a: Segment, b: Segment) -> str | None:
    """Why ``b`` cannot follow ``a`` in one track, or None."""
    names = f"{b.path.name} and {a.path.name}"
    if (a.timescale, a.movie_timescale) != (b.timescale, b.movie_timescale):
        return f"{names} have other timescales ({b.timescale} and {a.timescale}: another frame rate)"
    if _masked(a.stsd) != _masked(b.stsd):
        return (
            f"{names} have other sample descriptions (codec, frame size: "
            f"{_frame_size(b.stsd)} and {_frame_size(a.stsd)})"
        )
    if (a.ctts is None) != (b.ctts is None):
        return f"{names}: one has composition offsets (ctts), the other not"
    return None


# --- the sample description's bitrate fields ------------------------------------------------------
_VISUAL_ENTRY = 86  # a VisualSampleEntry's header and fixed fields, before its child boxes


def _frame_size(stsd: bytes) -> str:
    width, height = struct.unpack_from(">HH", stsd, 8 + 32) if len(stsd) >= 44 else (0, 0)
    return f"{width}x{height}"


def _bitrate_slots(stsd: bytes) -> list[tuple[str, int, int]]:
    """(field, offset, width) of the bitrate fields in a visual sample entry's esds and btrt."""
    slots: list[tuple[str, int, int]] = []
    if len(stsd) < 16:
        return slots
    end = min(len(stsd), 8 + struct.unpack_from(">I", stsd, 8)[0])
    off = 8 + _VISUAL_ENTRY
    while off + 8 <= end:
        size, typ = struct.unpack_from(">I4s", stsd, off)
        if size < 8 or off + size > end:
            break
        if typ == b"btrt" and size >= 20:
            slots += [("buffer", off + 8, 4), ("max", off + 12, 4), ("avg", off + 16, 4)]
        elif typ == b"esds":
            config = _decoder_config(stsd, off + 12, off + size)
            if config is not None and config + 13 <= off + size:
                slots += [("buffer", config + 2, 3), ("max", config + 5, 4), ("avg", config + 9, 4)]
        off += size
    return slots


def _descriptor(data: bytes, off: int) -> tuple[int, int]:
    """(tag, offset of the body) of the MPEG-4 descriptor at ``off`` (its length: 7 bits a byte)."""
    tag, off = data[off], off + 1
    for _ in range(4):
        more, off = data[off] & 0x80, off + 1
        if not more:
            break
    return tag, off


def _decoder_config(data: bytes, off: int, end: int) -> int | None:
    """Where the DecoderConfigDescriptor's body starts in an esds (ES_Descriptor, tag 3)."""
    try:
        tag, off = _descriptor(data, off)
        if tag != 3:
            return None
        flags, off = data[off + 2], off + 3
        off += 2 if flags & 0x80 else 0  # dependsOn_ES_ID
        off += 1 + data[off] if flags & 0x40 else 0  # URL
        off += 2 if flags & 0x20 else 0  # OCR_ES_Id
        tag, off = _descriptor(data, off)
    except IndexError:
        return None
    return off if tag == 4 and off < end else None


def _masked(stsd: bytes) -> bytes:
    data = bytearray(stsd)
    for _, off, width in _bitrate_slots(stsd):
        data[off : off + width] = bytes(width)
    return bytes(data)


def _with_bitrates(segs: list[Segment], sizes: np.ndarray, stts: np.ndarray) -> bytes:
    """The first segment's stsd with the whole's average bitrate, and the largest maximum bitrate
    and decoder buffer that any segment declares (the encoder's settings, not measured)."""
    first, ts = segs[0].stsd, segs[0].timescale
    data = bytearray(first)
    total = int((stts[:, 0] * stts[:, 1]).sum())
    for name, off, width in _bitrate_slots(first):
        if name == "avg":
            value = int(sizes.sum()) * 8 * ts // total if total else 0
        else:
            value = max(int.from_bytes(s.stsd[off : off + width], "big") for s in segs)
        data[off : off + width] = min(value, (1 << (8 * width)) - 1).to_bytes(width, "big")
    return bytes(data)


# --- the new moov ---------------------------------------------------------------------------------
def _runs(rows: np.ndarray) -> np.ndarray:
    """(count, value) rows with neighbours of equal value merged."""
    merged: list[list[int]] = []
    for count, value in rows.tolist():
        if merged and merged[-1][1] == value:
            merged[-1][0] += count
        elif count:
            merged.append([count, value])
    return np.array(merged, np.int64).reshape(-1, 2)


def _sync(segs: list[Segment]) -> np.ndarray | None:
    if all(s.sync is None for s in segs):
        return None  # every sample is a sync sample
    parts, before = [], 0
    for s in segs:
        parts.append((s.sync if s.sync is not None else np.arange(1, s.samples + 1)) + before)
        before += s.samples
    return np.concatenate(parts)


def _moov(segs: list[Segment], sizes: np.ndarray, offsets: np.ndarray) -> Box:
    first = segs[0]
    where = first.path.name
    stts = _runs(np.concatenate([s.stts for s in segs]))
    per_chunk = np.concatenate([s.per_chunk for s in segs])
    change = np.flatnonzero(np.diff(per_chunk, prepend=-1) != 0)
    stsc = np.stack([change + 1, per_chunk[change], np.ones_like(change)], axis=1)
    table = [
        Box(b"stsd", _with_bitrates(segs, sizes, stts)),
        encode_table(b"stts", stts),
    ]
    if first.ctts is not None:
        ctts = np.concatenate([s.ctts for s in segs if s.ctts is not None])
        head = first.stbl().get(b"ctts", where).body[:4]  # version 1: signed offsets, kept as bits
        table.append(encode_table(b"ctts", _runs(ctts), head=head))
    sync = _sync(segs)
    if sync is not None:
        table.append(encode_table(b"stss", sync))
    table += [
        encode_table(b"stsc", stsc),
        encode_table(b"stsz", sizes, prefix=bytes(4)),
        chunk_offsets(offsets),
    ]
    first.stbl().children = table

    media = int((stts[:, 0] * stts[:, 1]).sum())
    movie = -(-media * first.movie_timescale // first.timescale)  # rounded up, as the muxer does
    trak = first.trak()
    mdia = trak.get(b"mdia", where)
    set_duration(mdia.get(b"mdhd", where), media)
    set_duration(first.moov.get(b"mvhd", where), movie)
    set_duration(trak.get(b"tkhd", where), movie)
    if first.edit is not None:
        elst = trak.get(b"edts", where).get(b"elst", where)
        wide = movie > U32 or elst.body[0] == 1
        entry = struct.pack(">QqI" if wide else ">IiI", movie, 0, 0x00010000)
        elst.body = bytes([1 if wide else 0]) + elst.body[1:4] + struct.pack(">I", 1) + entry
    return first.moov


def _copy_chunks(seg: Segment, dst: BinaryIO) -> None:
    """Copy the segment's chunks in order, neighbouring ones as one range."""
    offsets, lengths = seg.offsets, seg.chunk_sizes
    if not len(offsets):
        return
    breaks = np.flatnonzero(offsets[1:] != offsets[:-1] + lengths[:-1]) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(offsets)]])
    with open(seg.path, "rb") as src:
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            start = int(offsets[a])
            _copy_range(src, dst, start, int(offsets[b - 1] + lengths[b - 1]) - start, seg.path.name)


def _copy_range(src: BinaryIO, dst: BinaryIO, start: int, length: int, name: str) -> None:
    """``length`` bytes from ``start`` in ``src`` appended to ``dst``: in the kernel where it can
    (copy_file_range: no pass through user space), else read and written in blocks."""
    if hasattr(os, "copy_file_range"):
        dst.flush()
        try:
            while length:
                n = os.copy_file_range(src.fileno(), dst.fileno(), length, start)
                if not n:
                    raise DamagedMp4(f"{name}: ended while its samples were copied")
                start, length = start + n, length - n
            return
        except OSError:  # not between these file systems: copy what is left in user space
            dst.seek(0, os.SEEK_END)
    src.seek(start)
    while length:
        block = src.read(min(length, COPY_BLOCK))
        if not block:
            raise DamagedMp4(f"{name}: ended while its samples were copied")
        dst.write(block)
        length -= len(block)
