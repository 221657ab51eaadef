"""The processes of a running tritonserver, read from ``/proc`` (Linux): its python-backend stubs
(one per model instance) and the resident memory of each.

Triton starts one ``triton_python_backend_stub`` child per instance of a python-backend model; its
command line carries the model's ``model.py`` path and, further on, the instance name
(``cam_n_0_1``). A stub that died stays a zombie child of the server (Triton 2.51 does not reap or
restart it), so "alive" means: the process exists and is not in state Z.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

STUB_NAME = "triton_python_backend_stub"
_PROC = Path("/proc")
SHM = Path("/dev/shm")


@dataclass(frozen=True)
class StubProcess:
    pid: int
    model: str  # the model's folder name in the repository
    instance: str  # Triton's instance name, e.g. "cam_n_0_1" ("" when the command line lacks it)
    alive: bool
    shm_region: str = ""  # its shared-memory region, a file in /dev/shm while the stub runs


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...), None when gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid``, None when it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (utime + stime; 0 when it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
        return [a for a in raw.decode(errors="replace").split("\0") if a]
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (zombies included)."""
    out = []
    for entry in os.listdir(_PROC):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[1] == pid:
                out.append(int(entry))
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (0 when it is gone or a zombie)."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def stub_from_cmdline(pid: int, cmd: list[str], state: str) -> StubProcess | None:
    if not cmd or not cmd[0].endswith(STUB_NAME):
        return None
    model = Path(cmd[1]).parent.parent.name if len(cmd) > 1 else ""
    # the instance name follows the model name's prefix among the arguments (<model>_<group>_<n>)
    prefix = model + "_"
    instance = next((a for a in cmd[2:] if a.startswith(prefix) and a[len(prefix) :][:1].isdigit()), "")
    region = cmd[2] if len(cmd) > 2 else ""
    return StubProcess(pid, model, instance, alive=state != "Z", shm_region=region)


def stubs(server_pid: int) -> list[StubProcess]:
    """The python-backend stubs started by the server ``server_pid``, dead ones included (a
    zombie's command line is gone: it comes back with ``model=""``, known by its pid only)."""
    out = []
    for pid in children(server_pid):
        stat = _stat(pid)
        if stat is None:
            continue
        state = stat[0]
        cmd = _cmdline(pid)
        if state == "Z":
            out.append(StubProcess(pid, "", "", alive=False))
            continue
        stub = stub_from_cmdline(pid, cmd, state)
        if stub is not None:
            out.append(stub)
    return out


def shm_regions(server_pid: int) -> list[Path]:
    """The /dev/shm files of the server's live stubs (known from their command lines)."""
    return [SHM / s.shm_region for s in stubs(server_pid) if s.alive and s.shm_region]


def remove_regions(paths: list[Path]) -> None:
    """Unlink stub regions a killed server left behind (Triton unlinks them only on a clean stop:
    every SIGKILLed server here had left ~1 MB per stub in /dev/shm)."""
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def server_rss_bytes(server_pid: int) -> dict[str, int]:
    """RSS of the server and of each live stub, keyed "tritonserver" and by instance name."""
    out = {"tritonserver": rss_bytes(server_pid)}
    for stub in stubs(server_pid):
        if stub.alive:
            out[stub.instance or f"stub-{stub.pid}"] = rss_bytes(stub.pid)
    return out


def server_cpu_seconds(server_pid: int) -> float:
    """CPU of the server and every process it started (its python-backend stubs) so far."""
    return cpu_seconds(server_pid) + sum(cpu_seconds(pid) for pid in children(server_pid))


def tritonservers() -> list[int]:
    """Pids of the processes named tritonserver on this host (in this pid namespace)."""
    out = []
    for entry in os.listdir(_PROC):
        if entry.isdigit():
            try:
                if (_PROC / entry / "comm").read_text().strip() == "tritonserver":
                    out.append(int(entry))
            except OSError:
                continue
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m serving.stubs [PID...]``: exit 1 when a tritonserver here (or those PIDs) has a
    dead python-backend stub, or none runs; 0 otherwise. For a Kubernetes exec livenessProbe next to
    tritonserver, which stays live and ready with a dead stub (Triton 2.51; see serving.supervisor)."""
    args = sys.argv[1:] if argv is None else argv
    servers = [int(a) for a in args] if args else tritonservers()
    if not servers:
        print("no tritonserver process")
        return 1
    dead = [(pid, s.pid) for pid in servers for s in stubs(pid) if not s.alive]
    for server, stub in dead:
        print(f"tritonserver {server}: python-backend stub {stub} died")
    return 1 if dead else 0


if __name__ == "__main__":
    raise SystemExit(main())
