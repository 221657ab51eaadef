"""`percept serve`: run the real tritonserver on a model repository until SIGINT/SIGTERM.

Only parses arguments and calls serving.launcher; heavy imports happen inside the command.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path

import typer

from serving.security import ADMIN_KEY_ENV  # light: the flags' defaults
from serving.security import ADMIN_PROTOCOLS as _ADMIN_PROTOCOLS


def serve(
    repository: Path = typer.Option(Path("model_repository"), "--repository", "-r", help="Model repository."),
    grpc_port: int = typer.Option(8001, help="gRPC port (0: a free one)."),
    http_port: int = typer.Option(8000, help="HTTP port (0: a free one)."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port (0: a free one)."),
    address: str = typer.Option("127.0.0.1", help="gRPC address to bind (0.0.0.0 for every interface)."),
    http_address: str = typer.Option("127.0.0.1", help="HTTP address (health probes); loopback by default."),
    metrics_address: str = typer.Option("127.0.0.1", help="Prometheus metrics address; loopback by default."),
    tls_cert: Path | None = typer.Option(None, help="Server certificate (PEM): gRPC over TLS."),
    tls_key: Path | None = typer.Option(None, help="Server private key (PEM) for --tls-cert."),
    tls_client_ca: Path | None = typer.Option(
        None, help="CA (PEM) that signs client certificates: mutual TLS, clients without one are refused."
    ),
    admin_key: str | None = typer.Option(
        None,
        envvar=ADMIN_KEY_ENV,
        help="Restrict the admin protocols (--restrict) to requests carrying header "
        "triton-grpc-protocol-admin-key with this value (>= 16 chars; prefer the environment variable).",
    ),
    restrict: str = typer.Option(
        ",".join(_ADMIN_PROTOCOLS), help="Comma-separated Triton protocols the --admin-key guards."
    ),
    tritonserver: Path | None = typer.Option(
        None, help="Another tritonserver binary (default: the one inside the nvidia-pytriton wheel)."
    ),
    backend_directory: Path | None = typer.Option(None, help="Backend directory for --tritonserver."),
    allow_client_shm: bool = typer.Option(
        False,
        "--allow-client-shm",
        help="Let clients register shared memory on an NGC 26.x --tritonserver (off by default there).",
    ),
    log_file: Path | None = typer.Option(None, help="Keep the server log here (default: a temp file)."),
    startup_timeout: float = typer.Option(180.0, help="Seconds to wait for every model to load."),
    print_docker: bool = typer.Option(
        False, "--print-docker", help="Print the equivalent `docker run` on the NGC Triton image and exit."
    ),
    image: str = typer.Option("", help="NGC image for --print-docker (default: serving.ngc.TRITON_IMAGE)."),
    supervise: bool = typer.Option(
        True,
        help="Restart the server (same ports) when a python-backend stub dies or it exits by itself; "
        "Triton 2.51 leaves such a model ready at reduced capacity.",
    ),
) -> None:
    """Start Triton on REPOSITORY, wait until every model is ready, serve until interrupted."""
    from serving.docker import docker_command
    from serving.launcher import ServerOptions, TritonServer
    from serving.ngc import TRITON_IMAGE
    from serving.security import SecurityOptions
    from serving.supervisor import Supervisor

    security = SecurityOptions(
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        admin_key=admin_key,
        restricted=tuple(p.strip() for p in restrict.split(",") if p.strip()),
    )
    if print_docker:
        cmd = docker_command(repository, image or TRITON_IMAGE, grpc_port, http_port, metrics_port, security)
        typer.echo(shlex.join(cmd))
        if security.admin_key is not None:
            typer.echo(f"# the admin key is not printed: export {ADMIN_KEY_ENV} before running it", err=True)
        return
    options = ServerOptions(
        repository=repository,
        tritonserver=tritonserver,
        backend_directory=backend_directory,
        allow_client_shm=allow_client_shm,
        address=address,
        http_address=http_address,
        metrics_address=metrics_address,
        grpc_port=grpc_port,
        http_port=http_port,
        metrics_port=metrics_port,
        log_file=log_file,
        startup_timeout_s=startup_timeout,
        extra_args=security.tritonserver_args(),
    )
    server = TritonServer(options)
    stopping = {"signal": 0}
    supervisor: Supervisor | None = None

    def forward(signum, _frame) -> None:
        # first signal: graceful stop (Triton waits for in-flight requests); the second kills
        stopping["signal"] = signum
        if supervisor is not None:
            supervisor.stand_down(join=False)  # a stop asked for is not a crash to recover from
        server.send_signal(signal.SIGTERM if stopping.get("sent") is None else signal.SIGKILL)
        stopping["sent"] = 1

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start(attempts=1)
        if supervise:
            supervisor = Supervisor(server).start()
            if stopping["signal"]:  # a signal that came before the supervisor existed
                supervisor.stand_down()
        typer.echo(
            f"Triton ready: gRPC {server.grpc_url}  HTTP {server.http_url}  metrics {server.metrics_url}"
        )
        typer.echo(f"log: {server.log_path}  (Ctrl-C stops; kept after a failure, or use --log-file)")
        if supervisor is not None:
            while not supervisor.wait(0.5) and not stopping["signal"]:
                pass
            if supervisor.state.gave_up:
                typer.secho(f"error: {supervisor.state.gave_up}", fg="red", err=True)
                sys.exit(1)
        code = server.wait()
        if not stopping["signal"]:
            typer.secho(
                f"error: tritonserver exited with code {code}:\n{server.log_tail()}", fg="red", err=True
            )
            sys.exit(1)
        typer.echo(f"stopped (exit code {code})")
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
