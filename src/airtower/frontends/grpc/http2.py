"""HTTP/2 for gRPC on the event loop (RFC 9113): framing, HPACK, flow control, PING, GOAWAY.

``Http2Connection`` is an ``asyncio.Protocol``, as the HTTP/1.1 frontend's protocol is: it parses
frames as bytes arrive, decodes header blocks (the ``hpack`` package), keeps both directions' flow
control windows and hands each stream's events to a ``StreamHandler`` (``calls.py``: the gRPC
semantics). Nothing here knows gRPC beyond what the server side of a gRPC connection needs: streams
are opened by the client only, there is no server push, and every header block this side writes is
made of literals that never touch the HPACK dynamic table (``encode_headers``), so encoding needs
no state.

Receiving: windows are opened wide (``RECEIVE_WINDOW``) and topped up as data arrives, so a client
never waits on the server (messages are bounded by the 2 GiB gRPC limit, as in tritonserver).
Sending: DATA frames respect the peer's connection and stream windows and its maximum frame size;
what does not fit waits in the stream until WINDOW_UPDATE frames open the windows, and a stream's
trailers follow its last byte of data.

Keepalive (tritonserver's ``--grpc-keepalive-*`` / ``--grpc-http2-*`` flags, grpc core's meaning):
the server pings an idle connection every ``keepalive_time`` ms (only while calls are active unless
``permit_without_calls``) and closes it when no ack comes within ``keepalive_timeout`` ms; a client
pinging more often than ``min_recv_ping_interval`` without data in between earns a strike, and after
``max_ping_strikes`` strikes the connection ends with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import hpack

__all__ = [
    "ErrorCode",
    "Http2Connection",
    "Http2Settings",
    "Stream",
    "StreamHandler",
    "encode_headers",
]

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# Flags
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# Settings
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
DEFAULT_MAX_FRAME = 16_384
#: What this side lets a peer send before it must wait: per stream and for the connection.
RECEIVE_WINDOW = 16 * 1024 * 1024
#: The largest frame this side accepts (peers may then send large DATA frames in one piece).
RECEIVE_MAX_FRAME = 1 << 20
MAX_HEADER_LIST = 16 * 1024 * 1024
#: How many streams ended by this side before the client are remembered as such.
_HALF_CLOSED_KEPT = 1024

_FRAME_HEADER = struct.Struct(">HBBBI")  # length as 16 + 8 bits, type, flags, stream id
_PACK_HEADER = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id — see _frame()
_U32 = struct.Struct(">I")
_SETTING = struct.Struct(">HI")
_GOAWAY = struct.Struct(">II")


class ErrorCode:
    """RFC 9113 section 7 error codes used here."""

    NO_ERROR: Final = 0x0
    PROTOCOL_ERROR: Final = 0x1
    INTERNAL_ERROR: Final = 0x2
    FLOW_CONTROL_ERROR: Final = 0x3
    STREAM_CLOSED: Final = 0x5
    FRAME_SIZE_ERROR: Final = 0x6
    REFUSED_STREAM: Final = 0x7
    CANCEL: Final = 0x8
    COMPRESSION_ERROR: Final = 0x9
    ENHANCE_YOUR_CALM: Final = 0xB


class ConnectionError_(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _PACK_HEADER.pack((len(payload) << 8) | frame_type, flags, stream_id) + payload


def _stop_sending(stream_id: int) -> bytes:
    """RST_STREAM NO_ERROR after a complete response, asking the client to stop sending on the stream
    (RFC 9113 8.1), as grpc's own server transport does when the client has not ended its side."""
    return _frame(RST_STREAM, 0, stream_id, _U32.pack(ErrorCode.NO_ERROR))


def _encode_integer(value: int, prefix_bits: int, first: int) -> bytes:
    """An HPACK integer (RFC 7541 5.1) in a representation whose first byte starts with ``first``."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """A header block of "literal header field without indexing — new name" representations: valid
    whatever the peer's decoder state, and it leaves that state unchanged (RFC 7541 6.2.2)."""
    out = bytearray()
    for name, value in headers:
        raw_name, raw_value = name.encode("ascii"), value.encode("utf-8")
        out += b"\x00" + _encode_integer(len(raw_name), 7, 0) + raw_name
        out += _encode_integer(len(raw_value), 7, 0) + raw_value
    return bytes(out)


@dataclass(slots=True)
class Http2Settings:
    """Connection behaviour from the server's flags (all durations in milliseconds)."""

    keepalive_time: int = 7_200_000
    keepalive_timeout: int = 20_000
    keepalive_permit_without_calls: bool = False
    max_pings_without_data: int = 2
    min_recv_ping_interval_without_data: int = 300_000
    max_ping_strikes: int = 2
    max_connection_age: int | None = None
    max_connection_age_grace: int | None = None


class Stream:
    """One client-initiated stream: what arrived, and what waits to be sent."""

    __slots__ = (
        "call",
        "closed",
        "headers",
        "id",
        "outbound",
        "received_unacked",
        "remote_closed",
        "send_window",
        "trailers",
    )

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.headers: list[tuple[str, str]] = []
        self.send_window = send_window
        self.received_unacked = 0
        #: DATA payloads waiting for window (sent in order), then the trailers' header block.
        self.outbound: list[memoryview] = []
        self.trailers: bytes | None = None
        self.remote_closed = False
        self.closed = False
        #: The handler's object for this stream (``calls.py``'s call) while the stream is open.
        self.call: Any = None


class StreamHandler(Protocol):
    """What the gRPC layer does with a connection's streams (every method runs on the loop)."""

    def headers_received(self, connection: Http2Connection, stream: Stream) -> None: ...

    def data_received(self, connection: Http2Connection, stream: Stream, data: bytes) -> None: ...

    def end_received(self, connection: Http2Connection, stream: Stream) -> None: ...

    def stream_reset(self, connection: Http2Connection, stream: Stream) -> None: ...


class Http2Connection(asyncio.Protocol):
    """The server side of one HTTP/2 connection."""

    def __init__(self, handler: StreamHandler, settings: Http2Settings, registry: set[Http2Connection]) -> None:
        self.handler = handler
        self.settings = settings
        self._registry = registry
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._preface_seen = False
        self._decoder = hpack.Decoder(max_header_list_size=MAX_HEADER_LIST)
        self._decoder.max_allowed_table_size = 4096
        #: Header blocks made only of indexed fields decode the same until the table changes.
        self._indexed_blocks: dict[bytes, list[tuple[str, str]]] = {}
        self.streams: dict[int, Stream] = {}
        self._last_stream_id = 0
        self._continuation: tuple[int, int, bytearray] | None = None  # stream, flags, fragment so far
        #: Streams this side ended (trailers, then RST_STREAM NO_ERROR, or a reset) before the client did
        #: (oldest first): frames the client sent before it learnt that are ignored (RFC 9113 5.1, 5.4.2).
        self._half_closed: dict[int, None] = {}
        # The peer's settings and windows (what this side may send).
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._send_window = DEFAULT_WINDOW
        self._blocked: list[Stream] = []
        # What the peer may still send before this side tops the connection window up.
        self._received_unacked = 0
        self.goaway_sent = False
        self.closing = False
        #: Writes held by ``cork`` until the next loop iteration (None: written at once).
        self._corked: list[bytes] | None = None
        # Keepalive and ping policing.
        self._loop = asyncio.get_running_loop()
        self._keepalive: asyncio.TimerHandle | None = None
        self._ping_deadline: asyncio.TimerHandle | None = None
        self._age_timer: asyncio.TimerHandle | None = None
        self._last_ping_received = 0.0
        self._ping_strikes = 0
        self._pings_without_data = 0
        self.peer = ""

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast("asyncio.Transport", transport)  # uvloop's transports are not its subclasses
        self.transport = transport
        self._registry.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
            self.peer = f"ipv{'6' if ':' in str(peer[0]) else '4'}:{host}:{peer[1]}"
        settings = b"".join(
            _SETTING.pack(key, value)
            for key, value in (
                (SETTINGS_ENABLE_PUSH, 0),
                (SETTINGS_INITIAL_WINDOW_SIZE, RECEIVE_WINDOW),
                (SETTINGS_MAX_FRAME_SIZE, RECEIVE_MAX_FRAME),
                (SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST),
            )
        )
        transport.write(
            _frame(SETTINGS, 0, 0, settings) + _frame(WINDOW_UPDATE, 0, 0, _U32.pack(RECEIVE_WINDOW - DEFAULT_WINDOW))
        )
        self._schedule_keepalive()
        age = self.settings.max_connection_age
        if age is not None and age > 0:
            self._age_timer = self._loop.call_later(age / 1000, self._max_age_reached)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        for timer in (self._keepalive, self._ping_deadline, self._age_timer):
            if timer is not None:
                timer.cancel()
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            if not stream.closed:
                stream.closed = True
                self.handler.stream_reset(self, stream)
            stream.call = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        try:
            if not self._preface_seen:
                if len(buffer) < len(PREFACE):
                    if not PREFACE.startswith(bytes(buffer)):
                        raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
                    return
                if buffer[: len(PREFACE)] != PREFACE:
                    raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid connection preface")
                del buffer[: len(PREFACE)]
                self._preface_seen = True
            offset = 0
            end = len(buffer)
            while end - offset >= 9:
                high, low, frame_type, flags, stream_id = _FRAME_HEADER.unpack_from(buffer, offset)
                length = (high << 8) | low
                if length > RECEIVE_MAX_FRAME:
                    raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, f"frame of {length} bytes")
                if end - offset - 9 < length:
                    break
                start = offset + 9
                offset = start + length
                self._frame_received(frame_type, flags, stream_id & 0x7FFFFFFF, bytes(buffer[start:offset]))
                if self.transport is None:
                    return
            if offset:
                del buffer[:offset]
        except ConnectionError_ as exc:
            logger.info("closing HTTP/2 connection from %s: %s", self.peer, exc)
            self.goaway(exc.code, str(exc))
            self.close()

    # ------------------------------------------------------------------ receiving

    def _frame_received(self, frame_type: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is not None and frame_type != CONTINUATION:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "expected a CONTINUATION frame")
        if frame_type == DATA:
            self._data(flags, stream_id, payload)
        elif frame_type == HEADERS:
            self._headers(flags, stream_id, payload)
        elif frame_type == CONTINUATION:
            self._continuation_frame(flags, stream_id, payload)
        elif frame_type == WINDOW_UPDATE:
            self._window_update(stream_id, payload)
        elif frame_type == PING:
            self._ping(flags, stream_id, payload)
        elif frame_type == SETTINGS:
            self._settings(flags, stream_id, payload)
        elif frame_type == RST_STREAM:
            self._rst_stream(stream_id, payload)
        elif frame_type == GOAWAY:
            self.closing = True
        elif frame_type == PRIORITY:
            if stream_id == 0 or len(payload) != 5:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid PRIORITY frame")
        elif frame_type == PUSH_PROMISE:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "clients cannot push")
        # Unknown frame types are ignored (RFC 9113 4.1).

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid padding")
            return payload[1 : len(payload) - payload[0]]
        return payload

    def _data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
        size = len(payload)
        self._received_unacked += size
        if self._received_unacked >= RECEIVE_WINDOW // 2:
            self._write(_frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._received_unacked)))
            self._received_unacked = 0
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            if stream is None and stream_id in self._half_closed:
                if flags & END_STREAM:
                    del self._half_closed[stream_id]
                return
            if stream_id > self._last_stream_id:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            self._write(_frame(RST_STREAM, 0, stream_id, _U32.pack(ErrorCode.STREAM_CLOSED)))
            return
        data = self._unpad(flags, payload)
        end = bool(flags & END_STREAM)
        if not end:
            stream.received_unacked += size
            if stream.received_unacked >= RECEIVE_WINDOW // 2:
                self._write(_frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(stream.received_unacked)))
                stream.received_unacked = 0
        if data:
            self.handler.data_received(self, stream, data)
        if end and not stream.closed:
            stream.remote_closed = True
            self.handler.end_received(self, stream)

    def _headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(flags, payload)
        if flags & PRIORITY_FLAG:
            block = block[5:]
        if not flags & END_HEADERS:
            self._continuation = (stream_id, flags, bytearray(block))
            return
        self._header_block(flags, stream_id, block)

    def _continuation_frame(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self._continuation is None or self._continuation[0] != stream_id:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION frame")
        _, first_flags, fragment = self._continuation
        fragment += payload
        if len(fragment) > MAX_HEADER_LIST:
            raise ConnectionError_(ErrorCode.ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            self._continuation = None
            self._header_block(first_flags, stream_id, bytes(fragment))

    def _decode(self, block: bytes) -> list[tuple[str, str]]:
        headers = self._indexed_blocks.get(block)
        if headers is not None:
            return headers
        try:
            decoded: Any = self._decoder.decode(block, raw=False)  # str pairs (hpack annotates bytes)
        except hpack.HPACKError as exc:
            raise ConnectionError_(ErrorCode.COMPRESSION_ERROR, f"header block: {exc}") from exc
        headers = [(str(name), str(value)) for name, value in decoded]
        if _only_indexed(block):
            self._indexed_blocks[block] = headers
        else:  # the dynamic table may have changed: earlier indexed blocks may now mean other headers
            self._indexed_blocks.clear()
        return headers

    def _header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        headers = self._decode(block)  # decoded even for refused streams: the table must stay in step
        end = bool(flags & END_STREAM)
        stream = self.streams.get(stream_id)
        if stream is not None:  # trailers from the client
            if not end:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM")
            if not stream.remote_closed and not stream.closed:
                stream.remote_closed = True
                self.handler.end_received(self, stream)
            return
        if stream_id % 2 == 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, f"invalid stream id {stream_id}")
        if stream_id in self._half_closed:  # this side ended it; the client may still send (RFC 9113 5.1)
            if end:
                del self._half_closed[stream_id]
            return
        if stream_id <= self._last_stream_id:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, f"invalid stream id {stream_id}")
        self._last_stream_id = stream_id
        if self.goaway_sent or self.closing:
            self._write(_frame(RST_STREAM, 0, stream_id, _U32.pack(ErrorCode.REFUSED_STREAM)))
            return
        stream = Stream(stream_id, self._peer_initial_window)
        stream.headers = headers
        self.streams[stream_id] = stream
        if self._keepalive is None and self._ping_deadline is None:
            self._schedule_keepalive()  # (a pending timer stays: it reschedules itself while idle)
        self.handler.headers_received(self, stream)
        if end and not stream.closed:
            stream.remote_closed = True
            self.handler.end_received(self, stream)

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise ConnectionError_(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1")
            self._flush_blocked()
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        stream.send_window += increment
        if stream.outbound or stream.trailers is not None:
            self._flush(stream)

    def _ping(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0 or len(payload) != 8:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid PING frame")
        if flags & ACK:
            if self._ping_deadline is not None:
                self._ping_deadline.cancel()
                self._ping_deadline = None
                self._schedule_keepalive()
            return
        self._police_ping()
        if self.transport is not None:
            self._write(_frame(PING, ACK, 0, payload))

    def _police_ping(self) -> None:
        """grpc core's ping policy: a ping sooner than the minimum interval after the last one
        (with no headers or data sent since) is a strike, and too many end the connection. Without
        calls (and without ``permit_without_calls``) the minimum interval is two hours."""
        now = time.monotonic()
        permitted = self.streams or self.settings.keepalive_permit_without_calls
        interval = self.settings.min_recv_ping_interval_without_data / 1000 if permitted else 7200.0
        if self._last_ping_received and now - self._last_ping_received < interval:
            self._ping_strikes += 1
            if self._ping_strikes > self.settings.max_ping_strikes > 0:
                self.goaway(ErrorCode.ENHANCE_YOUR_CALM, "too_many_pings")
                self.close()
                return
        self._last_ping_received = now

    def _sent_data(self) -> None:
        """Headers or data went out: the ping clocks start again (grpc core's ResetPingClock)."""
        self._last_ping_received = 0.0
        self._ping_strikes = 0
        self._pings_without_data = 0

    def _settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            return
        if len(payload) % 6:
            raise ConnectionError_(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of the wrong size")
        for index in range(0, len(payload), 6):
            key, value = _SETTING.unpack_from(payload, index)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ConnectionError_(ErrorCode.FLOW_CONTROL_ERROR, "initial window above 2^31-1")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= 16_777_215:
                    raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, f"invalid SETTINGS_MAX_FRAME_SIZE {value}")
                self._peer_max_frame = value
            elif key == SETTINGS_HEADER_TABLE_SIZE:
                pass  # this side's header blocks never use the dynamic table
        self._write(_frame(SETTINGS, ACK, 0))
        for stream in list(self.streams.values()):
            if stream.outbound and stream.send_window > 0:
                self._flush(stream)

    def _rst_stream(self, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or len(payload) != 4:
            raise ConnectionError_(ErrorCode.PROTOCOL_ERROR, "invalid RST_STREAM frame")
        self._half_closed.pop(stream_id, None)
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream.closed:
            stream.closed = True
            self.handler.stream_reset(self, stream)
            stream.call = None
            self._stream_gone()

    # ------------------------------------------------------------------ sending

    def _write(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def cork(self) -> None:
        """Hold this connection's writes until the loop's next iteration, then write them at once:
        a stream's responses queued together leave in one write (fewer wake-ups for the client)."""
        if self._corked is None:
            self._corked = []
            self._loop.call_soon(self._uncork)

    def _uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and self.transport is not None:
            self.transport.write(b"".join(corked))

    def send_headers(self, stream: Stream, block: bytes, end_stream: bool = False) -> None:
        """A header block for ``stream`` (headers, or trailers with ``end_stream``)."""
        if stream.closed:
            return
        self._sent_data()
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        limit = self._peer_max_frame
        if len(block) <= limit:
            self._write(_frame(HEADERS, flags, stream.id, block))
        else:
            first = True
            for index in range(0, len(block), limit):
                chunk = block[index : index + limit]
                last = index + limit >= len(block)
                if first:
                    self._write(_frame(HEADERS, (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0),
                                       stream.id, chunk))  # fmt: skip
                    first = False
                else:
                    self._write(_frame(CONTINUATION, END_HEADERS if last else 0, stream.id, chunk))
        if end_stream:
            if not stream.remote_closed:
                self._write(_stop_sending(stream.id))
            self._finish(stream)

    def send_response(self, stream: Stream, headers: bytes | None, data: bytes, trailers: bytes) -> None:
        """Headers (unless sent already), one DATA payload and the trailers: a whole unary answer,
        written at once when the windows allow it (the usual case)."""
        if stream.closed:
            return
        size = len(data)
        if (
            not stream.outbound
            and size <= self._send_window
            and size <= stream.send_window
            and size <= self._peer_max_frame
            and len(trailers) <= self._peer_max_frame
            and (headers is None or len(headers) <= self._peer_max_frame)
        ):
            self._send_window -= size
            stream.send_window -= size
            self._sent_data()
            parts = [] if headers is None else [_frame(HEADERS, END_HEADERS, stream.id, headers)]
            parts.append(_frame(DATA, 0, stream.id, data))
            parts.append(_frame(HEADERS, END_HEADERS | END_STREAM, stream.id, trailers))
            if not stream.remote_closed:
                parts.append(_stop_sending(stream.id))
            self._write(b"".join(parts))
            self._finish(stream)
            return
        if headers is not None:
            self.send_headers(stream, headers)
        self.send_data(stream, data)
        self.send_trailers(stream, trailers)

    def send_data(self, stream: Stream, data: bytes) -> None:
        """DATA for ``stream``: sent now as far as the windows allow, the rest when they open."""
        if stream.closed or not data:
            return
        stream.outbound.append(memoryview(data))
        self._flush(stream)

    def send_trailers(self, stream: Stream, block: bytes) -> None:
        """End ``stream`` with trailers, after whatever data still waits for window."""
        if stream.closed:
            return
        stream.trailers = block
        self._flush(stream)

    def _flush(self, stream: Stream) -> None:
        while stream.outbound:
            allowed = min(self._send_window, stream.send_window, self._peer_max_frame)
            if allowed <= 0:
                if self._send_window <= 0 and stream not in self._blocked:
                    self._blocked.append(stream)
                return
            chunk = stream.outbound[0]
            if len(chunk) <= allowed:
                stream.outbound.pop(0)
            else:
                stream.outbound[0] = chunk[allowed:]
                chunk = chunk[:allowed]
            self._send_window -= len(chunk)
            stream.send_window -= len(chunk)
            self._write(_frame(DATA, 0, stream.id, bytes(chunk)))
            self._sent_data()
        if stream.trailers is not None:
            block, stream.trailers = stream.trailers, None
            self.send_headers(stream, block, end_stream=True)

    def _flush_blocked(self) -> None:
        blocked, self._blocked = self._blocked, []
        for stream in blocked:
            if not stream.closed:
                self._flush(stream)

    def reset(self, stream: Stream, code: int = ErrorCode.CANCEL) -> None:
        """RST_STREAM ``stream`` (this side gives up on it)."""
        if stream.closed:
            return
        self._write(_frame(RST_STREAM, 0, stream.id, _U32.pack(code)))
        self._finish(stream)

    def _finish(self, stream: Stream) -> None:
        stream.closed = True
        stream.outbound.clear()
        stream.call = None  # the handler's call keeps its stream, not the other way: no cycle for the GC
        if not stream.remote_closed:
            self._half_closed[stream.id] = None
            if len(self._half_closed) > _HALF_CLOSED_KEPT:
                del self._half_closed[next(iter(self._half_closed))]
        if self.streams.pop(stream.id, None) is not None:
            self._stream_gone()

    def _stream_gone(self) -> None:
        if not self.streams and self.goaway_sent:
            self.close()

    def goaway(self, code: int = ErrorCode.NO_ERROR, debug: str = "") -> None:
        """Tell the client no new streams are accepted (streams up to the last one seen go on)."""
        if self.goaway_sent:
            return
        self.goaway_sent = True
        self._write(_frame(GOAWAY, 0, 0, _GOAWAY.pack(self._last_stream_id, code) + debug.encode()))

    def close(self) -> None:
        if self.transport is not None:
            self._uncork()  # what was held (a GOAWAY, the last responses) goes first
            self.transport.close()

    # ------------------------------------------------------------------ keepalive and connection age

    def _schedule_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        if self.transport is None or self._ping_deadline is not None:
            return
        time_ms = self.settings.keepalive_time
        if time_ms <= 0 or time_ms >= 2**31 - 1:
            return
        self._keepalive = self._loop.call_later(time_ms / 1000, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._keepalive = None
        if self.transport is None:
            return
        limit = self.settings.max_pings_without_data
        idle = not self.streams and not self.settings.keepalive_permit_without_calls
        if idle or 0 < limit <= self._pings_without_data:
            self._schedule_keepalive()
            return
        self._pings_without_data += 1
        self._write(_frame(PING, 0, 0, b"airtower"))
        self._ping_deadline = self._loop.call_later(self.settings.keepalive_timeout / 1000, self._keepalive_expired)

    def _keepalive_expired(self) -> None:
        logger.info("closing HTTP/2 connection from %s: keepalive ping not acknowledged", self.peer)
        self._ping_deadline = None
        self.close()

    def _max_age_reached(self) -> None:
        self.goaway(ErrorCode.NO_ERROR, "max_age")
        if not self.streams:
            self.close()
            return
        grace = self.settings.max_connection_age_grace
        if grace is not None:
            self._loop.call_later(grace / 1000, self.close)


def _only_indexed(block: bytes) -> bool:
    """Whether a header block is made of indexed header fields only (RFC 7541 6.1): such a block
    neither changes the dynamic table nor decodes differently until another block changes it."""
    index, size = 0, len(block)
    while index < size:
        byte = block[index]
        if not byte & 0x80:
            return False
        index += 1
        if byte & 0x7F == 0x7F:
            while index < size and block[index] & 0x80:
                index += 1
            index += 1
    return True
