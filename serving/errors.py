"""The project's one exception hierarchy. The CLI prints ``str(exc)`` of these as one line, exit 1."""

from __future__ import annotations


class PerceptionError(Exception):
    """Base of every error this project raises on purpose."""


class SpecError(PerceptionError, ValueError):
    """A spec or option that cannot describe a servable model (bad size, unknown dtype, ...)."""


class MissingDependencyError(PerceptionError, ImportError):
    """An optional dependency is missing; the message carries the install hint."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'perception-serving[{extra}]'")
        self.package = package
        self.extra = extra


class ExportError(PerceptionError):
    """An export, verification or import stage failed."""


class ServingError(PerceptionError):
    """Building a model repository or running the server failed."""


class ClientError(PerceptionError):
    """Raised by the client library; subclasses map gRPC status codes."""
