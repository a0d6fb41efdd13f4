"""GrpcFrontend: the gRPC server of one ``InferenceServer`` (port, TLS, keepalive, limits, shutdown).

HTTP/2 runs on the event loop (``http2.py`` framing, ``calls.py`` gRPC calls), as the HTTP frontend
runs HTTP/1.1: no grpc core threads, completion queues or per-call tasks (grpc.aio served here until
it proved to cost more per call than Triton's whole request: docs/performance.md "gRPC"). Messages
up to 2**31-1 bytes pass both ways (a 100 MB tensor passes), the keepalive/HTTP2 ping flags and
connection ages behave as grpc core's channel arguments, ``SO_REUSEPORT`` only with
``--reuse-grpc-port``, and responses are compressed at ``--grpc-infer-response-compression-level``.
Shutdown, in ``cli.serve``'s order: ``stop_accepting`` refuses new connections and RPCs while
in-flight ones continue → the server drains → ``aclose`` cancels what is left (idle streams included).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from airtower.frontends.grpc.calls import GrpcService
from airtower.frontends.grpc.http2 import Http2Connection, Http2Settings
from airtower.frontends.grpc.servicer import HealthServicer, InferenceServicer, native_methods

if TYPE_CHECKING:
    from airtower.options import ServerOptions
    from airtower.server import InferenceServer

logger = logging.getLogger(__name__)


def ssl_context(options: ServerOptions) -> ssl.SSLContext | None:
    """The TLS settings for ``--grpc-use-ssl[-mutual]``, or None (plaintext): the
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
    """Triton's ``GRPCInferenceService`` and the standard health service, over HTTP/2 on the loop."""

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
