"""A DNS server on loopback for the load-balancing tests: it answers one name with several A records,
as cluster DNS answers a headless Kubernetes Service's name with one record per ready pod.

dnslib's server (real DNS over UDP); gRPC's resolver is pointed at it through the target's
authority: ``dns://127.0.0.1:<port>/<name>:<grpc port>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

dnslib = pytest.importorskip("dnslib", reason="dnslib is in the dev extra")
from dnslib.server import BaseResolver, DNSLogger, DNSServer  # noqa: E402


class _Records(BaseResolver):
    def __init__(self, name: str, addresses: tuple[str, ...]) -> None:
        self.name = name.rstrip(".") + "."
        self.addresses = addresses

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        if q.qtype == dnslib.QTYPE.A and str(q.qname) == self.name:
            for address in self.addresses:
                reply.add_answer(dnslib.RR(q.qname, dnslib.QTYPE.A, rdata=dnslib.A(address), ttl=5))
        return reply


@contextlib.contextmanager
def dns_server(name: str, addresses: tuple[str, ...]) -> Iterator[int]:
    """Serve ``name`` -> ``addresses`` on a free UDP port of 127.0.0.1; yields the port."""
    server = DNSServer(
        _Records(name, addresses), address="127.0.0.1", port=0, logger=DNSLogger(logf=lambda _: None)
    )
    server.start_thread()
    try:
        yield int(server.server.server_address[1])
    finally:
        server.stop()
        server.server.server_close()
