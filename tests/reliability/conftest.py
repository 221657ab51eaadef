"""The ``reliability`` fixture: a test calls it once per case with what it sent and what came back."""

from __future__ import annotations

import pytest

from tests.reliability.report import Recorder

_RECORDER = Recorder()


@pytest.fixture
def reliability() -> Recorder:
    return _RECORDER


def pytest_sessionfinish(session, exitstatus):
    path = _RECORDER.write_if_asked()
    if path is not None:
        print(f"\nreliability: {len(_RECORDER.rows)} rows -> {path}")
