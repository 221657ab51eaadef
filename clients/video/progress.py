"""Progress bars of `percept video`: one for the whole run and one per input being processed (the
local engine), or one for the whole run with its units (the Ray engine)."""

from __future__ import annotations

import threading

from tqdm import tqdm


class Bars:
    """A tqdm bar for the whole run and one per input being processed."""

    def __init__(self, enabled: bool, slots: int) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()
        self.total = tqdm(total=0, desc="all inputs", unit="frame", position=0, disable=not enabled)
        self._bars: dict[int, tqdm] = {}

    def open(self, slot: int, name: str, total: int, initial: int) -> None:
        with self._lock:
            self.total.total = (self.total.total or 0) + max(total - initial, 0)
            self.total.refresh()
            self._bars[slot] = tqdm(
                total=total or None,
                initial=initial,
                desc=name[:24],
                unit="frame",
                position=slot + 1,
                leave=False,
                disable=not self.enabled,
            )

    def advance(self, slot: int) -> None:
        with self._lock:
            if slot in self._bars:
                self._bars[slot].update(1)
            self.total.update(1)

    def close(self, slot: int) -> None:
        with self._lock:
            bar = self._bars.pop(slot, None)
            if bar is not None:
                bar.close()

    def finish(self) -> None:
        self.total.close()


class RunBar:
    """The Ray engine's one bar for the whole run: frames (tqdm's rate is the frames/s) and units."""

    def __init__(self, enabled: bool, frames: int, units: int) -> None:
        self.units = units
        self.bar = tqdm(total=frames or None, desc="run", unit="frame", disable=not enabled)
        self.show(0, 0, 0)

    def show(self, frames: int, done: int, failed: int) -> None:
        if frames > self.bar.n:
            self.bar.update(frames - self.bar.n)
        self.bar.set_postfix_str(f"units {done}/{self.units} done, {failed} failed", refresh=True)

    def finish(self) -> None:
        self.bar.close()
