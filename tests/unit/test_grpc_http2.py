"""The gRPC frontend's HTTP/2 (``Http2Connection``), driven frame by frame through a fake transport."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable
from typing import Any, NamedTuple

import hpack
import pytest

from airtower.frontends.grpc.http2 import (
    RECEIVE_MAX_FRAME,
    RECEIVE_WINDOW,
    ErrorCode,
    Http2Connection,
    Http2Settings,
    Stream,
    StreamHandler,
    _only_indexed,
    encode_headers,
)

# RFC 9113 wire values, written out here rather than taken from the module under test.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
ENABLE_PUSH, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x2, 0x4, 0x5, 0x6

REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/pkg.Svc/Call"), (":authority", "localhost")]
STATUS_200 = encode_headers([(":status", "200")])
TRAILERS = encode_headers([("grpc-status", "0")])


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big") + payload


def u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


class Frame(NamedTuple):
    kind: int
    flags: int
    stream_id: int
    payload: bytes


def parse_frames(data: bytes) -> list[Frame]:
    frames, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        kind, flags, stream_id = (
            data[offset + 3],
            data[offset + 4],
            int.from_bytes(data[offset + 5 : offset + 9], "big"),
        )
        frames.append(Frame(kind, flags, stream_id & 0x7FFFFFFF, data[offset + 9 : offset + 9 + length]))
        offset += 9 + length
    assert offset == len(data), "the server wrote a truncated frame"
    return frames


def goaway_of(frames: list[Frame]) -> tuple[int, int, bytes]:
    """(last stream id, error code, debug data) of the one GOAWAY among ``frames``."""
    (goaway,) = [f for f in frames if f.kind == GOAWAY]
    assert goaway.stream_id == 0
    last, code = struct.unpack_from(">II", goaway.payload)
    return last, code, goaway.payload[8:]


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.writes = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        self.written += data
        self.writes += 1

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default


class RecordingHandler:
    """A StreamHandler that records each event as (kind, stream id, headers / data / None)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, Any]] = []
        self.streams: dict[int, Stream] = {}

    def headers_received(self, connection: Http2Connection, stream: Stream) -> None:
        self.streams[stream.id] = stream
        self.events.append(("headers", stream.id, list(stream.headers)))

    def data_received(self, connection: Http2Connection, stream: Stream, data: bytes) -> None:
        self.events.append(("data", stream.id, data))

    def end_received(self, connection: Http2Connection, stream: Stream) -> None:
        self.events.append(("end", stream.id, None))

    def stream_reset(self, connection: Http2Connection, stream: Stream) -> None:
        self.events.append(("reset", stream.id, None))


class Peer:
    """The client end of one ``Http2Connection``: writes frames into it, reads back what it wrote."""

    def __init__(self, handler: StreamHandler, settings: Http2Settings | None = None, *, preface: bool = True) -> None:
        self.transport = FakeTransport()
        self.registry: set[Http2Connection] = set()
        self.connection = Http2Connection(handler, settings or Http2Settings(), self.registry)
        self.connection.connection_made(self.transport)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        if preface:
            self.send(PREFACE + frame(SETTINGS, 0, 0))
            self.take()  # the server's preface and its SETTINGS ACK

    def send(self, data: bytes) -> None:
        self.connection.data_received(data)

    def headers(self, stream_id: int, headers: Iterable[tuple[str, str]], *, end_stream: bool = False) -> None:
        block = self.encoder.encode(list(headers))
        self.send(frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream_id, block))

    def data(self, stream_id: int, payload: bytes, *, end_stream: bool = False) -> None:
        self.send(frame(DATA, END_STREAM if end_stream else 0, stream_id, payload))

    def settings(self, values: dict[int, int]) -> None:
        self.send(frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in values.items())))

    def window_update(self, stream_id: int, increment: int) -> None:
        self.send(frame(WINDOW_UPDATE, 0, stream_id, u32(increment)))

    def take(self) -> list[Frame]:
        """The frames the server wrote since the last take."""
        data = bytes(self.transport.written)
        self.transport.written.clear()
        return parse_frames(data)

    def decode(self, block: bytes) -> list[tuple[str, str]]:
        return [(str(name), str(value)) for name, value in self.decoder.decode(block)]


def kinds(frames: list[Frame]) -> list[tuple[int, int, int]]:
    return [(f.kind, f.flags, f.stream_id) for f in frames]


def data_of(frames: list[Frame], stream_id: int) -> bytes:
    return b"".join(f.payload for f in frames if f.kind == DATA and f.stream_id == stream_id)


# ---------------------------------------------------------------------------------------- connection setup


async def test_connect_writes_settings_and_connection_window_update() -> None:
    peer = Peer(RecordingHandler(), preface=False)
    settings, window = peer.take()
    assert (settings.kind, settings.flags, settings.stream_id) == (SETTINGS, 0, 0)
    values = dict(struct.iter_unpack(">HI", settings.payload))
    assert values == {
        ENABLE_PUSH: 0,
        INITIAL_WINDOW_SIZE: RECEIVE_WINDOW,
        MAX_FRAME_SIZE: RECEIVE_MAX_FRAME,
        MAX_HEADER_LIST_SIZE: 16 * 1024 * 1024,
    }
    assert (window.kind, window.stream_id, window.payload) == (WINDOW_UPDATE, 0, u32(RECEIVE_WINDOW - 65_535))
    assert peer.connection.peer == "ipv4:127.0.0.1:5555"
    assert peer.registry == {peer.connection}
    peer.connection.connection_lost(None)
    assert peer.registry == set()


@pytest.mark.parametrize(
    "chunks",
    [[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"], [PREFACE[:10], b"X" + PREFACE[11:] + frame(SETTINGS, 0, 0)]],
    ids=["http1", "wrong-after-a-valid-start"],
)
async def test_bad_client_preface_is_goaway_protocol_error_and_close(chunks: list[bytes]) -> None:
    peer = Peer(RecordingHandler(), preface=False)
    peer.take()
    for chunk in chunks:
        assert not peer.transport.closed
        peer.send(chunk)
    assert goaway_of(peer.take()) == (0, ErrorCode.PROTOCOL_ERROR, b"invalid connection preface")
    assert peer.transport.closed


async def test_settings_are_acknowledged_and_acks_are_not() -> None:
    peer = Peer(RecordingHandler())
    peer.settings({INITIAL_WINDOW_SIZE: 1000, MAX_FRAME_SIZE: 20_000, 0x99: 1})  # unknown settings are ignored
    assert peer.take() == [Frame(SETTINGS, ACK, 0, b"")]
    peer.send(frame(SETTINGS, ACK, 0))
    assert peer.take() == []


async def test_ping_is_answered_with_an_ack_of_the_same_payload() -> None:
    peer = Peer(RecordingHandler())
    peer.send(frame(PING, 0, 0, b"12345678"))
    assert peer.take() == [Frame(PING, ACK, 0, b"12345678")]


# ---------------------------------------------------------------------------------------- receiving


@pytest.mark.parametrize("chunk_size", [None, 1, 7, 9, 10], ids=lambda size: f"chunks-of-{size}")
async def test_request_reaches_the_handler_however_the_bytes_are_split(chunk_size: int | None) -> None:
    handler = RecordingHandler()
    peer = Peer(handler, preface=False)
    headers = [*REQUEST, ("x-custom", "välue")]
    wire = (
        PREFACE
        + frame(SETTINGS, 0, 0, struct.pack(">HI", INITIAL_WINDOW_SIZE, 100))
        + frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(headers))
        + frame(DATA, 0, 1, b"hello ")
        + frame(DATA, END_STREAM, 1, b"world")
    )
    size = chunk_size or len(wire)
    for index in range(0, len(wire), size):
        peer.send(wire[index : index + size])
    assert handler.events == [
        ("headers", 1, headers),
        ("data", 1, b"hello "),
        ("data", 1, b"world"),
        ("end", 1, None),
    ]
    assert handler.streams[1].remote_closed
    assert kinds(peer.take()[2:]) == [(SETTINGS, ACK, 0)]  # after the server preface: no error


async def test_continuation_frames_complete_a_header_block() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    block = peer.encoder.encode([*REQUEST, ("x-long", "v" * 100)])
    peer.send(
        frame(HEADERS, END_STREAM, 1, block[:5])
        + frame(CONTINUATION, 0, 1, block[5:20])
        + frame(CONTINUATION, END_HEADERS, 1, block[20:])
    )
    assert handler.events == [("headers", 1, [*REQUEST, ("x-long", "v" * 100)]), ("end", 1, None)]


@pytest.mark.parametrize(
    "interruption",
    [frame(PING, 0, 0, b"12345678"), frame(CONTINUATION, END_HEADERS, 3, b"\x82")],
    ids=["ping", "other-stream"],
)
async def test_frame_interrupting_a_header_block_is_protocol_error(interruption: bytes) -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    peer.send(frame(HEADERS, 0, 1, peer.encoder.encode(REQUEST)) + interruption)
    assert goaway_of(peer.take())[1] == ErrorCode.PROTOCOL_ERROR
    assert peer.transport.closed
    assert handler.events == []


async def test_padding_and_priority_fields_are_stripped() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    block = peer.encoder.encode(REQUEST)
    priority = u32(0) + b"\x10"
    peer.send(frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1, b"\x03" + priority + block + b"\x00" * 3))
    peer.send(frame(DATA, PADDED, 1, b"\x04payload\x00\x00\x00\x00"))
    peer.send(frame(DATA, PADDED | END_STREAM, 1, b"\x00"))  # padding length 0 and no data
    assert handler.events == [("headers", 1, REQUEST), ("data", 1, b"payload"), ("end", 1, None)]


@pytest.mark.parametrize("payload", [b"", b"\x05abc", b"\x04abc"], ids=["empty", "too-long", "as-long-as-the-payload"])
async def test_invalid_padding_is_protocol_error(payload: bytes) -> None:
    peer = Peer(RecordingHandler())
    peer.headers(1, REQUEST)
    peer.send(frame(DATA, PADDED, 1, payload))
    assert goaway_of(peer.take()) == (1, ErrorCode.PROTOCOL_ERROR, b"invalid padding")


async def test_indexed_header_block_cache_follows_the_dynamic_table() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    encoder, reference = hpack.Encoder(), hpack.Decoder()
    first = encoder.encode([*REQUEST, ("x-a", "1")])  # literals with incremental indexing
    indexed = encoder.encode([*REQUEST, ("x-a", "1")])  # the same headers: indexed fields only
    shifting = encoder.encode([*REQUEST, ("x-b", "2")])  # a new insertion: every dynamic index moves by one
    assert not _only_indexed(first)
    assert _only_indexed(indexed)
    assert not _only_indexed(shifting)
    expected: list[tuple[str, int, Any]] = []
    for stream_id, block in zip(range(1, 12, 2), [first, indexed, indexed, shifting, indexed, indexed], strict=True):
        peer.send(frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block))
        expected.append(("headers", stream_id, [(str(n), str(v)) for n, v in reference.decode(block)]))
        expected.append(("end", stream_id, None))
    assert handler.events == expected
    # The cached block means other headers once the table has shifted: the test exercises the cache.
    assert expected[2][2] == [*REQUEST, ("x-a", "1")]
    assert expected[8][2] != expected[2][2]
    assert peer.take() == []


@pytest.mark.parametrize(
    ("block", "only_indexed"),
    [
        (b"", True),
        (b"\x82\x86\x84", True),
        (b"\xbe", True),  # index 62: the first dynamic entry
        (b"\xff\x05", True),  # index 127 + 5: the continuation byte 0x05 is not a literal
        (b"\xff\x80\x01\x82", True),  # a multi-byte index, then a static one
        (b"\x82\x40\x01a\x01b", False),  # literal with incremental indexing
        (b"\x00\x01a\x01b", False),  # literal without indexing
        (b"\x10\x01a\x01b", False),  # literal never indexed
        (b"\x20\x82", False),  # dynamic table size update
        (b"\xff\x80\x01\x04\x01b", False),  # a multi-byte index, then a literal
    ],
)
def test_only_indexed(block: bytes, only_indexed: bool) -> None:
    assert _only_indexed(block) is only_indexed


def test_encode_headers_decodes_to_the_same_headers_and_leaves_the_table_empty() -> None:
    headers = [
        (":status", "200"),
        ("content-type", "application/grpc"),
        ("grpc-message", "ünïcode"),
        ("x-" + "n" * 200, "v" * 300),  # lengths above the 7-bit prefix
        ("x-empty", ""),
        ("x-exact", "e" * 127),
    ]
    decoder = hpack.Decoder()
    assert [(str(n), str(v)) for n, v in decoder.decode(encode_headers(headers))] == headers
    assert len(decoder.header_table.dynamic_entries) == 0
    assert encode_headers([]) == b""


async def test_receive_windows_are_topped_up_at_half_the_window() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    peer.headers(1, REQUEST)
    chunk = b"x" * RECEIVE_MAX_FRAME
    for _ in range(RECEIVE_WINDOW // 2 // RECEIVE_MAX_FRAME - 1):
        peer.data(1, chunk)
    assert peer.take() == []
    peer.data(1, chunk)
    assert peer.take() == [
        Frame(WINDOW_UPDATE, 0, 0, u32(RECEIVE_WINDOW // 2)),
        Frame(WINDOW_UPDATE, 0, 1, u32(RECEIVE_WINDOW // 2)),
    ]


# ---------------------------------------------------------------------------------------- sending


def open_stream(peer: Peer, handler: RecordingHandler, stream_id: int, *, end_stream: bool = True) -> Stream:
    peer.headers(stream_id, REQUEST, end_stream=end_stream)
    return handler.streams[stream_id]


async def test_send_response_within_the_windows_is_one_write() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1)
    writes = peer.transport.writes
    peer.connection.send_response(stream, STATUS_200, b"body", TRAILERS)
    assert peer.transport.writes == writes + 1
    frames = peer.take()
    assert kinds(frames) == [(HEADERS, END_HEADERS, 1), (DATA, 0, 1), (HEADERS, END_HEADERS | END_STREAM, 1)]
    assert peer.decode(frames[0].payload) == [(":status", "200")]
    assert frames[1].payload == b"body"
    assert peer.decode(frames[2].payload) == [("grpc-status", "0")]
    assert stream.closed
    assert peer.connection.streams == {}


async def test_stream_window_holds_data_and_trailers_until_it_opens() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    peer.settings({INITIAL_WINDOW_SIZE: 10})
    peer.take()
    stream = open_stream(peer, handler, 1)
    body = bytes(range(25))
    peer.connection.send_response(stream, STATUS_200, body, TRAILERS)
    frames = peer.take()
    assert kinds(frames) == [(HEADERS, END_HEADERS, 1), (DATA, 0, 1)]
    assert frames[1].payload == body[:10]
    peer.window_update(1, 10)
    assert peer.take() == [Frame(DATA, 0, 1, body[10:20])]
    peer.window_update(0, 1000)  # the connection window was not what held the data back
    assert peer.take() == []
    peer.settings({INITIAL_WINDOW_SIZE: 15})  # opens the stream's window by 5
    frames = peer.take()
    assert kinds(frames) == [(SETTINGS, ACK, 0), (DATA, 0, 1), (HEADERS, END_HEADERS | END_STREAM, 1)]
    assert frames[1].payload == body[20:]
    assert peer.decode(frames[2].payload) == [("grpc-status", "0")]
    assert stream.closed


async def test_connection_window_holds_streams_until_a_window_update() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    peer.settings({INITIAL_WINDOW_SIZE: 1 << 20})
    peer.take()
    first, second = open_stream(peer, handler, 1), open_stream(peer, handler, 3)
    big, small = bytes(i % 251 for i in range(70_000)), b"s" * 100
    peer.connection.send_response(first, STATUS_200, big, TRAILERS)
    frames = peer.take()
    assert [len(f.payload) for f in frames if f.kind == DATA] == [16_384, 16_384, 16_384, 16_383]
    assert all(f.kind != HEADERS or not f.flags & END_STREAM for f in frames)
    peer.connection.send_response(second, STATUS_200, small, TRAILERS)
    assert kinds(peer.take()) == [(HEADERS, END_HEADERS, 3)]
    peer.window_update(3, 1000)  # a stream's window is not enough while the connection's is closed
    assert peer.take() == []
    peer.window_update(0, 10_000)
    released = peer.take()
    assert kinds(released) == [
        (DATA, 0, 1),
        (HEADERS, END_HEADERS | END_STREAM, 1),
        (DATA, 0, 3),
        (HEADERS, END_HEADERS | END_STREAM, 3),
    ]
    assert data_of(frames + released, 1) == big
    assert data_of(released, 3) == small


async def test_data_frames_respect_the_peer_max_frame_size() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    peer.settings({INITIAL_WINDOW_SIZE: 1 << 20, MAX_FRAME_SIZE: 20_000})
    peer.take()
    stream = open_stream(peer, handler, 1)
    body = bytes(i % 253 for i in range(50_000))
    peer.connection.send_response(stream, STATUS_200, body, TRAILERS)
    frames = peer.take()
    assert [len(f.payload) for f in frames if f.kind == DATA] == [20_000, 20_000, 10_000]
    assert data_of(frames, 1) == body
    assert kinds(frames)[-1] == (HEADERS, END_HEADERS | END_STREAM, 1)


@pytest.mark.parametrize("size", [16_383, 1 << 24])
async def test_invalid_max_frame_size_is_protocol_error(size: int) -> None:
    peer = Peer(RecordingHandler())
    peer.settings({MAX_FRAME_SIZE: size})
    assert goaway_of(peer.take())[1] == ErrorCode.PROTOCOL_ERROR
    assert peer.transport.closed


async def test_header_block_above_the_max_frame_size_is_split_into_continuations() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1)
    headers = [("grpc-status", "13"), ("grpc-message", "m" * 40_000)]
    peer.connection.send_headers(stream, encode_headers(headers), end_stream=True)
    frames = peer.take()
    assert kinds(frames) == [(HEADERS, END_STREAM, 1), (CONTINUATION, 0, 1), (CONTINUATION, END_HEADERS, 1)]
    assert [len(f.payload) for f in frames[:2]] == [16_384, 16_384]
    assert peer.decode(b"".join(f.payload for f in frames)) == headers


# ---------------------------------------------------------------------------------------- stream life


async def test_client_rst_stream_resets_the_stream() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1, end_stream=False)
    peer.send(frame(RST_STREAM, 0, 1, u32(ErrorCode.CANCEL)))
    assert handler.events[-1] == ("reset", 1, None)
    assert stream.closed
    assert peer.connection.streams == {}
    peer.connection.send_response(stream, STATUS_200, b"late", TRAILERS)  # nothing goes out on a reset stream
    assert peer.take() == []


async def test_data_on_a_stream_the_client_ended_gets_rst_stream_closed() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    open_stream(peer, handler, 1, end_stream=True)
    events = len(handler.events)
    peer.data(1, b"late")
    assert peer.take() == [Frame(RST_STREAM, 0, 1, u32(ErrorCode.STREAM_CLOSED))]
    assert len(handler.events) == events
    assert not peer.transport.closed


@pytest.mark.parametrize("unary", [True, False], ids=["send_response", "trailers"])
async def test_a_response_ended_before_the_client_asks_it_to_stop_and_ignores_its_late_frames(unary: bool) -> None:
    """As grpc's server transport (RFC 9113 8.1): trailers, then RST_STREAM NO_ERROR; DATA the client sent
    before it saw them is ignored, not answered with STREAM_CLOSED (which a client reads as a failed call)."""
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1, end_stream=False)
    if unary:
        peer.connection.send_response(stream, STATUS_200, b"answer", TRAILERS)
    else:
        peer.connection.send_headers(stream, TRAILERS, end_stream=True)
    sent = peer.take()
    assert sent[-1] == Frame(RST_STREAM, 0, 1, u32(ErrorCode.NO_ERROR))
    assert sent[-2].kind == HEADERS
    assert sent[-2].flags & END_STREAM
    events = len(handler.events)
    peer.data(1, b"late")
    peer.data(1, b"", end_stream=True)
    assert [f for f in peer.take() if f.kind != WINDOW_UPDATE] == []
    assert len(handler.events) == events
    peer.data(1, b"later")  # no longer remembered: an ordinary closed stream
    assert peer.take() == [Frame(RST_STREAM, 0, 1, u32(ErrorCode.STREAM_CLOSED))]


async def test_a_response_to_a_client_that_ended_its_side_needs_no_rst_stream() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1, end_stream=True)
    peer.connection.send_response(stream, STATUS_200, b"answer", TRAILERS)
    assert [f.kind for f in peer.take()] == [HEADERS, DATA, HEADERS]


async def test_client_trailers_after_the_server_finished_keep_the_connection() -> None:
    """A stream the server ended while the client still sends is half-closed (local): the client's
    trailers on it are legal (RFC 9113 5.1) and must not end the whole connection."""
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1, end_stream=False)
    peer.connection.send_headers(stream, TRAILERS, end_stream=True)
    peer.take()
    peer.headers(1, [("x-trailer", "t")], end_stream=True)
    assert [f for f in peer.take() if f.kind == GOAWAY] == []
    assert not peer.transport.closed
    peer.headers(3, REQUEST, end_stream=True)
    assert handler.events[-2:] == [("headers", 3, REQUEST), ("end", 3, None)]


async def test_data_on_an_idle_stream_is_protocol_error() -> None:
    peer = Peer(RecordingHandler())
    peer.data(1, b"x")
    assert goaway_of(peer.take()) == (0, ErrorCode.PROTOCOL_ERROR, b"DATA on idle stream 1")
    assert peer.transport.closed


@pytest.mark.parametrize(("opened", "stream_id"), [([], 2), ([5], 3)], ids=["even", "lower"])
async def test_invalid_new_stream_id_is_protocol_error(opened: list[int], stream_id: int) -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    for earlier in opened:
        peer.headers(earlier, REQUEST, end_stream=True)
        peer.connection.send_headers(handler.streams[earlier], TRAILERS, end_stream=True)
    peer.take()
    peer.headers(stream_id, REQUEST)
    last, code, debug = goaway_of(peer.take())
    assert (last, code, debug) == (
        max(opened, default=0),
        ErrorCode.PROTOCOL_ERROR,
        f"invalid stream id {stream_id}".encode(),
    )
    assert peer.transport.closed


async def test_after_goaway_new_streams_are_refused_and_the_last_stream_closes_the_connection() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1)
    peer.connection.goaway()
    assert goaway_of(peer.take()) == (1, ErrorCode.NO_ERROR, b"")
    peer.headers(3, REQUEST, end_stream=True)
    assert peer.take() == [Frame(RST_STREAM, 0, 3, u32(ErrorCode.REFUSED_STREAM))]
    assert 3 not in handler.streams
    assert not peer.transport.closed
    peer.connection.send_response(stream, STATUS_200, b"ok", TRAILERS)  # the open stream still completes
    assert data_of(peer.take(), 1) == b"ok"
    assert peer.transport.closed


async def test_client_goaway_refuses_later_streams() -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    peer.send(frame(GOAWAY, 0, 0, u32(0) + u32(ErrorCode.NO_ERROR)))
    peer.headers(1, REQUEST, end_stream=True)
    assert peer.take() == [Frame(RST_STREAM, 0, 1, u32(ErrorCode.REFUSED_STREAM))]
    assert handler.events == []


# ---------------------------------------------------------------------------------------- pings and age


async def test_ping_flood_without_calls_ends_with_enhance_your_calm() -> None:
    peer = Peer(RecordingHandler(), Http2Settings(max_ping_strikes=2, min_recv_ping_interval_without_data=300_000))
    # The first ping sets the clock, the next two are strikes 1 and 2, the 4th is strike 3 > max_ping_strikes.
    for _ in range(3):
        peer.send(frame(PING, 0, 0, b"pingpong"))
        assert peer.take() == [Frame(PING, ACK, 0, b"pingpong")]
        assert not peer.transport.closed
    peer.send(frame(PING, 0, 0, b"pingpong"))
    assert goaway_of(peer.take()) == (0, ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings")
    assert peer.transport.closed


async def test_sending_headers_resets_the_ping_strikes() -> None:
    handler = RecordingHandler()
    peer = Peer(handler, Http2Settings(max_ping_strikes=2, min_recv_ping_interval_without_data=300_000))
    stream = open_stream(peer, handler, 1, end_stream=False)
    for _ in range(3):
        peer.send(frame(PING, 0, 0, b"pingpong"))
    peer.connection.send_headers(stream, STATUS_200)
    for _ in range(3):
        peer.send(frame(PING, 0, 0, b"pingpong"))
    assert all(f.kind in (PING, HEADERS) for f in peer.take())
    peer.send(frame(PING, 0, 0, b"pingpong"))
    assert goaway_of(peer.take())[1:] == (ErrorCode.ENHANCE_YOUR_CALM, b"too_many_pings")


async def test_keepalive_pings_only_with_calls_and_closes_without_an_ack() -> None:
    handler = RecordingHandler()
    peer = Peer(handler, Http2Settings(keepalive_time=60_000, max_pings_without_data=2))
    connection = peer.connection
    connection._send_keepalive()  # no call: an idle connection is not pinged
    assert peer.take() == []
    open_stream(peer, handler, 1, end_stream=False)
    connection._send_keepalive()
    assert peer.take() == [Frame(PING, 0, 0, b"airtower")]
    peer.send(frame(PING, ACK, 0, b"airtower"))
    assert connection._ping_deadline is None
    connection._send_keepalive()
    assert peer.take() == [Frame(PING, 0, 0, b"airtower")]
    peer.send(frame(PING, ACK, 0, b"airtower"))
    connection._send_keepalive()  # max_pings_without_data reached
    assert peer.take() == []
    connection._sent_data()
    connection._send_keepalive()
    assert peer.take() == [Frame(PING, 0, 0, b"airtower")]
    connection._keepalive_expired()
    assert peer.transport.closed
    connection.connection_lost(None)
    assert handler.events[-1] == ("reset", 1, None)


@pytest.mark.parametrize("with_stream", [False, True])
async def test_max_connection_age_sends_goaway(with_stream: bool) -> None:
    handler = RecordingHandler()
    peer = Peer(handler)
    stream = open_stream(peer, handler, 1) if with_stream else None
    peer.connection._max_age_reached()
    assert goaway_of(peer.take()) == (int(with_stream), ErrorCode.NO_ERROR, b"max_age")
    assert peer.transport.closed is not with_stream
    if stream is not None:
        peer.connection.send_response(stream, STATUS_200, b"ok", TRAILERS)
        assert peer.transport.closed
