"""How the client commands reach a server: TLS files, the admin key and other headers, declared once
for every command that connects (`percept video`, `percept loadtest`)."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.security import ADMIN_KEY_ENV  # light: the flag's variable

TLS = typer.Option(False, "--tls", help="Use TLS (implied by the certificate options).")
ROOT_CERTS = typer.Option(None, "--root-certs", help="TLS: CA certificate(s) to verify the server.")
PRIVATE_KEY = typer.Option(None, "--private-key", help="Mutual TLS: client private key (PEM).")
CERT_CHAIN = typer.Option(None, "--cert-chain", help="Mutual TLS: client certificate chain (PEM).")
ADMIN_KEY = typer.Option(
    None,
    "--admin-key",
    envvar=ADMIN_KEY_ENV,
    help="The key of a server started with `percept serve --admin-key`, sent as a header with every "
    "call: its model-config, statistics and shared-memory protocols refuse calls without it. Prefer "
    f"the environment variable {ADMIN_KEY_ENV} (a command line is visible to other users).",
    show_default=False,
)
HEADER = typer.Option(
    [],
    "--header",
    help="NAME=VALUE: a gRPC header sent with every call, e.g. what a proxy in front of Triton "
    "checks (repeat it for several; names are lowercased, as gRPC requires).",
    show_default=False,
)


def parse_header(text: str) -> tuple[str, str]:
    """``"Name=value"`` -> ``("name", "value")``; the pair's checks are ClientOptions'."""
    from serving.errors import SpecError

    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise SpecError(f"--header {text!r}: expected NAME=VALUE")
    return name.strip().lower(), value.strip()


def connection(
    tls: bool,
    root_certs: Path | None,
    private_key: Path | None,
    cert_chain: Path | None,
    admin_key: str | None,
    header: list[str],
):
    """(TlsOptions or None, headers) of ClientOptions from the options above."""
    from clients.options import TlsOptions
    from serving.security import admin_headers

    tls_options = None
    if tls or root_certs or private_key or cert_chain:
        tls_options = TlsOptions(root_certs, private_key, cert_chain)
    headers = [parse_header(h) for h in header]
    headers += list(admin_headers(admin_key).items()) if admin_key else []
    return tls_options, tuple(headers)
