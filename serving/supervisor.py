"""Keep a tritonserver whole: restart it when a python-backend stub dies or the server exits by itself.

Triton 2.51's python backend neither restarts a stub that died (the restart on the next request
was disabled in 24.06, triton-inference-server/server#7347) nor reports its model not ready
(server#8604): measured here, after ``kill -9`` of one of two network stubs the model stays ready,
the dead instance fails one batch a second with INTERNAL "Stub process '<instance>' is not healthy"
and the model runs at half its capacity for good. The :class:`Supervisor` watches the stubs from
``/proc`` (serving.stubs) and, when one is gone, restarts the server on the same ports
(:meth:`TritonServer.restart`, SIGKILL): clients see UNAVAILABLE and retry, and the repository's
instances are all back once the new process is ready. More than ``max_restarts`` restarts within
``window_s`` and it gives up, stopping the server, so that ``percept serve`` exits non-zero and an
orchestrator sees it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from serving.errors import ServingError
from serving.launcher import TritonServer
from serving.stubs import stubs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SupervisorOptions:
    poll_s: float = 0.25  # how often the stubs are read (a dead one fails about one batch a second)
    max_restarts: int = 5
    window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.poll_s <= 0 or self.max_restarts < 0 or self.window_s <= 0:
            raise ServingError("poll_s and window_s must be > 0, max_restarts >= 0")


@dataclass(frozen=True)
class Restart:
    reason: str
    detected_at: float  # time.monotonic() when the fault was seen
    ready_after_s: float  # from detection until the restarted server was ready (inf: it failed)


@dataclass
class _State:
    restarts: list[Restart] = field(default_factory=list)
    gave_up: str = ""


def expected_instances(server: TritonServer) -> set[str]:
    """The stub instances a ready server runs (its python-backend model instances)."""
    if server.pid is None:
        return set()
    return {s.instance for s in stubs(server.pid) if s.alive and s.instance}


class Supervisor:
    """``with Supervisor(server): ...`` watches ``server`` (already started) from a thread."""

    def __init__(self, server: TritonServer, options: SupervisorOptions | None = None) -> None:
        self.server = server
        self.options = options or SupervisorOptions()
        self.state = _State()
        self._expected = expected_instances(server)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="triton-supervisor", daemon=True)

    @property
    def restarts(self) -> list[Restart]:
        return list(self.state.restarts)

    def fault(self) -> str | None:
        """What is wrong with the server now, or None."""
        if not self.server.running:
            return "tritonserver exited"
        pid = self.server.pid
        alive = {s.instance for s in stubs(pid) if s.alive} if pid is not None else set()
        missing = sorted(self._expected - alive)
        return f"python-backend stub(s) {', '.join(missing)} died" if missing else None

    def start(self) -> Supervisor:
        if not self._expected:
            log.info("supervisor: no python-backend stubs to watch; watching the server process only")
        self._thread.start()
        return self

    def stand_down(self, join: bool = True) -> None:
        """Stop watching (before a deliberate stop, so that it is not taken for a crash);
        ``join=False`` from a signal handler."""
        self._stop.set()
        if join and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._done.wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the supervisor stands down or gives up (True), or ``timeout`` passes."""
        return self._done.wait(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.options.poll_s):
                reason = self.fault()
                if reason is not None and not self._stop.is_set():
                    self._recover(reason)
                    if self.state.gave_up:
                        return
        finally:
            self._done.set()
        # the launcher's PR_SET_PDEATHSIG fires when the *thread* that started the server ends: a
        # server restarted from here must outlive the watching, so this thread waits for it to stop
        while self.state.restarts and self.server.running:
            time.sleep(0.2)

    def _recover(self, reason: str) -> None:
        now = time.monotonic()
        recent = [r for r in self.state.restarts if now - r.detected_at < self.options.window_s]
        if len(recent) >= self.options.max_restarts:
            window = self.options.window_s
            self.state.gave_up = f"{reason}; {len(recent)} restarts in {window:.0f}s: giving up"
            log.error("supervisor: %s", self.state.gave_up)
            self.server.stop()
            return
        log.error("supervisor: %s; restarting tritonserver on the same ports", reason)
        try:
            self.server.restart()
        except ServingError as exc:
            self.state.restarts.append(Restart(reason, now, float("inf")))
            log.error("supervisor: restart failed: %s", exc)
            return
        ready = time.monotonic() - now
        self.state.restarts.append(Restart(reason, now, ready))
        self._expected |= expected_instances(self.server)
        log.warning("supervisor: tritonserver ready again %.1fs after the fault was seen", ready)

    def __enter__(self) -> Supervisor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stand_down()
