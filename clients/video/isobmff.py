"""ISO base media file format (MP4) boxes: a segment's layout and its video track's sample tables.

What is read is what OpenCV's writer produces (FFmpeg's mov muxer, codec mp4v): top-level ftyp,
free, mdat, moov (either order, 32- or 64-bit sizes); one trak with tkhd, edts/elst, mdia (mdhd,
hdlr, minf/stbl: stsd, stts, stss, stsc, stsz, stco or co64, ctts). Anything else is refused
loudly, in one of two ways: a file that is not a whole MP4 (truncated, a box past the end, no
index, a chunk outside its mdat, tables that disagree) raises DamagedMp4; a whole MP4 that the
sample-copy join does not handle (fragments, several tracks, an edit list that trims, sample
groups) raises Incompatible, and the caller joins by re-encoding instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.errors import PerceptionError

CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}
FRAGMENTS = {b"moof", b"mfra", b"sidx", b"styp", b"mvex"}
PADDING = {b"free", b"skip", b"wide"}
ALLOWED = {  # the children a joinable segment may have; the rest is refused (Incompatible)
    b"moov": {b"mvhd", b"trak", b"udta", b"iods", b"meta"},
    b"trak": {b"tkhd", b"edts", b"mdia", b"udta"},
    b"mdia": {b"mdhd", b"hdlr", b"minf"},
    b"minf": {b"vmhd", b"dinf", b"stbl"},
    b"stbl": {b"stsd", b"stts", b"stss", b"stsc", b"stsz", b"stco", b"co64", b"ctts"},
    b"edts": {b"elst"},
}
U32 = 0xFFFFFFFF
RATE_ONE = 0x00010000  # elst media_rate 1.0 (16.16)


class DamagedMp4(PerceptionError):
    """The file is not a whole, well-formed MP4 (truncated, damaged box sizes or tables)."""


class Incompatible(PerceptionError):  # noqa: N818 (a reason to fall back, not a failure)
    """Well-formed, but not joinable by copying samples (the reason is the message)."""

    def __init__(self, reason: str, samples: list[int | None] | None = None) -> None:
        super().__init__(reason)
        self.samples = samples or []  # each segment's sample count, None where unknown


@dataclass
class Box:
    type: bytes
    body: bytes = b""
    children: list[Box] | None = None

    def find(self, typ: bytes) -> Box | None:
        return next((c for c in self.children or [] if c.type == typ), None)

    def get(self, typ: bytes, where: str) -> Box:
        box = self.find(typ)
        if box is None:
            raise DamagedMp4(f"{where}: no {typ.decode()} box in {self.type.decode()}")
        return box

    def encode(self) -> bytes:
        body = self.body if self.children is None else b"".join(c.encode() for c in self.children)
        return box_header(self.type, len(body)) + body


def box_header(typ: bytes, body_size: int) -> bytes:
    if body_size + 8 <= U32:
        return struct.pack(">I4s", body_size + 8, typ)
    return struct.pack(">I4sQ", 1, typ, body_size + 16)  # 64-bit size


def _head(data: bytes, off: int, end: int, where: str, base: int = 0) -> tuple[bytes, int, int]:
    """(type, header size, box size) of the box at ``off``, checked against ``end``; ``base``: where
    ``data`` starts in the file (for the message)."""
    if end - off < 8:
        raise DamagedMp4(f"{where}: {end - off} stray bytes at byte {base + off}: truncated")
    size, typ = struct.unpack_from(">I4s", data, off)
    hdr = 8
    if size == 1:
        if end - off < 16:
            raise DamagedMp4(f"{where}: the box at byte {base + off} is cut short: truncated")
        size, hdr = struct.unpack_from(">Q", data, off + 8)[0], 16
    elif size == 0:  # to the end of the enclosing space
        size = end - off
    if size < hdr or off + size > end:
        raise DamagedMp4(
            f"{where}: the {typ.decode(errors='replace')} box at byte {base + off} ({size} bytes) runs "
            f"past the end ({base + end} bytes): truncated or damaged"
        )
    return typ, hdr, size


def parse_boxes(data: bytes, where: str) -> list[Box]:
    boxes, off = [], 0
    while off < len(data):
        typ, hdr, size = _head(data, off, len(data), where)
        body = data[off + hdr : off + size]
        boxes.append(Box(typ, children=parse_boxes(body, where)) if typ in CONTAINERS else Box(typ, body))
        off += size
    return boxes


def top_level(path: Path) -> tuple[bytes, Box, list[tuple[int, int]]]:
    """(the encoded ftyp, the parsed moov, the mdat payloads as (start, end) byte ranges)."""
    where, ftyp, moov, mdats = path.name, None, None, []
    size, off = path.stat().st_size, 0
    with open(path, "rb") as f:
        while off < size:
            f.seek(off)
            typ, hdr, n = _head(f.read(16).ljust(16, b"\0"), 0, size - off, where, off)
            if off == 0 and typ != b"ftyp":
                raise DamagedMp4(f"{where}: does not start with an ftyp box: not an MP4 file")
            if typ == b"mdat":
                mdats.append((off + hdr, off + n))
            elif typ in (b"moov", b"ftyp"):
                if (moov if typ == b"moov" else ftyp) is not None:
                    raise Incompatible(f"{where}: two {typ.decode()} boxes")
                f.seek(off + hdr)
                body = f.read(n - hdr)
                if typ == b"ftyp":
                    ftyp = box_header(typ, len(body)) + body
                else:
                    moov = Box(typ, children=parse_boxes(body, where))
            elif typ in FRAGMENTS:
                raise Incompatible(f"{where}: a fragmented MP4 ({typ.decode()} box)")
            elif typ not in PADDING:
                raise Incompatible(f"{where}: top-level box {typ.decode(errors='replace')!r}")
            off += n
    if moov is None:
        raise DamagedMp4(f"{where}: no moov box (the index): the file was never closed")
    if ftyp is None:
        raise DamagedMp4(f"{where}: no ftyp box: not an MP4 file")
    return ftyp, moov, mdats


# --- full boxes: mvhd, tkhd, mdhd carry a version-dependent duration ------------------------------
_MIDDLE = {b"mvhd": 4, b"mdhd": 4, b"tkhd": 8}  # bytes between modification time and duration


def _duration_at(box: Box) -> tuple[int, int]:
    """(offset, width) of the duration field in the box's body."""
    wide = box.body[0] == 1
    return (4 + (16 if wide else 8) + _MIDDLE[box.type], 8 if wide else 4)


def duration(box: Box) -> int:
    off, width = _duration_at(box)
    return struct.unpack_from(">Q" if width == 8 else ">I", box.body, off)[0]


def timescale(box: Box) -> int:  # mvhd, mdhd
    return struct.unpack_from(">I", box.body, 20 if box.body[0] == 1 else 12)[0]


def set_duration(box: Box, value: int) -> None:
    """Write ``value`` as the box's duration, moving to version 1 when it needs 64 bits."""
    off, width = _duration_at(box)
    body = box.body
    if width == 4 and value > U32:
        created, modified = struct.unpack_from(">II", body, 4)
        body = (
            bytes([1])
            + body[1:4]
            + struct.pack(">QQ", created, modified)
            + body[12:off]
            + bytes(4)
            + body[off + 4 :]
        )
        off, width = _duration_at(Box(box.type, body))
    box.body = body[:off] + struct.pack(">Q" if width == 8 else ">I", value) + body[off + width :]


# --- sample tables --------------------------------------------------------------------------------
def table(box: Box, columns: int, where: str, skip: int = 0, dtype: str = ">u4") -> np.ndarray:
    """The entries of a full box's table (count at byte 4 + skip, entries after it) as int64 rows."""
    count = struct.unpack_from(">I", box.body, 4 + skip)[0]
    width = np.dtype(dtype).itemsize * columns
    if len(box.body) < 8 + skip + count * width:
        raise DamagedMp4(f"{where}: the {box.type.decode()} table is shorter than its {count} entries")
    flat = np.frombuffer(box.body, dtype, count * columns, 8 + skip).astype(np.int64)
    return flat.reshape(count, columns) if columns > 1 else flat


def encode_table(
    typ: bytes, rows: np.ndarray, dtype: str = ">u4", prefix: bytes = b"", head: bytes = bytes(4)
) -> Box:
    """A full box (``head``: version and flags): ``prefix`` (e.g. stsz's sample_size), the entry
    count, the entries."""
    body = head + prefix + struct.pack(">I", len(rows)) + np.asarray(rows, dtype).tobytes()
    return Box(typ, body)


def chunk_offsets(offsets: np.ndarray) -> Box:
    """stco, or co64 when an offset needs more than 32 bits (a file past 4 GiB)."""
    if len(offsets) and int(offsets.max()) > U32:
        return encode_table(b"co64", offsets, ">u8")
    return encode_table(b"stco", offsets)


def check_children(box: Box, where: str) -> None:
    extra = {c.type for c in box.children or []} - ALLOWED[box.type]
    if extra:
        names = ", ".join(sorted(t.decode(errors="replace") for t in extra))
        raise Incompatible(f"{where}: {box.type.decode()} holds {names}, which this join does not handle")


# --- a segment: its one video track ---------------------------------------------------------------
@dataclass
class Segment:
    path: Path
    ftyp: bytes
    moov: Box
    movie_timescale: int
    timescale: int  # the track's (mdhd)
    stsd: bytes  # the sample descriptions' body
    sizes: np.ndarray  # per sample
    stts: np.ndarray  # (count, delta) rows
    ctts: np.ndarray | None  # (count, offset) rows, the offsets' raw 32 bits
    sync: np.ndarray | None  # 1-based sync sample numbers; None: every sample is one
    offsets: np.ndarray  # per chunk, in the file
    per_chunk: np.ndarray  # samples per chunk
    edit: tuple[int, int] | None  # the one elst entry: (segment duration, media time)

    @property
    def samples(self) -> int:
        return len(self.sizes)

    @property
    def duration(self) -> int:  # in the track's timescale
        return int((self.stts[:, 0] * self.stts[:, 1]).sum())

    @property
    def chunk_sizes(self) -> np.ndarray:
        if not len(self.per_chunk):
            return np.zeros(0, np.int64)
        return np.add.reduceat(self.sizes, np.cumsum(self.per_chunk) - self.per_chunk)

    def trak(self) -> Box:
        return self.moov.get(b"trak", self.path.name)

    def stbl(self) -> Box:
        where = self.path.name
        return self.trak().get(b"mdia", where).get(b"minf", where).get(b"stbl", where)


def read_segment(path: Path) -> Segment:
    """The segment's layout and tables, checked (see the module doc for what is refused)."""
    try:
        return _read_segment(path)
    except (struct.error, IndexError) as exc:  # a box too short for the fields it must hold
        raise DamagedMp4(f"{path.name}: a box is too short for its fields ({exc})") from exc


def _read_segment(path: Path) -> Segment:
    where = path.name
    ftyp, moov, mdats = top_level(path)
    check_children(moov, where)
    traks = [c for c in moov.children or [] if c.type == b"trak"]
    if len(traks) != 1:
        raise Incompatible(f"{where}: {len(traks)} tracks, not one")
    trak = traks[0]
    mdia = trak.get(b"mdia", where)
    minf = mdia.get(b"minf", where)
    stbl = minf.get(b"stbl", where)
    for box in (trak, mdia, minf, stbl):
        check_children(box, where)
    for box in (moov.get(b"mvhd", where), trak.get(b"tkhd", where), mdia.get(b"mdhd", where)):
        if box.body[0] > 1:
            raise Incompatible(f"{where}: {box.type.decode()} version {box.body[0]}")
    handler = mdia.get(b"hdlr", where).body[8:12]
    if handler != b"vide":
        raise Incompatible(f"{where}: the track is {handler.decode(errors='replace')!r}, not video")
    stsd = stbl.get(b"stsd", where).body
    if len(stsd) < 8 or struct.unpack_from(">I", stsd, 4)[0] != 1:
        raise Incompatible(f"{where}: not exactly one sample description")
    sizes, stts, per_chunk, offsets = _tables(stbl, where)
    _check_chunks(offsets, per_chunk, sizes, mdats, where)
    stss = stbl.find(b"stss")
    sync = table(stss, 1, where) if stss is not None else None
    if (
        sync is not None
        and len(sync)
        and (sync.min() < 1 or sync.max() > len(sizes) or (np.diff(sync) <= 0).any())
    ):
        raise DamagedMp4(f"{where}: the sync samples (stss) are not increasing sample numbers")
    ctts_box = stbl.find(b"ctts")
    ctts = table(ctts_box, 2, where) if ctts_box is not None else None
    if ctts is not None and int(ctts[:, 0].sum()) != len(sizes):
        raise DamagedMp4(f"{where}: ctts covers {int(ctts[:, 0].sum())} samples, not {len(sizes)}")
    seg = Segment(
        path=path,
        ftyp=ftyp,
        moov=moov,
        movie_timescale=timescale(moov.get(b"mvhd", where)),
        timescale=timescale(mdia.get(b"mdhd", where)),
        stsd=stsd,
        sizes=sizes,
        stts=stts,
        ctts=ctts,
        sync=sync,
        offsets=offsets,
        per_chunk=per_chunk,
        edit=_edit(trak, where),
    )
    if duration(mdia.get(b"mdhd", where)) != seg.duration:
        raise Incompatible(f"{where}: the track's duration is not its samples' ({seg.duration})")
    return seg


def _tables(stbl: Box, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sample sizes, stts rows, samples per chunk, chunk offsets), checked against each other."""
    stsz = stbl.get(b"stsz", where)
    fixed, count = struct.unpack_from(">II", stsz.body, 4)
    sizes = np.full(count, fixed, np.int64) if fixed else table(stsz, 1, where, skip=4)
    stts = table(stbl.get(b"stts", where), 2, where)
    if int(stts[:, 0].sum()) != count:
        raise DamagedMp4(f"{where}: stts covers {int(stts[:, 0].sum())} samples, stsz has {count}")
    co64 = stbl.find(b"co64")
    offsets = (
        table(co64, 1, where, dtype=">u8") if co64 is not None else table(stbl.get(b"stco", where), 1, where)
    )
    stsc = table(stbl.get(b"stsc", where), 3, where)
    firsts = stsc[:, 0]
    if len(stsc) and (firsts[0] != 1 or (np.diff(firsts) <= 0).any() or firsts[-1] > len(offsets)):
        raise DamagedMp4(f"{where}: the sample-to-chunk table (stsc) does not fit its {len(offsets)} chunks")
    if len(stsc) and ((stsc[:, 2] != 1).any() or (stsc[:, 1] < 1).any()):
        raise Incompatible(f"{where}: a chunk with no samples or another sample description")
    runs = np.diff(np.append(firsts, len(offsets) + 1))
    per_chunk = np.repeat(stsc[:, 1], runs) if len(stsc) else np.zeros(0, np.int64)
    if len(per_chunk) != len(offsets) or int(per_chunk.sum()) != count:
        raise DamagedMp4(f"{where}: the chunks hold {int(per_chunk.sum())} samples, stsz has {count}")
    return sizes, stts, per_chunk, offsets


def _check_chunks(offsets: np.ndarray, per_chunk: np.ndarray, sizes: np.ndarray, mdats, where: str) -> None:
    ends = offsets + (np.add.reduceat(sizes, np.cumsum(per_chunk) - per_chunk) if len(per_chunk) else 0)
    inside = np.zeros(len(offsets), bool)
    for start, end in mdats:
        inside |= (offsets >= start) & (ends <= end)
    if not inside.all():
        bad = int(np.argmin(inside))
        raise DamagedMp4(
            f"{where}: chunk {bad + 1} (bytes {int(offsets[bad])}..{int(ends[bad])}) lies outside the "
            "media data (mdat): truncated or damaged"
        )


def _edit(trak: Box, where: str) -> tuple[int, int] | None:
    edts = trak.find(b"edts")
    if edts is None:
        return None
    check_children(edts, where)
    elst = edts.get(b"elst", where)
    if elst.body[0] > 1:
        raise Incompatible(f"{where}: elst version {elst.body[0]}")
    wide = elst.body[0] == 1
    count = struct.unpack_from(">I", elst.body, 4)[0]
    fmt = ">QqI" if wide else ">IiI"
    if count != 1 or len(elst.body) < 8 + struct.calcsize(fmt):
        raise Incompatible(f"{where}: an edit list of {count} entries")
    span, media_time, rate = struct.unpack_from(fmt, elst.body, 8)
    if media_time != 0 or rate != RATE_ONE:
        raise Incompatible(f"{where}: an edit list that shifts or scales the media ({media_time}, {rate:#x})")
    return span, media_time
