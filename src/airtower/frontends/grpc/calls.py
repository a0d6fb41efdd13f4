"""gRPC calls over ``http2.py``'s streams: the gRPC-over-HTTP/2 wire protocol for the servicers.

``GrpcService`` is the ``StreamHandler`` of every connection of the native transport. For each
stream it checks the request headers (``:path`` names the method, ``grpc-timeout`` sets a deadline,
``grpc-encoding`` says how request messages are compressed), reassembles length-prefixed messages
from DATA frames, runs the servicer's method with a ``GrpcCall`` as its context (the part of
``grpc.aio.ServicerContext`` the servicers use: ``abort``, ``invocation_metadata``, ``peer``) and
writes the response: headers, length-prefixed messages, then trailers with ``grpc-status`` and
``grpc-message``. A failure before any message is a trailers-only response, as grpc core sends.

Methods with a ``start`` (ModelInfer) run without a task: ``start`` returns the model's future, a
function that turns the finished future into the response bytes, and the inference request, whose
``on_complete`` hook writes the response in the loop iteration that settles the future (without a
request, the future's done-callback does). A client's RST_STREAM, an expired deadline or a lost
connection cancels the call's task or future, which drops a request still in a model's queue.

A server-streaming method (ModelStreamInfer) runs as a task and writes its own messages with
``GrpcCall.send_message`` as they come; the call ends with OK trailers when the method returns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from airtower.core.request import InferenceRequest
from airtower.errors import InternalError, TritonError
from airtower.frontends.grpc.errors import UNPARSABLE_REQUEST, status_of
from airtower.frontends.grpc.http2 import Http2Connection, Stream, encode_headers

__all__ = ["AbortError", "GrpcCall", "GrpcService", "Method", "StatusCode"]


#: What a unary method's ``start`` returns: the future, how its result becomes the response bytes,
#: and the inference request whose ``on_complete`` hook answers (or None).
Started = tuple[asyncio.Future[Any], Callable[[asyncio.Future[Any]], bytes], InferenceRequest | None]

logger = logging.getLogger(__name__)

#: The longest message accepted or sent (tritonserver's ``SetMaxMessageSize(INT32_MAX)``).
MAX_MESSAGE_SIZE = 2**31 - 1

_RESPONSE_HEADERS = encode_headers([(":status", "200"), ("content-type", "application/grpc")])
_OK_TRAILERS = encode_headers([("grpc-status", "0")])
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
#: Headers that are the transport's, not the call's metadata (grpc.aio leaves them out too).
_TRANSPORT_HEADERS = frozenset({"content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding"})
#: grpc core's compression level → algorithm, from those the client accepts, least compression first.
_ALGORITHM_RANKING = ("gzip", "deflate")


class StatusCode:
    """gRPC status codes (the numbers on the wire)."""

    OK: Final = 0
    CANCELLED: Final = 1
    UNKNOWN: Final = 2
    INVALID_ARGUMENT: Final = 3
    DEADLINE_EXCEEDED: Final = 4
    NOT_FOUND: Final = 5
    RESOURCE_EXHAUSTED: Final = 8
    UNIMPLEMENTED: Final = 12
    INTERNAL: Final = 13
    UNAVAILABLE: Final = 14


class AbortError(Exception):
    """Raised by ``GrpcCall.abort``: the RPC ends with this status."""

    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _code_number(code: Any) -> int:
    """A status code as its number: an int, or a ``grpc.StatusCode`` (whose value is (number, name))."""
    if isinstance(code, int):
        return code
    value = getattr(code, "value", None)
    if isinstance(value, tuple) and value and isinstance(value[0], int):
        return value[0]
    return StatusCode.UNKNOWN


def _percent_encode(message: str) -> str:
    """``grpc-message``: UTF-8, with bytes outside printable ASCII and '%' percent-encoded."""
    out = []
    for byte in message.encode("utf-8"):
        out.append(chr(byte) if 0x20 <= byte <= 0x7E and byte != 0x25 else f"%{byte:02X}")
    return "".join(out)


def _parse_timeout(value: str) -> float | None:
    """``grpc-timeout`` (1-8 digits and a unit) in seconds; None when malformed."""
    digits = value[:-1]
    if not 1 <= len(digits) <= 8 or not (digits.isascii() and digits.isdigit()) or value[-1] not in _TIMEOUT_UNITS:
        return None
    return int(digits) * _TIMEOUT_UNITS[value[-1]]


def response_algorithm(level: str, accepted: str) -> str | None:
    """The compression a response gets at ``--grpc-infer-response-compression-level`` for a client
    accepting ``accepted`` (grpc core's ``grpc_compression_algorithm_for_level``)."""
    if level == "none":
        return None
    offered = {item.strip() for item in accepted.split(",")}
    supported = [algorithm for algorithm in _ALGORITHM_RANKING if algorithm in offered]
    if not supported:
        return None
    index = {"low": 0, "medium": len(supported) // 2, "high": len(supported) - 1}[level]
    return supported[index]


def _compress(data: bytes, algorithm: str) -> bytes:
    if algorithm == "gzip":
        compressor = zlib.compressobj(wbits=31)
        return compressor.compress(data) + compressor.flush()
    return zlib.compress(data)


def _decompress(data: bytes, algorithm: str) -> bytes:
    if algorithm == "gzip":
        return zlib.decompress(data, 31)
    if algorithm == "deflate":
        return zlib.decompress(data)
    raise AbortError(StatusCode.UNIMPLEMENTED, f"Compression algorithm '{algorithm}' is not supported")


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC: how its messages are read and written, and the servicer's behaviour."""

    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    #: ``behaviour(request, call)`` (unary) or ``behaviour(request_iterator, call)`` (streaming requests).
    #: A server-streaming behaviour writes its messages itself, as bytes (``call.send_message``), and
    #: returns when the call is over (``finish`` then sends OK); it yields nothing.
    behaviour: Callable[..., Any]
    client_streaming: bool = False
    server_streaming: bool = False
    #: Optional, for unary methods: ``start(request, call) -> (future, complete, inference request)``,
    #: without a task (see the module's docstring).
    start: Callable[[Any, GrpcCall], Started] | None = None


class GrpcCall:
    """One RPC: the servicer's ``context`` and the state of its response."""

    __slots__ = (
        "_buffer",
        "connection",
        "deadline",
        "encoding",
        "future",
        "headers_sent",
        "inbox",
        "metadata",
        "method",
        "received",
        "release",
        "response_encoding",
        "stream",
        "task",
        "timed_out",
        "timer",
    )

    def __init__(
        self, connection: Http2Connection, stream: Stream, method: Method, release: Callable[[GrpcCall], None]
    ) -> None:
        self.connection = connection
        #: Called once the call is over when nothing else will be (``GrpcService`` forgets it).
        self.release = release
        self.stream = stream
        self.method = method
        self.metadata: tuple[tuple[str, str], ...] = ()
        self.encoding = "identity"
        self.response_encoding: str | None = None
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timed_out = False
        self._buffer = bytearray()
        #: Unary: the one request message; streaming: None (messages go to ``inbox``).
        self.received: list[bytes] = []
        self.inbox: asyncio.Queue[bytes | None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.future: asyncio.Future[Any] | None = None
        self.headers_sent = False

    # -- grpc.aio.ServicerContext, as far as the servicers use it

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort(self, code: Any, details: str = "") -> None:
        raise AbortError(_code_number(code), details)

    def peer(self) -> str:
        return self.connection.peer

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def cancelled(self) -> bool:
        return self.stream.closed and not self.timed_out

    # -- messages in

    def feed(self, data: bytes) -> None:
        """DATA of the request stream: complete messages go to ``received`` or ``inbox``."""
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < 5 or len(buffer) - 5 < int.from_bytes(buffer[1:5], "big"):
                return  # a large message arrives in many frames: copy it once, when complete
            view = bytes(buffer)
            buffer.clear()
        else:
            view = data
        offset, size = 0, len(view)
        while size - offset >= 5:
            flag = view[offset]
            length = int.from_bytes(view[offset + 1 : offset + 5], "big")
            if length > MAX_MESSAGE_SIZE:
                raise AbortError(
                    StatusCode.RESOURCE_EXHAUSTED, f"Received message larger than max ({length} vs. {MAX_MESSAGE_SIZE})"
                )
            if size - offset - 5 < length:
                break
            message = view[offset + 5 : offset + 5 + length]
            offset += 5 + length
            if flag & 1:
                message = _decompress(message, self.encoding)
            if self.inbox is not None:
                self.inbox.put_nowait(message)
            else:
                self.received.append(message)
        if offset < size:
            buffer += view[offset:]

    def requests(self) -> AsyncIterator[Any]:
        """The request messages of a client-streaming call, deserialized, until the client ends."""
        assert self.inbox is not None
        return _RequestIterator(self.inbox, self.method.deserialize)

    # -- the response out

    def _frame_message(self, data: bytes) -> bytes:
        if self.response_encoding is not None:
            return b"\x01" + len(compressed := _compress(data, self.response_encoding)).to_bytes(4, "big") + compressed
        return b"\x00" + len(data).to_bytes(4, "big") + data

    def _response_headers(self) -> bytes:
        if self.response_encoding is None:
            return _RESPONSE_HEADERS
        return _RESPONSE_HEADERS + encode_headers([("grpc-encoding", self.response_encoding)])

    def send_message(self, data: bytes) -> None:
        """One response message of a streaming call (written with those queued in the same loop
        iteration, on any stream of the connection)."""
        self.connection.cork()
        if not self.headers_sent:
            self.headers_sent = True
            self.connection.send_headers(self.stream, self._response_headers())
        self.connection.send_data(self.stream, self._frame_message(data))

    def send_unary(self, data: bytes) -> None:
        """The one response message of a unary call, and its OK trailers."""
        self._stop_timer()
        headers = None if self.headers_sent else self._response_headers()
        self.headers_sent = True
        self.connection.send_response(self.stream, headers, self._frame_message(data), _OK_TRAILERS)

    def finish(self, code: int = StatusCode.OK, details: str = "") -> None:
        """End the call with its status (trailers-only when nothing was sent yet)."""
        self._stop_timer()
        fields = [("grpc-status", str(code))]
        if details:
            fields.append(("grpc-message", _percent_encode(details)))
        if self.headers_sent:
            self.connection.send_trailers(self.stream, encode_headers(fields))
        else:
            self.headers_sent = True
            block = encode_headers([(":status", "200"), ("content-type", "application/grpc"), *fields])
            self.connection.send_headers(self.stream, block, end_stream=True)

    def fail(self, exc: BaseException, where: str) -> None:
        """End the call with the status of ``exc`` (an abort, a TritonError, or a bug: logged)."""
        if isinstance(exc, AbortError):
            self.finish(exc.code, exc.details)
            return
        if not isinstance(exc, TritonError):
            logger.error("unexpected error in %s", where, exc_info=exc)
            exc = InternalError(str(exc) or type(exc).__name__)
        self.finish(_code_number(status_of(exc)), exc.message)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def cancel(self) -> None:
        """The client reset the stream, the connection is gone or the deadline passed."""
        self._stop_timer()
        if self.task is not None:
            self.task.cancel()
        if self.future is not None:
            self.future.cancel()
        if self.inbox is not None:
            self.inbox.put_nowait(None)

    def deadline_exceeded(self) -> None:
        self.timer = None
        if self.stream.closed:
            return
        self.timed_out = True
        self.finish(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        running = self.task is not None or self.future is not None
        self.cancel()
        if not running:  # the request was still arriving: no task or future will release the call
            self.release(self)


class _RequestIterator:
    """``async for`` over a streaming call's request messages (``None`` in the inbox ends it)."""

    def __init__(self, inbox: asyncio.Queue[bytes | None], deserialize: Callable[[bytes], Any]) -> None:
        self._inbox = inbox
        self._deserialize = deserialize

    def __aiter__(self) -> _RequestIterator:
        return self

    async def __anext__(self) -> Any:
        message = await self._inbox.get()
        if message is not None:
            try:
                return self._deserialize(message)
            except Exception:  # noqa: BLE001 - as grpc++ does, a message that does not parse ends the reads
                logger.info("a streaming call's request message does not parse: no more are read")
        self._inbox.put_nowait(None)  # and for any later read
        raise StopAsyncIteration


def _parse(method: Method, payload: bytes) -> Any:
    """``payload`` as ``method``'s request message.

    Raises:
        InternalError: it does not parse (grpc++'s "Unable to parse request").
    """
    try:
        return method.deserialize(payload)
    except Exception as exc:
        raise InternalError(UNPARSABLE_REQUEST) from exc


class GrpcService:
    """The gRPC methods of a server, by ``:path``, as the stream handler of its connections."""

    def __init__(self, methods: dict[str, Method], compression_level: str = "none") -> None:
        self.methods = methods
        self.compression_level = compression_level
        #: Calls still running, so that shutdown can wait for (or cancel) them.
        self.calls: set[GrpcCall] = set()
        self._idle: asyncio.Event | None = None

    # -- StreamHandler

    def headers_received(self, connection: Http2Connection, stream: Stream) -> None:
        path = method = None
        content_type = ""
        metadata = []
        timeout = encoding = accept = None
        for name, value in stream.headers:
            if name[0] == ":":
                if name == ":path":
                    path = value
            elif name in _TRANSPORT_HEADERS:
                if name == "content-type":
                    content_type = value
                elif name == "grpc-timeout":
                    timeout = value
                elif name == "grpc-encoding":
                    encoding = value
                elif name == "grpc-accept-encoding":
                    accept = value
            else:
                metadata.append((name, value))
        if path is not None:
            method = self.methods.get(path)
        call = GrpcCall(connection, stream, method or _UNKNOWN_METHOD, self._done)
        stream.call = call
        if not content_type.startswith("application/grpc"):
            call.headers_sent = True  # not gRPC: answer as grpc core does, with HTTP 415
            message = _percent_encode(f"invalid gRPC request content-type '{content_type}'")
            fields = [(":status", "415"), ("grpc-status", str(StatusCode.UNKNOWN)), ("grpc-message", message)]
            block = encode_headers(fields)
            connection.send_headers(stream, block, end_stream=True)
            return
        if method is None:
            call.finish(StatusCode.UNIMPLEMENTED, f"Method not found: {path}")
            return
        call.metadata = tuple(metadata)
        if encoding is not None and encoding != "identity":
            call.encoding = encoding
        if accept is not None and self.compression_level != "none":
            call.response_encoding = response_algorithm(self.compression_level, accept)
        if timeout is not None:
            seconds = _parse_timeout(timeout)
            if seconds is not None:
                call.deadline = time.monotonic() + seconds
                call.timer = asyncio.get_running_loop().call_later(seconds, call.deadline_exceeded)
        self.calls.add(call)
        if method.client_streaming:
            call.inbox = asyncio.Queue()
            call.task = asyncio.get_running_loop().create_task(
                self._run(call, functools.partial(self._streaming, call))
            )

    def data_received(self, connection: Http2Connection, stream: Stream, data: bytes) -> None:
        call: GrpcCall | None = stream.call  # None once answered (an unknown method's stream included)
        if call is None or stream.closed:
            return
        try:
            call.feed(data)
        except Exception as exc:  # noqa: BLE001 - a bad message ends its call, not the connection
            self._abandon(call, exc)

    def end_received(self, connection: Http2Connection, stream: Stream) -> None:
        call: GrpcCall | None = stream.call  # None once answered (an unknown method's stream included)
        if call is None or stream.closed:
            return
        if call.inbox is not None:
            call.inbox.put_nowait(None)
            return
        if len(call.received) != 1:
            count = "no request message" if not call.received else "more than one request message"
            self._abandon(call, AbortError(StatusCode.UNIMPLEMENTED if call.received else StatusCode.INTERNAL,
                                           f"Received {count} for a unary call"))  # fmt: skip
            return
        method = call.method
        payload = call.received.pop()
        if method.start is not None:
            self._start_unary(call, method, payload)
        else:
            call.task = asyncio.get_running_loop().create_task(
                self._run(call, functools.partial(self._unary, call, payload))
            )

    def stream_reset(self, connection: Http2Connection, stream: Stream) -> None:
        call: GrpcCall | None = stream.call
        if call is not None:
            call.cancel()
            self._done(call)

    # -- running methods

    def _abandon(self, call: GrpcCall, exc: BaseException) -> None:
        call.fail(exc, "gRPC call")
        call.cancel()
        self._done(call)

    def _start_unary(self, call: GrpcCall, method: Method, payload: bytes) -> None:
        assert method.start is not None
        try:
            future, complete, request = method.start(_parse(method, payload), call)
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            call.fail(exc, "gRPC call")
            self._done(call)
            return
        call.future = future

        def respond(done: asyncio.Future[Any]) -> None:
            if call.stream.closed:
                self._done(call)
                return
            try:
                data = complete(done)
            except asyncio.CancelledError:
                call.finish(StatusCode.CANCELLED, "Cancelled")
            except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
                call.fail(exc, "gRPC call")
            else:
                call.send_unary(data)
            self._done(call)

        if request is not None:
            request.on_complete = respond
        else:
            future.add_done_callback(respond)

    async def _run(self, call: GrpcCall, body: Callable[[], Awaitable[None]]) -> None:
        """A call's task: ``body`` answers it; an error ends it with its status; cancellation
        (the client reset the stream, the deadline passed) ends it quietly."""
        try:
            await body()
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            if not call.stream.closed:
                call.fail(exc, "gRPC call")
        finally:
            self._done(call)

    async def _unary(self, call: GrpcCall, payload: bytes) -> None:
        method = call.method
        response = await method.behaviour(_parse(method, payload), call)
        if not call.stream.closed:
            call.send_unary(method.serialize(response))

    async def _streaming(self, call: GrpcCall) -> None:
        method = call.method
        if method.server_streaming:
            # The behaviour writes its messages itself (``call.send_message``) as they come.
            await method.behaviour(call.requests(), call)
        else:  # pragma: no cover - Triton's services have no client-streaming unary method
            call.send_message(method.serialize(await method.behaviour(call.requests(), call)))
        if not call.stream.closed:
            call.finish()

    def _done(self, call: GrpcCall) -> None:
        self.calls.discard(call)
        if not self.calls and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no call is running."""
        while self.calls:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def cancel_all(self) -> None:
        for call in list(self.calls):
            if not call.stream.closed:
                call.finish(StatusCode.UNAVAILABLE, "the server is shutting down")
            call.cancel()
        self.calls.clear()


async def _never(request: Any, call: GrpcCall) -> Any:  # pragma: no cover - never dispatched
    raise AssertionError("unknown methods are answered UNIMPLEMENTED before running")


_UNKNOWN_METHOD = Method(deserialize=bytes, serialize=bytes, behaviour=_never)
