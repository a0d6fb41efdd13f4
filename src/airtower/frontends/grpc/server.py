"""GrpcFrontend: the gRPC server of one ``InferenceServer`` (port, TLS, keepalive, limits, shutdown).

Two transports serve the same servicers. The native one (the default) runs HTTP/2 on the event loop
(``http2.py`` framing, ``calls.py`` gRPC calls), as the HTTP frontend runs HTTP/1.1: no grpc core
threads, completion queues or per-call tasks. Messages up to 2**31-1 bytes pass both ways (a 100 MB
tensor passes), the keepalive/HTTP2 ping flags and connection ages behave as grpc core's channel
arguments, ``SO_REUSEPORT`` only with ``--reuse-grpc-port``, and responses are compressed at
``--grpc-infer-response-compression-level``. ``AIRTOWER_GRPC_TRANSPORT=grpcio`` serves with grpc.aio
instead (``GrpcioFrontend``), with tritonserver's channel arguments. Shutdown, in ``cli.serve``'s
order: ``stop_accepting`` refuses new connections and RPCs while in-flight ones continue → the
server drains → ``aclose`` cancels what is left (idle streams included).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2_grpc  # type: ignore[import-untyped]

from airtower.frontends.grpc.calls import GrpcService
from airtower.frontends.grpc.http2 import Http2Connection, Http2Settings
from airtower.frontends.grpc.servicer import (
    INFERENCE_SERVICE,
    HealthServicer,
    InferenceServicer,
    inference_service_handlers,
    native_methods,
)

if TYPE_CHECKING:
    from airtower.options import ServerOptions
    from airtower.server import InferenceServer

logger = logging.getLogger(__name__)

#: tritonserver's ``SetMaxMessageSize(INT32_MAX)``.
MAX_MESSAGE_SIZE = 2**31 - 1
#: grpc_compression_level values.
COMPRESSION_LEVELS: dict[str, int] = {"none": 0, "low": 1, "medium": 2, "high": 3}


def channel_options(options: ServerOptions) -> list[tuple[str, int]]:
    """grpc.aio server arguments for the ``--grpc-*`` flags (tritonserver's channel arguments)."""
    ages = [
        (key, value)
        for key, value in (
            ("grpc.max_connection_age_ms", options.grpc_max_connection_age),
            ("grpc.max_connection_age_grace_ms", options.grpc_max_connection_age_grace),
        )
        if value is not None
    ]
    return [
        *ages,
        ("grpc.max_receive_message_length", MAX_MESSAGE_SIZE),
        ("grpc.max_send_message_length", MAX_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", options.grpc_keepalive_time),
        ("grpc.keepalive_timeout_ms", options.grpc_keepalive_timeout),
        ("grpc.keepalive_permit_without_calls", int(options.grpc_keepalive_permit_without_calls)),
        ("grpc.http2.max_pings_without_data", options.grpc_http2_max_pings_without_data),
        ("grpc.http2.min_ping_interval_without_data_ms", options.grpc_http2_min_recv_ping_interval_without_data),
        ("grpc.http2.max_ping_strikes", options.grpc_http2_max_ping_strikes),
        ("grpc.so_reuseport", int(options.reuse_grpc_port)),
        ("grpc.default_compression_level", COMPRESSION_LEVELS[options.grpc_infer_response_compression_level]),
    ]


def server_credentials(options: ServerOptions) -> Any:
    """TLS credentials from the PEM files of ``--grpc-server-cert/-key/-root-cert``, or None (insecure).

    Raises:
        OSError: a certificate or key file cannot be read.
    """
    if not (options.grpc_use_ssl or options.grpc_use_ssl_mutual):
        return None
    key = Path(options.grpc_server_key).read_bytes()
    cert = Path(options.grpc_server_cert).read_bytes()
    root = Path(options.grpc_root_cert).read_bytes() if options.grpc_root_cert else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=root, require_client_auth=options.grpc_use_ssl_mutual
    )


def _host_port(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"{host}:{port}"


def ssl_context(options: ServerOptions) -> ssl.SSLContext | None:
    """The native transport's TLS settings for ``--grpc-use-ssl[-mutual]``, or None (plaintext): the
    server certificate and key, ALPN ``h2``, and client certificates checked against the root
    certificate (required with ``--grpc-use-ssl-mutual``), as grpc core's ``ssl_server_credentials``.

    Raises:
        OSError: a certificate or key file cannot be read or is invalid.
    """
    if not (options.grpc_use_ssl or options.grpc_use_ssl_mutual):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(options.grpc_server_cert, options.grpc_server_key)
    context.set_alpn_protocols(["h2"])
    if options.grpc_root_cert:
        context.load_verify_locations(options.grpc_root_cert)
        context.verify_mode = ssl.CERT_REQUIRED if options.grpc_use_ssl_mutual else ssl.CERT_OPTIONAL
    elif options.grpc_use_ssl_mutual:
        raise OSError("--grpc-use-ssl-mutual needs --grpc-root-cert to check client certificates")
    return context


def http2_settings(options: ServerOptions) -> Http2Settings:
    """Connection behaviour for the ``--grpc-keepalive-*``, ``--grpc-http2-*`` and age flags."""
    return Http2Settings(
        keepalive_time=options.grpc_keepalive_time,
        keepalive_timeout=options.grpc_keepalive_timeout,
        keepalive_permit_without_calls=options.grpc_keepalive_permit_without_calls,
        max_pings_without_data=options.grpc_http2_max_pings_without_data,
        min_recv_ping_interval_without_data=options.grpc_http2_min_recv_ping_interval_without_data,
        max_ping_strikes=options.grpc_http2_max_ping_strikes,
        max_connection_age=options.grpc_max_connection_age,
        max_connection_age_grace=options.grpc_max_connection_age_grace,
    )


class GrpcFrontend:
    """Triton's ``GRPCInferenceService`` and the standard health service, over HTTP/2 on the loop
    (or on grpc.aio with ``AIRTOWER_GRPC_TRANSPORT=grpcio``)."""

    def __init__(self, server: InferenceServer, options: ServerOptions) -> None:
        self.options = options
        self.address = options.grpc_address
        methods = native_methods(InferenceServicer(server), HealthServicer(server))
        self._service = GrpcService(methods, options.grpc_infer_response_compression_level)
        self._settings = http2_settings(options)
        self._connections: set[Http2Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (``port=0`` picks a free one).

        Raises:
            OSError: the address cannot be bound or a TLS file cannot be read.
        """
        context = ssl_context(self.options)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Http2Connection(self._service, self._settings, self._connections),
            self.address,
            self.options.grpc_port,
            ssl=context,
            reuse_port=self.options.reuse_grpc_port or None,
            backlog=1024,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        logger.info("Started GRPCInferenceService at %s:%d", self.address, port)
        return port

    async def stop_accepting(self) -> None:
        """Refuse new connections and RPCs (GOAWAY); in-flight calls and open streams go on."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.goaway()

    async def aclose(self) -> None:
        """Cancel whatever still runs (idle streams, requests past the drain) and close connections."""
        await self.stop_accepting()
        self._service.cancel_all()
        for connection in list(self._connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()


def grpc_frontend(server: InferenceServer, options: ServerOptions) -> GrpcFrontend | GrpcioFrontend:
    """The gRPC frontend of the transport ``AIRTOWER_GRPC_TRANSPORT`` names (``native`` by default)."""
    if os.environ.get("AIRTOWER_GRPC_TRANSPORT", "native") == "grpcio":
        return GrpcioFrontend(server, options)
    return GrpcFrontend(server, options)


class GrpcioFrontend:
    """The same services on one grpc.aio server."""

    def __init__(self, server: InferenceServer, options: ServerOptions) -> None:
        self.options = options
        self.address = options.grpc_address
        self._server: Any = grpc.aio.server(options=channel_options(options))
        handlers = inference_service_handlers(InferenceServicer(server))
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(INFERENCE_SERVICE, handlers),))
        self._server.add_registered_method_handlers(INFERENCE_SERVICE, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(HealthServicer(server), self._server)
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (``port=0`` picks a free one).

        Raises:
            OSError: the address cannot be bound or a TLS file cannot be read.
        """
        target = _host_port(self.address, self.options.grpc_port)
        credentials = server_credentials(self.options)
        try:
            if credentials is None:
                port: int = self._server.add_insecure_port(target)
            else:
                port = self._server.add_secure_port(target, credentials)
        except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
            raise OSError(str(exc)) from exc
        if port == 0:  # older grpc versions return 0 instead of raising
            raise OSError(f"failed to bind {target}")
        await self._server.start()
        logger.info("Started GRPCInferenceService at %s:%d", self.address, port)
        return port

    async def stop_accepting(self) -> None:
        """Refuse new RPCs; in-flight ones (and open streams) continue until ``aclose``."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._server.stop(self.options.exit_timeout_secs + 1))
            await asyncio.sleep(0)

    async def aclose(self) -> None:
        """Cancel whatever still runs (idle streams, requests past the drain) and release the port."""
        await self.stop_accepting()
        await self._server.stop(None)
        if self._stopping is not None:
            await self._stopping
