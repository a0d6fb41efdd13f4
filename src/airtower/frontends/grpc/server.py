"""GrpcFrontend: the grpc.aio server of one ``InferenceServer`` (port, TLS, keepalive, limits, shutdown).

Channel arguments copy tritonserver's: 2**31-1 byte messages both ways (a 100 MB tensor
passes), the keepalive/HTTP2 ping flags, ``SO_REUSEPORT`` only with ``--reuse-grpc-port``,
and the response compression level. Shutdown, in ``cli.serve``'s order: ``stop_accepting``
refuses new RPCs while in-flight ones continue → the server drains → ``aclose`` cancels what
is left (idle streams included).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2_grpc  # type: ignore[import-untyped]

from airtower.frontends.grpc.servicer import (
    INFERENCE_SERVICE,
    HealthServicer,
    InferenceServicer,
    inference_service_handlers,
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


class GrpcFrontend:
    """Triton's ``GRPCInferenceService`` and the standard health service on one grpc.aio server."""

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
