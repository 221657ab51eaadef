"""The secure profile's tritonserver flags, and the client's reading of Triton's restricted refusal."""

from __future__ import annotations

import pytest

from clients.errors import PermissionDeniedError, ServerUnavailableError, from_status
from serving.errors import ServingError
from serving.security import ADMIN_HEADER, SecurityOptions, admin_headers

KEY = "0123456789abcdef-key"


def test_flags_of_the_secure_profile(tmp_path):
    cert, key, ca = (tmp_path / n for n in ("s.crt", "s.key", "ca.crt"))
    for f in (cert, key, ca):
        f.write_text("pem")
    args = SecurityOptions(cert, key, ca, admin_key=KEY).tritonserver_args()
    assert "--grpc-use-ssl=true" in args and "--grpc-use-ssl-mutual=true" in args
    assert f"--grpc-root-cert={ca.resolve()}" in args
    restricted = "model-repository,model-config,shared-memory,statistics,trace,logging"
    assert f"--grpc-restricted-protocol={restricted}:admin-key={KEY}" in args
    assert args[-1] == "--model-control-mode=none"
    assert SecurityOptions().tritonserver_args() == ("--model-control-mode=none",)
    assert admin_headers(KEY) == {ADMIN_HEADER: KEY} and ADMIN_HEADER == "triton-grpc-protocol-admin-key"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tls_cert": "x.crt"}, "needs both --tls-cert and --tls-key"),
        ({"tls_client_ca": "ca.crt"}, "needs --tls-cert and --tls-key"),
        ({"admin_key": "short"}, "at least 16 characters"),
        ({"admin_key": KEY + "\n"}, "at least 16 characters"),
        ({"admin_key": KEY, "restricted": ("inference", "nope")}, r"unknown protocol\(s\) \['nope'\]"),
    ],
)
def test_options_that_cannot_be_honoured_are_refused(kwargs, message):
    with pytest.raises(ServingError, match=message):
        SecurityOptions(**kwargs)


def test_a_restricted_refusal_is_permission_denied_not_unavailable():
    text = "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"
    error = from_status("StatusCode.UNAVAILABLE", text)
    assert isinstance(error, PermissionDeniedError) and "pass its key" in str(error)
    assert isinstance(from_status("StatusCode.UNAVAILABLE", "connection refused"), ServerUnavailableError)
