"""The per-frame JSONL, written exactly once per frame across crashes and `--resume`.

Records are appended in frame order to ``<name>.partial`` and flushed line by line; the file is
renamed to its final name only when the input is complete. On resume the partial file is read
back: the valid prefix (records for frames 0..n-1, in order) is kept, anything after it (a line
torn by a crash, or a record not following its predecessor) is cut off, and processing restarts at
frame n. So a frame is never missing and never twice. A journal of a frame range (a unit of the
Ray engine) starts at frame ``first`` instead of 0.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)


class Journal:
    def __init__(self, final_path: Path, first: int = 0) -> None:
        self.final_path = Path(final_path)
        self.first = first
        self.partial_path = self.final_path.with_name(self.final_path.name + ".partial")
        self._offsets: list[int] = []  # byte offset of the end of record i
        self._fh: BinaryIO | None = None
        self.repaired = False

    def __len__(self) -> int:
        return len(self._offsets)

    def start_fresh(self) -> None:
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        self.partial_path.write_bytes(b"")
        self._offsets = []

    def recover(self) -> int:
        """Read the partial file back, cut it to its valid prefix; returns the number of frames kept."""
        if not self.partial_path.exists():
            self.start_fresh()
            return 0
        data = self.partial_path.read_bytes()
        offsets: list[int] = []
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                break  # a torn last line: no newline
            try:
                record = json.loads(data[pos:end])
            except ValueError:
                break
            if not isinstance(record, dict) or record.get("frame") != self.first + len(offsets):
                break
            offsets.append(end + 1)
            pos = end + 1
        keep = offsets[-1] if offsets else 0
        if keep != len(data):
            self.repaired = True
            log.warning(
                "%s: cut %d bytes after record %d (torn or out-of-order tail)",
                self.partial_path,
                len(data) - keep,
                len(offsets),
            )
            with open(self.partial_path, "r+b") as fh:
                fh.truncate(keep)
        self._offsets = offsets
        return len(offsets)

    def truncate_to(self, n: int) -> None:
        """Drop the records of frames >= n (they will be processed again)."""
        if n >= len(self._offsets):
            return
        keep = self._offsets[n - 1] if n else 0
        with open(self.partial_path, "r+b") as fh:
            fh.truncate(keep)
        self._offsets = self._offsets[:n]

    def append(self, record: dict) -> None:
        expected = self.first + len(self._offsets)
        if record.get("frame") != expected:
            raise ValueError(f"journal expects frame {expected}, got {record.get('frame')}")
        if self._fh is None:
            self._fh = open(self.partial_path, "ab")  # noqa: SIM115 - closed in close()/finish()
        line = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        self._fh.write(line)
        self._fh.flush()  # in the OS after each frame: a killed client loses at most a torn line
        prev = self._offsets[-1] if self._offsets else 0
        self._offsets.append(prev + len(line))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def finish(self) -> Path:
        self.close()
        os.replace(self.partial_path, self.final_path)
        return self.final_path


def read_records(path: Path) -> list[dict]:
    with open(path, "rb") as fh:
        return [json.loads(line) for line in fh if line.strip()]
