"""The HTTP/REST frontend: an asyncio protocol on httptools, the route table and error handling.

No web framework: a framework's per-request cost is paid on every inference. Each connection
is an ``asyncio.Protocol`` fed by httptools' request parser. HTTP/1.1 keep-alive, pipelined
requests (answered in order, one at a time per connection), Content-Length and chunked bodies,
``Expect: 100-continue``, chunked responses written as they are produced (the generate
extension) and write-side flow control are handled here; everything a route does
lives in ``endpoints.py``, and status codes come from ``errors.py``. Talks only to
``InferenceServer``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast
from urllib.parse import unquote

import httptools

from airtower.errors import TritonError
from airtower.frontends.http.endpoints import (
    GENERATE_METHOD_NOT_ALLOWED,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TEXT,
    Deferred,
    Endpoints,
    HttpRequest,
    HttpResponse,
    Streamed,
    error_response,
    too_large_message,
)
from airtower.frontends.http.errors import status_of

if TYPE_CHECKING:
    from airtower.server import InferenceServer

logger = logging.getLogger(__name__)

Handler: TypeAlias = Callable[..., HttpResponse | Deferred | Streamed | Coroutine[Any, Any, HttpResponse]]
Route: TypeAlias = tuple[Handler, tuple[str, ...]]

#: Reason phrases as Triton's libevhtp writes them (note "405 Not Allowed").
_STATUS_LINES: dict[int, bytes] = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason)
    for status, reason in (
        (200, b"OK"),
        (400, b"Bad Request"),
        (403, b"Forbidden"),
        (404, b"Not Found"),
        (405, b"Not Allowed"),
        (500, b"Internal Server Error"),
        (501, b"Not Implemented"),
        (503, b"Service Unavailable"),
    )
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"Connection: close\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_GET = b"GET"
_POST = b"POST"
#: Responses up to this size are joined into one buffer before writing; larger ones are written as
#: their pieces (no copy of big output tensors).
_JOIN_LIMIT = 64 * 1024
#: Pipelined requests buffered per connection before it stops reading from the socket.
_MAX_PENDING = 16


def _encode_head(response: HttpResponse, length: int, keep_alive: bool) -> bytes:
    status_line = _STATUS_LINES.get(response.status) or b"HTTP/1.1 %d Unknown\r\n" % response.status
    return b"".join(
        (
            status_line,
            b"Content-Type: ",
            response.content_type,
            b"\r\n",
            response.headers,
            b"Content-Length: %d\r\n" % length,
            b"" if keep_alive else _CLOSE,
            b"\r\n",
        )
    )


def _encode_chunked_head(status: int, content_type: bytes, keep_alive: bool) -> bytes:
    status_line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
    return b"".join(
        (status_line, b"Content-Type: ", content_type, b"\r\n", _CHUNKED, b"" if keep_alive else _CLOSE, b"\r\n")
    )


class Router:
    """Maps (method, path) to an endpoint by splitting the path: no regular expressions.

    Paths follow Triton's ``http_server.cc`` patterns; versions are digits only and model
    names are URL-decoded.
    """

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints

    def resolve(self, method: bytes, path: str) -> Route | HttpResponse:
        parts = path.split("/")
        count = len(parts)
        if count < 2 or parts[0] or parts[1] != "v2":
            return NOT_FOUND
        e = self.endpoints
        if count == 2:
            return _only(_GET, method, e.server_metadata, ())
        section = parts[2]
        if section == "health":
            if count == 4:
                if parts[3] == "live":
                    return _only(_GET, method, e.health_live, ())
                if parts[3] == "ready":
                    return _only(_GET, method, e.health_ready, ())
            return NOT_FOUND
        if section == "models":
            return self._resolve_model(method, parts)
        if section == "repository":
            return self._resolve_repository(method, parts)
        if section in ("systemsharedmemory", "cudasharedmemory"):
            return self._resolve_shared_memory(method, section[: -len("sharedmemory")], parts)
        if section == "trace" and count == 4 and parts[3] == "setting":
            return (e.trace_settings, ("",)) if method in (_GET, _POST) else METHOD_NOT_ALLOWED
        if section == "logging" and count == 3:
            if method == _GET:
                return e.log_settings, ()
            return _only(_POST, method, e.update_log_settings, ())
        return NOT_FOUND

    def _resolve_model(self, method: bytes, parts: list[str]) -> Route | HttpResponse:
        count = len(parts)
        e = self.endpoints
        if count < 4 or not parts[3]:
            return NOT_FOUND
        if count == 4 and parts[3] == "stats":
            return _only(_GET, method, e.model_statistics, ("", ""))
        name = _unquote(parts[3])
        version = ""
        index = 4
        if count > 4 and parts[4] == "versions":
            if count < 6 or not (parts[5].isascii() and parts[5].isdigit()):
                return NOT_FOUND
            version = str(int(parts[5]))
            index = 6
        if index == count:
            return _only(_GET, method, e.model_metadata, (name, version))
        if index == 4 and count == 6 and parts[4] == "trace" and parts[5] == "setting":
            return (e.trace_settings, (name,)) if method in (_GET, _POST) else METHOD_NOT_ALLOWED
        if index + 1 != count:
            return NOT_FOUND
        suffix = parts[index]
        if suffix == "infer":
            return _only(_POST, method, e.infer, (name, version))
        if suffix == "ready":
            return _only(_GET, method, e.model_ready, (name, version))
        if suffix == "generate":
            return (e.generate, (name, version)) if method == _POST else GENERATE_METHOD_NOT_ALLOWED
        if suffix == "generate_stream":
            return (e.generate_stream, (name, version)) if method == _POST else GENERATE_METHOD_NOT_ALLOWED
        if suffix == "config":
            return _only(_GET, method, e.model_config, (name, version))
        if suffix == "stats":
            return _only(_GET, method, e.model_statistics, (name, version))
        return NOT_FOUND

    def _resolve_shared_memory(self, method: bytes, kind: str, parts: list[str]) -> Route | HttpResponse:
        """``/v2/{system,cuda}sharedmemory[/region/<name>]/{status,register,unregister}``."""
        count = len(parts)
        e = self.endpoints
        if count == 4:
            name, action = "", parts[3]
        elif count == 6 and parts[3] == "region" and parts[4]:
            name, action = _unquote(parts[4]), parts[5]
        else:
            return NOT_FOUND
        if action == "status":
            return _only(_GET, method, e.shared_memory_status, (kind, name))
        if action == "unregister":
            return _only(_POST, method, e.shared_memory_unregister, (kind, name))
        if action == "register" and name:
            return _only(_POST, method, e.shared_memory_register, (kind, name))
        return NOT_FOUND

    def _resolve_repository(self, method: bytes, parts: list[str]) -> Route | HttpResponse:
        count = len(parts)
        e = self.endpoints
        if count == 4 and parts[3] == "index":
            return _only(_POST, method, e.repository_index, ("",))
        if count == 5 and parts[4] == "index" and parts[3]:
            return _only(_POST, method, e.repository_index, (_unquote(parts[3]),))
        if count == 6 and parts[3] == "models":
            repository, name, action = "", parts[4], parts[5]
        elif count == 7 and parts[4] == "models" and parts[3]:
            repository, name, action = _unquote(parts[3]), parts[5], parts[6]
        else:
            return NOT_FOUND
        if not name:
            return NOT_FOUND
        if action == "load":
            return _only(_POST, method, e.repository_load, (repository, _unquote(name)))
        if action == "unload":
            return _only(_POST, method, e.repository_unload, (repository, _unquote(name)))
        return NOT_FOUND


def _only(allowed: bytes, method: bytes, handler: Handler, args: tuple[str, ...]) -> Route | HttpResponse:
    return (handler, args) if method == allowed else METHOD_NOT_ALLOWED


def _unquote(segment: str) -> str:
    return unquote(segment) if "%" in segment else segment


def _render_error(exc: Exception) -> HttpResponse:
    """The one place where exceptions become HTTP responses."""
    if isinstance(exc, TritonError):
        return error_response(status_of(exc), exc.message)
    logger.error("unexpected error while handling an HTTP request", exc_info=exc)
    return error_response(500, str(exc) or type(exc).__name__)


class HttpFrontend:
    """The KServe v2 HTTP/REST endpoint of one ``InferenceServer``."""

    def __init__(
        self, server: InferenceServer, *, host: str, port: int, max_input_size: int, reuse_port: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.max_input_size = max_input_size
        self.router = Router(Endpoints(server, max_input_size))
        self._listener: asyncio.Server | None = None
        self._connections: set[HttpConnection] = set()

    async def start(self) -> int:
        """Bind and start accepting; returns the bound port (``port=0`` picks a free one)."""
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: HttpConnection(self),
            self.host,
            self.port,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
            backlog=1024,
        )
        # uvloop's Server.sockets is a list (typeshed says tuple): index it untyped.
        sockets: Sequence[socket.socket] = cast("Any", self._listener).sockets
        port: int = sockets[0].getsockname()[1]
        logger.info("Started HTTPService at %s:%d", self.host, port)
        return port

    async def stop_accepting(self) -> None:
        """Close the listening socket; open connections and in-flight requests continue."""
        if self._listener is not None:
            self._listener.close()

    async def aclose(self) -> None:
        """Close every connection, cancelling what still runs on them."""
        await self.stop_accepting()
        tasks = [task for connection in self._connections if (task := connection.close()) is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._connections.clear()
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None

    def connection_made(self, connection: HttpConnection) -> None:
        self._connections.add(connection)

    def connection_lost(self, connection: HttpConnection) -> None:
        self._connections.discard(connection)


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests and answers them strictly in order."""

    def __init__(self, frontend: HttpFrontend) -> None:
        self._frontend = frontend
        self._router = frontend.router
        self._max_input_size = frontend.max_input_size
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._started_ns = 0
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._rejection: HttpResponse | None = None
        self._pending: collections.deque[HttpRequest] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        #: The inference whose response this connection waits for (see ``Deferred``).
        self._deferred: Deferred | None = None
        self._deferred_keep_alive = True
        #: The chunked response being written (see ``Streamed``).
        self._stream: Streamed | None = None
        self._stream_keep_alive = True
        self._stream_head_sent = False
        self._write_paused = False
        self._reading_paused = False
        self._discarding = False
        self._closed = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)
        self._frontend.connection_made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pending.clear()
        # A disconnected client cancels its request (ARCHITECTURE 3.5 rule 6).
        if self._task is not None:
            self._task.cancel()
        if self._deferred is not None:
            self._deferred.future.cancel()
        self._cancel_stream()
        self._frontend.connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(error_response(400, "Upgrade is not supported", TEXT))
        except httptools.HttpParserError as exc:
            self._reject(error_response(400, f"Malformed HTTP request: {exc}", TEXT))

    def pause_writing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._resume_reading()
        self._process()

    def close(self) -> asyncio.Task[None] | None:
        """Close the connection now; returns the task still running on it, if any."""
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.close()
        if self._deferred is not None:
            self._deferred.future.cancel()
        self._cancel_stream()
        return self._task

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._started_ns = time.monotonic_ns()
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._rejection = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self._max_input_size:
            self._rejection = error_response(400, too_large_message(int(length), self._max_input_size))
            self._reject(self._rejection)
            return
        expect = self._headers.get(b"expect")
        if (
            expect is not None
            and expect.lower() == b"100-continue"
            and self._task is None
            and self._deferred is None
            and self._stream is None
            and not self._pending
            and self._transport is not None
        ):
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._rejection is not None:
            return
        self._body_size += len(body)
        if self._body_size > self._max_input_size:
            self._rejection = error_response(400, too_large_message(self._body_size, self._max_input_size))
            self._reject(self._rejection)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._rejection is not None:
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        url = self._url
        query = url.find(b"?")
        path = (url if query < 0 else url[:query]).decode("utf-8", "replace")
        self._pending.append(
            HttpRequest(
                self._parser.get_method(),
                path,
                self._headers,
                body,
                self._parser.should_keep_alive(),
                received_ns=self._started_ns,
            )
        )
        if len(self._pending) > _MAX_PENDING:
            self._pause_reading()
        self._process()

    # ---------------------------------------------------------------- request processing

    def _reject(self, response: HttpResponse) -> None:
        """Answer with ``response`` after the requests already queued, then close; read no more."""
        self._discarding = True
        self._pause_reading()
        self._pending.append(HttpRequest(b"", "", {}, b"", keep_alive=False, rejection=response))
        self._process()

    def _process(self) -> None:
        """Answer queued requests in order until one must wait (an inference or a coroutine)."""
        if self._task is not None or self._deferred is not None or self._stream is not None:
            return
        pending = self._pending
        while pending and not self._write_paused and not self._closed:
            request = pending.popleft()
            if request.rejection is not None:
                self._write(request.rejection, keep_alive=False)
                return
            result = self._dispatch(request)
            if isinstance(result, HttpResponse):
                self._write(result, request.keep_alive)
            elif isinstance(result, Deferred):
                # The request's response-complete hook instead of a task per inference.
                self._deferred = result
                self._deferred_keep_alive = request.keep_alive
                result.request.on_complete = self._on_deferred_done
                return
            elif isinstance(result, Streamed):
                self._stream = result
                self._stream_keep_alive = request.keep_alive
                self._stream_head_sent = False
                result.notify = self._on_stream_progress
                if not self._write_stream():
                    return
            else:
                self._task = asyncio.get_running_loop().create_task(self._finish(request, result))
                return
        if len(pending) <= _MAX_PENDING and not self._discarding:
            self._resume_reading()

    def _dispatch(self, request: HttpRequest) -> HttpResponse | Deferred | Streamed | Coroutine[Any, Any, HttpResponse]:
        route = self._router.resolve(request.method, request.path)
        if isinstance(route, HttpResponse):
            return route
        handler, args = route
        try:
            return handler(request, *args)
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a response
            return _render_error(exc)

    async def _finish(self, request: HttpRequest, coroutine: Coroutine[Any, Any, HttpResponse]) -> None:
        try:
            response = await coroutine
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a response
            response = _render_error(exc)
        self._task = None
        if not self._closed:
            self._write(response, request.keep_alive)
            self._process()

    def _on_deferred_done(self, future: asyncio.Future[Any]) -> None:
        deferred, self._deferred = self._deferred, None
        if deferred is None:
            return
        if self._closed:  # the client went away; the future was cancelled for it
            if deferred.finished is not None:
                deferred.finished(None)
            return
        complete = time.monotonic_ns() if deferred.finished is not None else 0
        try:
            response = deferred.render(future.result())
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a response
            response = _render_error(exc)
        if deferred.finished is None:
            self._write(response, self._deferred_keep_alive)
        else:
            started = time.monotonic_ns()
            self._write(response, self._deferred_keep_alive)
            deferred.finished((complete, started, time.monotonic_ns()))
        self._process()

    def _write(self, response: HttpResponse, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        buffers = response.buffers
        length = len(response.body)
        for buffer in buffers:
            length += len(buffer) if isinstance(buffer, bytes) else buffer.nbytes
        head = _encode_head(response, length, keep_alive)
        if not buffers:
            transport.write(head + response.body)
        elif length <= _JOIN_LIMIT:  # one small write is cheaper than gathering a few pieces
            transport.write(b"".join((head, response.body, *buffers)))
        else:
            transport.writelines([head, response.body, *buffers])
        if not keep_alive:
            self._closed = True
            transport.close()

    def _on_stream_progress(self) -> None:
        if self._write_stream():
            self._process()

    def _write_stream(self) -> bool:
        """Write what the current ``Streamed`` holds; True once it ended and the connection is free.

        The head waits for the status (the first response decides it); each chunk is framed as
        ``<size hex>\\r\\n<data>\\r\\n``, and the end as the zero-size chunk.
        """
        stream = self._stream
        transport = self._transport
        if stream is None or transport is None or self._closed:
            return False
        if not stream.status:
            if not stream.ended:
                return False
            stream.status = 200
        parts: list[bytes] = []
        if not self._stream_head_sent:
            self._stream_head_sent = True
            parts.append(_encode_chunked_head(stream.status, stream.content_type, self._stream_keep_alive))
        for chunk in stream.chunks:
            if chunk:
                parts += (b"%x\r\n" % len(chunk), chunk, b"\r\n")
        stream.chunks.clear()
        ended = stream.ended
        if ended:
            parts.append(_LAST_CHUNK)
            stream.notify = None
            self._stream = None
        if parts:
            transport.write(b"".join(parts))
        if ended and not self._stream_keep_alive:
            self._closed = True
            transport.close()
            return False
        return ended

    def _cancel_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.notify = None
            if stream.future is not None:
                stream.future.cancel()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()
