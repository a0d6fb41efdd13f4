"""Prometheus exposition on the metrics port (``--metrics-port``, 8002): ``GET /metrics``.

A small HTTP/1.1 server on the event loop, so that a scrape reads the models' statistics on the
thread that updates them. Like tritonserver it answers the metrics on any path, and keeps
connections alive for Prometheus' repeated scrapes. Owned by ``cli.serve``: started after the
inference frontends, closed after the server stops (metrics stay readable while requests drain).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterator

from prometheus_client.registry import CollectorRegistry

from airtower.observability.metrics import (
    CONTENT_TYPE,
    DEFAULT_FIRST_RESPONSE_BUCKETS,
    FIRST_RESPONSE_HISTOGRAM,
    MetricsConfig,
    ModelSample,
    TritonCollector,
    encode_text,
)
from airtower.server import InferenceServer

logger = logging.getLogger(__name__)

#: Largest request head accepted (request line and headers).
MAX_HEAD_BYTES = 16 * 1024


def model_samples(server: InferenceServer) -> Iterator[ModelSample]:
    """Each loaded model version's statistics, queued requests and ``metric_tags``."""
    for model in server.models.models():
        scheduler = model.scheduler
        pending = scheduler.pending_count() if scheduler is not None else 0
        config = model.config
        buckets = next(
            (
                tuple(control.histogram_options.buckets)
                for control in config.model_metrics.metric_control
                if control.metric_identifier.family == FIRST_RESPONSE_HISTOGRAM
            ),
            DEFAULT_FIRST_RESPONSE_BUCKETS,
        )
        decoupled = config.model_transaction_policy.decoupled
        yield ModelSample(model.stats, pending, dict(config.metric_tags), decoupled, buckets)


class MetricsFrontend:
    """Serves the server's Prometheus metrics; ``start`` then ``aclose``."""

    def __init__(self, server: InferenceServer, config: MetricsConfig, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = TritonCollector(functools.partial(model_samples, server), config)
        self.registry.register(self.collector)
        self._listener: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    def scrape(self) -> bytes:
        """The metrics text, as a GET returns it."""
        return encode_text(self.registry.collect())

    async def start(self) -> int:
        """Bind and start accepting; returns the bound port (``port=0`` picks a free one)."""
        self.collector.attach()
        self._listener = await asyncio.start_server(self._serve, self.host, self.port, limit=MAX_HEAD_BYTES)
        self.port = self._listener.sockets[0].getsockname()[1]
        logger.info("Started Metrics Service at %s:%d", self.host, self.port)
        return self.port

    async def aclose(self) -> None:
        """Stop accepting and close every connection."""
        if self._listener is None:
            return
        listener, self._listener = self._listener, None
        listener.close()
        for writer in self._connections:
            writer.close()
        await asyncio.gather(*self._connections.values(), return_exceptions=True)
        await listener.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        try:
            while await self._answer(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away or sent garbage: nothing to answer
        finally:
            self._connections.pop(writer, None)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            writer.write(_response(400, b"bad request\n", keep_alive=False))
            await writer.drain()
            return False
        method, _, version = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get("content-length", "0")
        if not length.isdigit():
            writer.write(_response(400, b"invalid Content-Length\n", keep_alive=False))
            await writer.drain()
            return False
        if int(length):
            await reader.readexactly(int(length))
        connection = headers.get("connection", "").lower()
        keep_alive = connection == "keep-alive" if version == "HTTP/1.0" else connection != "close"
        if method in ("GET", "HEAD"):
            body = self.scrape()
            writer.write(_response(200, body, keep_alive, head_only=method == "HEAD"))
        else:
            writer.write(_response(405, b"only GET is supported\n", keep_alive, extra="Allow: GET, HEAD\r\n"))
        await writer.drain()
        return keep_alive


_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed"}


def _response(status: int, body: bytes, keep_alive: bool, *, head_only: bool = False, extra: str = "") -> bytes:
    if not keep_alive:
        extra += "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {CONTENT_TYPE if status == 200 else 'text/plain'}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)
