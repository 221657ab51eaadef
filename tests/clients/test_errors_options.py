"""Status-code mapping, retry backoff and option validation (no server)."""

from __future__ import annotations

import random

import pytest

from clients import errors as E
from clients.options import ClientOptions, RetryPolicy, TlsOptions
from serving.errors import ClientError, SpecError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        ("StatusCode.UNAVAILABLE", E.ServerUnavailableError),
        ("StatusCode.INVALID_ARGUMENT", E.InvalidRequestError),
        ("StatusCode.DEADLINE_EXCEEDED", E.DeadlineExceededError),
        ("StatusCode.NOT_FOUND", E.ModelNotFoundError),
        ("StatusCode.RESOURCE_EXHAUSTED", E.ResourceExhaustedError),
        ("StatusCode.UNAUTHENTICATED", E.PermissionDeniedError),
        ("StatusCode.INTERNAL", E.ServerError),
        ("StatusCode.SOMETHING_NEW", E.ServerError),
        (None, E.ServerError),
    ],
)
def test_errors_are_mapped_by_status_code(status, cls):
    error = E.from_status(status, "whatever the server says")
    assert type(error) is cls
    assert isinstance(error, ClientError)


def test_mapping_ignores_message_text():
    # a message that reads like another status must not change the class
    error = E.from_status("StatusCode.INVALID_ARGUMENT", "UNAVAILABLE: server is unavailable")
    assert type(error) is E.InvalidRequestError


def test_tritonclient_exception_is_mapped():
    from tritonclient.utils import InferenceServerException

    exc = InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")
    error = E.from_triton_exception(exc)
    assert type(error) is E.DeadlineExceededError
    assert "Deadline Exceeded" in str(error)


def test_retry_delays_grow_with_jitter_and_cap():
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(0)
    for attempt in range(8):
        nominal = min(1.0, 0.1 * 2**attempt)
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert min(delays) >= 0.5 * nominal - 1e-12
        assert max(delays) <= nominal + 1e-12
        assert max(delays) - min(delays) > 0.1 * nominal  # jittered, not lock-step


def test_options_reject_impossible_values(tmp_path):
    with pytest.raises(SpecError, match="timeout_s"):
        ClientOptions(timeout_s=0)
    with pytest.raises(SpecError, match="host:port"):
        ClientOptions(url="localhost")
    with pytest.raises(SpecError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(SpecError, match="not found"):
        TlsOptions(root_certificates=tmp_path / "missing.pem")
    key = tmp_path / "k.pem"
    key.write_text("x")
    with pytest.raises(SpecError, match="both"):
        TlsOptions(private_key=key)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Authorization": "x"}, "lowercase"),
        ({"trace bin": "x"}, "lowercase"),
        ({"token-bin": "x"}, "lowercase"),
        ({"authorization": "two\nlines"}, "printable ASCII"),
    ],
)
def test_headers_gRPC_cannot_send_are_refused_up_front(headers, message):
    with pytest.raises(SpecError, match=message):
        ClientOptions(headers=headers)
    assert ClientOptions(headers={"x-team": "perception"}).headers == (("x-team", "perception"),)


def test_a_header_flag_is_name_equals_value():
    from percept.connection import parse_header

    assert parse_header("X-Team = perception=1") == ("x-team", "perception=1")
    with pytest.raises(SpecError, match="NAME=VALUE"):
        parse_header("authorization")
