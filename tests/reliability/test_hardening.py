"""Hardening: `percept serve` with mutual TLS and its admin protocols behind a key, loopback defaults,
and `percept video` input names that cannot write outside ``--out``.

One `percept serve` of a tiny generated repository (~15 s to start here) with ``--tls-cert``,
``--tls-key``, ``--tls-client-ca`` and ``PERCEPT_ADMIN_KEY``: inference works without the key, the
admin protocols refuse without it (and the client does not retry that refusal), load/unload is off
even with it, HTTP and metrics listen on 127.0.0.1 only. About 30 s here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clients import (
    AsyncPerceptionClient,
    PerceptionClient,
    PermissionDeniedError,
    RetryPolicy,
    ServerUnavailableError,
    TlsOptions,
)
from serving.security import ADMIN_HEADER, ADMIN_PROTOCOLS, admin_headers
from tests.clients.test_tls import make_ca, make_cert
from tests.tiny_onnx import make_tiny_onnx, tiny_spec

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        shutil.which("openssl") is None, reason="needs the openssl command to make certificates"
    ),
]

PERCEPT = str(Path(sys.executable).parent / "percept")
KEY = "k3y-for-the-admin-protocols-0123"
RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(d, "ca"), make_ca(d, "other-ca")
    server = make_cert(d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client = make_cert(d, "client", ca, "extendedKeyUsage=clientAuth")
    return {"ca": ca[1], "other_ca": other[1], "server_key": server[0], "server_crt": server[1],
            "client_key": client[0], "client_crt": client[1]}  # fmt: skip


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (IPv4 and IPv6), read from /proc/net."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                loopback = addr in ("0100007F", "0000000000000000FFFF00000100007F")  # v4, v4-mapped v6
                found.append("127.0.0.1" if loopback else ("any" if set(addr) == {"0"} else addr))
    return found


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory, pki):
    """`percept serve` of a tiny repository, TLS + mutual TLS + admin key; yields its addresses."""
    from serving.repository import build_repository

    d = tmp_path_factory.mktemp("secure")
    repo = d / "repo"
    build_repository([make_tiny_onnx(tiny_spec(), d / "tiny.onnx")], repo)
    cmd = [PERCEPT, "serve", "-r", str(repo), "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
           "--tls-cert", str(pki["server_crt"]), "--tls-key", str(pki["server_key"]),
           "--tls-client-ca", str(pki["ca"]), "--log-file", str(d / "server.log")]  # fmt: skip
    env = {**os.environ, "PERCEPT_ADMIN_KEY": KEY}  # not on the command line of percept itself
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
            if "Triton ready" in lines[-1] or (not lines[-1] and proc.poll() is not None):
                break
        ready = next((ln for ln in lines if "Triton ready" in ln), None)
        assert ready, "".join(lines)
        words = ready.split()
        _SERVER["http"] = words[words.index("HTTP") + 1]
        yield {
            "grpc": words[words.index("gRPC") + 1],
            "http": words[words.index("HTTP") + 1],
            "metrics": words[words.index("metrics") + 1],
            "log": d / "server.log",
        }
    finally:
        _SERVER.clear()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tls(pki, client_cert=True, ca="ca") -> TlsOptions:
    return TlsOptions(pki[ca], *((pki["client_key"], pki["client_crt"]) if client_cert else ()))


_SERVER: dict[str, str] = {}


def _state() -> str:
    """Live and ready as the HTTP health endpoints of the secure server say (its gRPC needs TLS)."""
    import urllib.request

    if "http" not in _SERVER:
        return "-"
    words = []
    for what in ("live", "ready"):
        try:
            with urllib.request.urlopen(f"http://{_SERVER['http']}/v2/health/{what}", timeout=5) as r:
                words.append(what if r.status == 200 else f"NOT {what}")
        except OSError:
            words.append(f"NOT {what}")
    return ", ".join(words)


def _row(reliability, case, sent, came, seconds, state=None):
    reliability("hardening", case, sent, came, seconds, state or _state())


def test_inference_needs_no_key_and_the_admin_protocols_do(secure_server, pki, reliability, caplog):
    import tritonclient.grpc as grpcclient

    caplog.set_level(logging.WARNING, logger="clients.client")
    url = secure_server["grpc"]
    frame = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    start = time.perf_counter()
    with PerceptionClient(url, tls=_tls(pki), headers=admin_headers(KEY), retry=RETRY) as client:
        result = client.infer(frame=frame)
    _row(
        reliability,
        "mutual TLS + admin key",
        "PerceptionClient(tls, key).infer",
        f"{len(result.detections)} detections",
        time.perf_counter() - start,
    )
    assert result.source_hw == (96, 160) and len(result.detections) == 2
    # the asyncio client: the same key on its model-config calls, the same answer

    async def infer_async():
        async with AsyncPerceptionClient(url, tls=_tls(pki), headers=admin_headers(KEY), retry=RETRY) as c:
            return await c.infer(frame=frame)

    assert asyncio.run(infer_async()).to_dict() == result.to_dict()
    # the inference protocol itself is open: a raw infer without the header succeeds
    paths = _tls(pki).paths()
    raw = grpcclient.InferenceServerClient(url, ssl=True, **paths)
    try:
        inp = grpcclient.InferInput("image", [1, 96, 160, 3], "UINT8")
        inp.set_data_from_numpy(frame[None])
        assert raw.infer("perception", [inp], client_timeout=30).as_numpy("num_dets") is not None
        for name, call in {
            "statistics": lambda h: raw.get_inference_statistics("perception", headers=h, client_timeout=10),
            "model-config": lambda h: raw.get_model_config("perception", headers=h, client_timeout=10),
            "logging": lambda h: raw.get_log_settings(headers=h, client_timeout=10),
            "trace": lambda h: raw.get_trace_settings(headers=h, client_timeout=10),
            "shared-memory": lambda h: raw.get_system_shared_memory_status(headers=h, client_timeout=10),
            "model-repository": lambda h: raw.get_model_repository_index(headers=h, client_timeout=10),
        }.items():
            assert name in ADMIN_PROTOCOLS
            start = time.perf_counter()
            with pytest.raises(Exception, match="This protocol is restricted") as info:
                call(None)
            _row(
                reliability,
                f"{name} without the key",
                f"{name} RPC, no header",
                str(info.value)[:160],
                time.perf_counter() - start,
            )
            call(admin_headers(KEY))  # with it: answered
        start = time.perf_counter()
        with pytest.raises(Exception, match="explicit model load / unload is not allowed"):
            raw.unload_model("perception", headers=admin_headers(KEY), client_timeout=10)
        _row(
            reliability,
            "unload with the key",
            "unload_model(perception), key",
            "refused: --model-control-mode none",
            time.perf_counter() - start,
        )
        assert raw.is_model_ready("perception", client_timeout=10)
    finally:
        raw.close()
    # the client library maps the refusal to PermissionDeniedError at once: no retry, no backoff
    caplog.clear()
    start = time.perf_counter()
    with (
        PerceptionClient(url, tls=_tls(pki), retry=RETRY) as client,
        pytest.raises(PermissionDeniedError, match="restricts this protocol: pass its key"),
    ):
        client.infer(frame=frame)
    _row(
        reliability,
        "client without the key",
        "PerceptionClient(tls).infer (reads model-config)",
        "PermissionDeniedError, 1 attempt",
        time.perf_counter() - start,
    )
    assert not [r for r in caplog.records if "retry" in r.getMessage()]


@pytest.mark.parametrize("who", ["plaintext", "no client certificate", "server signed by another CA"])
def test_clients_without_the_right_tls_are_refused(secure_server, pki, reliability, who):
    tls = {"plaintext": None, "no client certificate": _tls(pki, client_cert=False),
           "server signed by another CA": _tls(pki, ca="other_ca")}[who]  # fmt: skip
    start = time.perf_counter()
    with (
        PerceptionClient(
            secure_server["grpc"], tls=tls, headers=admin_headers(KEY), retry=RETRY, timeout_s=5
        ) as c,
        pytest.raises(ServerUnavailableError) as info,  # refused in the handshake
    ):
        c.infer(frame=np.zeros((32, 32, 3), np.uint8))
    _row(
        reliability,
        f"TLS: {who}",
        "PerceptionClient.infer",
        str(info.value)[:160],
        time.perf_counter() - start,
    )


def test_grpc_http_and_metrics_listen_on_loopback_only(secure_server, reliability):
    for what in ("grpc", "http", "metrics"):
        port = int(secure_server[what].removesuffix("/metrics").rsplit(":", 1)[1])
        where = _listening(port)
        _row(reliability, f"{what} port bound", f"`percept serve` defaults, port {port}", ", ".join(where), 0)
        assert where == ["127.0.0.1"], (what, where)


def test_video_input_names_never_write_outside_out(tmp_path, monkeypatch, reliability):
    from clients.video import EXIT_OK, VideoOptions, run_video
    from tests.clients.conftest import write_video

    onnx = make_tiny_onnx(tiny_spec(), tmp_path / "tiny.onnx")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    write_video(tmp_path / "x.mp4", 3)
    write_video(work / "..mp4", 3)
    monkeypatch.chdir(work)
    before = {p for p in tmp_path.rglob("*")}
    start = time.perf_counter()
    report = run_video(
        ["../../x.mp4", "..mp4"],
        VideoOptions(out_dir=Path("out"), backend="local", onnx=onnx, progress=False),
    )
    outside = sorted(
        str(p.relative_to(tmp_path))
        for p in set(tmp_path.rglob("*")) - before
        if work / "out" not in p.parents and p != work / "out"
    )
    names = sorted(r.source.name for r in report.results)
    _row(
        reliability,
        "video input names",
        "percept video ../../x.mp4 ..mp4 --out out",
        f"outputs {names} inside out/; {len(outside)} files outside",
        time.perf_counter() - start,
        "-",
    )
    assert report.exit_code == EXIT_OK
    assert outside == [] and names == ["mp4", "x"]
    assert all((work / "out" / n / "summary.json").is_file() for n in names)


def _client_cli(pki, *args: str, key: str | None) -> subprocess.CompletedProcess:
    """A client command of the CLI with mutual TLS, the admin key in its environment (or none)."""
    tls = ["--root-certs", str(pki["ca"]), "--private-key", str(pki["client_key"]),
           "--cert-chain", str(pki["client_crt"])]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PERCEPT_ADMIN_KEY"}
    if key is not None:
        env["PERCEPT_ADMIN_KEY"] = key
    return subprocess.run([PERCEPT, *args, *tls], capture_output=True, text=True, env=env, timeout=240)


def test_loadtest_runs_against_the_secure_profile(secure_server, pki, tmp_path, reliability):
    """`percept loadtest` with TLS and the key from PERCEPT_ADMIN_KEY: its model-config and statistics
    calls carry the key; the harness's count equals the server's; the key is
    in no output. Without the key: one line naming the restriction and how to pass the key."""
    out = tmp_path / "lt"
    args = ["loadtest", "--url", secure_server["grpc"], "-c", "2", "--workers", "1", "--warmup", "0.5",
            "--window", "1", "--max-windows", "2", "--stable-windows", "1", "--frames", "2",
            "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    run = _client_cli(pki, *args, key=KEY)
    assert run.returncode == 0, run.stdout + run.stderr
    step = json.loads((out / "loadtest.json").read_text())["steps"][0]
    served = step["server_successes_total"]["perception"]
    assert step["client_successes_total"] > 0 and served == step["client_successes_total"]
    assert step["client_errors_total"] == 0
    assert all(KEY not in p.read_text(errors="replace") for p in out.iterdir() if p.suffix != ".png")
    assert KEY not in run.stdout + run.stderr
    _row(reliability, "loadtest, TLS + key", "percept loadtest -c 2, key in env",
         f"{served} answered, server counted {served}", time.perf_counter() - start)  # fmt: skip
    start = time.perf_counter()
    refused = _client_cli(pki, *args, key=None)
    assert refused.returncode == 1
    assert "restricts this protocol" in refused.stderr and "PERCEPT_ADMIN_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr
    _row(reliability, "loadtest without the key", "percept loadtest, no key", refused.stderr.strip()[-160:],
         time.perf_counter() - start)  # fmt: skip


def test_video_runs_against_the_secure_profile(secure_server, pki, tmp_path, reliability):
    """`percept video` with TLS and the key given as a plain `--header`: its model-config calls carry
    it; every frame is answered."""
    from tests.clients.conftest import write_video

    video = write_video(tmp_path / "drive.mp4", 4)
    start = time.perf_counter()
    out = tmp_path / "out"
    args = ["video", str(video), "--out", str(out), "--url", secure_server["grpc"], "--no-progress"]
    run = _client_cli(pki, *args, "--header", f"{ADMIN_HEADER}={KEY}", key=None)  # the key as any header
    assert run.returncode == 0, run.stdout + run.stderr
    lines = (tmp_path / "out" / "drive" / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2, 3]
    assert not any("error" in json.loads(line) for line in lines)
    _row(reliability, "video, TLS + key", "percept video --header <admin key header>",
         f"{len(lines)} of 4 frames answered", time.perf_counter() - start)  # fmt: skip
