"""serving.stubs reads a server's python-backend stubs from /proc; serving.supervisor's options."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from serving.errors import ServingError
from serving.stubs import children, rss_bytes, stub_from_cmdline
from serving.supervisor import SupervisorOptions

# the command line Triton 2.51 gives a stub (stub_launcher.cc), as read from /proc/<pid>/cmdline
ARGV = [
    "/tmp/percept-triton-x/backends/python/triton_python_backend_stub",
    "/repo/cam_n/1/model.py",
    "triton_python_backend_shm_region_3f2c",
    "1048576",
    "1048576",
    "4242",
    "/tmp/percept-triton-x/backends/python",
    "336",
    "cam_n_0_1",
    "DEFAULT",
]


def test_a_stub_is_known_by_its_model_instance_and_shared_memory_region():
    stub = stub_from_cmdline(7, ARGV, "S")
    assert stub is not None
    assert (stub.model, stub.instance, stub.shm_region, stub.alive) == (
        "cam_n",
        "cam_n_0_1",
        "triton_python_backend_shm_region_3f2c",
        True,
    )
    assert stub_from_cmdline(7, ["/usr/bin/python3", "x.py"], "S") is None  # not a stub


def test_a_model_whose_name_prefixes_another_gets_its_own_instance():
    argv = [ARGV[0], "/repo/cam/1/model.py", *ARGV[2:8], "cam_0_0"]
    stub = stub_from_cmdline(7, argv, "R")
    assert stub is not None and (stub.model, stub.instance) == ("cam", "cam_0_0")


def test_children_and_rss_of_real_processes():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children(os.getpid())
        assert rss_bytes(child.pid) > 1 << 20
    finally:
        child.kill()
        child.wait()
    assert rss_bytes(child.pid) == 0  # gone


def test_supervisor_options_are_checked():
    with pytest.raises(ServingError, match="poll_s"):
        SupervisorOptions(poll_s=0)


def test_server_cpu_counts_the_process_and_the_children_it_started():
    """What the bench divides by requests answered (percept.bench.around): the server's CPU and its
    stubs'. A child that burns half a second of CPU shows up in its parent's total."""
    from serving.stubs import cpu_seconds, server_cpu_seconds

    me = os.getpid()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\ninput()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while cpu_seconds(child.pid) < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cpu_seconds(child.pid) >= 0.5
        assert server_cpu_seconds(me) >= cpu_seconds(me) + 0.5
    finally:
        child.communicate("\n", timeout=10)
    assert cpu_seconds(child.pid) == 0.0  # gone (reaped): nothing to count
