"""Mutual TLS against a real tritonserver: the right client certificate gets in, others are refused."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from clients import PerceptionClient, RetryPolicy, ServerUnavailableError, TlsOptions
from serving.errors import ClientError
from serving.launcher import ServerOptions, TritonServer
from serving.security import SecurityOptions

pytestmark = [
    pytest.mark.triton,
    pytest.mark.skipif(
        shutil.which("openssl") is None, reason="needs the openssl command to make certificates"
    ),
]

FAST_RETRY = RetryPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.1)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, crt = d / f"{name}.key", d / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", crt.name, "-days", "2", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    return key, crt


def make_cert(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, crt, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.crt", d / f"{name}.ext"
    extfile.write_text(ext + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={name}", cwd=d)  # fmt: skip
    _openssl("x509", "-req", "-in", csr.name, "-CA", ca[1].name, "-CAkey", ca[0].name, "-CAcreateserial",
             "-out", crt.name, "-days", "2", "-extfile", extfile.name, cwd=d)  # fmt: skip
    return key, crt


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    server = make_cert(d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost")
    client = make_cert(d, "client", ca, "extendedKeyUsage=clientAuth")
    rogue = make_cert(d, "rogue", other_ca, "extendedKeyUsage=clientAuth")
    return {
        "ca": ca[1],
        "server_key": server[0],
        "server_crt": server[1],
        "client_key": client[0],
        "client_crt": client[1],
        "rogue_key": rogue[0],
        "rogue_crt": rogue[1],
        "other_ca": other_ca[1],
    }


@pytest.fixture(scope="module")
def tls_server(tiny_repository, certs):
    # the flags `percept serve --tls-cert --tls-key --tls-client-ca` gives tritonserver
    security = SecurityOptions(certs["server_crt"], certs["server_key"], tls_client_ca=certs["ca"])
    server = TritonServer(ServerOptions(tiny_repository, extra_args=security.tritonserver_args()))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _infer(url: str, tls: TlsOptions | None):
    frame = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    with PerceptionClient(url, tls=tls, retry=FAST_RETRY, timeout_s=10) as client:
        return client.infer(frame=frame)


def test_client_with_the_right_certificate_succeeds(tls_server, certs):
    tls = TlsOptions(certs["ca"], certs["client_key"], certs["client_crt"])
    result = _infer(tls_server.grpc_url, tls)
    assert len(result.detections) == 2 and result.source_hw == (96, 160)


@pytest.mark.parametrize(
    "who",
    ["no-tls", "no-client-cert", "client-cert-from-another-ca", "server-not-trusted"],
)
def test_client_without_the_right_certificate_is_refused(tls_server, certs, who):
    tls = {
        "no-tls": None,
        "no-client-cert": TlsOptions(certs["ca"]),
        "client-cert-from-another-ca": TlsOptions(certs["ca"], certs["rogue_key"], certs["rogue_crt"]),
        "server-not-trusted": TlsOptions(certs["other_ca"], certs["client_key"], certs["client_crt"]),
    }[who]
    with pytest.raises(ClientError) as info:
        _infer(tls_server.grpc_url, tls)
    # refused in the handshake: the channel never becomes usable, which gRPC reports as UNAVAILABLE
    assert isinstance(info.value, ServerUnavailableError)
