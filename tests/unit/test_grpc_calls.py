"""gRPC calls (``GrpcService`` / ``GrpcCall``) over a real ``Http2Connection`` with a fake transport."""

from __future__ import annotations

import asyncio
import gzip
import urllib.parse
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest

from airtower.core.request import InferenceRequest
from airtower.errors import InvalidArgumentError, UnavailableError, UnsupportedError
from airtower.frontends.grpc.calls import GrpcCall, GrpcService, Method, _parse_timeout, response_algorithm
from tests.unit.test_grpc_http2 import DATA, END_STREAM, HEADERS, RST_STREAM, Peer, frame, u32

ECHO, STREAM, SIZE, SLOW, FAST = "/pkg.Svc/Echo", "/pkg.Svc/Stream", "/pkg.Svc/Size", "/pkg.Svc/Slow", "/pkg.Svc/Fast"
RESPONSE_HEADERS = {":status": "200", "content-type": "application/grpc"}
OK = {"grpc-status": "0"}

StartResult = tuple[asyncio.Future[Any], Callable[[asyncio.Future[Any]], bytes], InferenceRequest | None]


def identity(data: bytes) -> bytes:
    return data


def method(behaviour: Callable[..., Any], **options: Any) -> Method:
    return Method(deserialize=identity, serialize=identity, behaviour=behaviour, **options)


async def echo(request: bytes, call: GrpcCall) -> bytes:
    return b"echo:" + request


async def echo_stream(requests: AsyncIterator[bytes], call: GrpcCall) -> None:
    async for request in requests:
        call.send_message(b"echo:" + request)


async def size(request: bytes, call: GrpcCall) -> bytes:
    return b"%d %d" % (len(request), zlib.crc32(request))


async def never(request: bytes, call: GrpcCall) -> bytes:
    raise AssertionError("a method with a start runs no behaviour")


class Blocker:
    """A behaviour that waits until released, counting starts and cancellations."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = self.cancelled = 0
        self.calls: list[GrpcCall] = []

    async def wait(self, call: GrpcCall) -> None:
        self.started += 1
        self.calls.append(call)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def unary(self, request: bytes, call: GrpcCall) -> bytes:
        await self.wait(call)
        return b"done"

    async def streaming(self, requests: AsyncIterator[bytes], call: GrpcCall) -> None:
        call.send_message(b"first")
        await self.wait(call)
        call.send_message(b"second")


def message(payload: bytes, flag: int = 0) -> bytes:
    return bytes((flag,)) + len(payload).to_bytes(4, "big") + payload


def request_headers(
    path: str, *extra: tuple[str, str], content_type: str | None = "application/grpc"
) -> list[tuple[str, str]]:
    headers = [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost")]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return [*headers, ("te", "trailers"), *extra]


def connect(methods: dict[str, Method], compression_level: str = "none") -> tuple[GrpcService, Peer]:
    service = GrpcService(methods, compression_level)
    return service, Peer(service)


def send_call(
    peer: Peer, stream_id: int, path: str, messages: Iterable[bytes] = (), *extra: tuple[str, str], end: bool = True
) -> None:
    peer.headers(stream_id, request_headers(path, *extra))
    payload = b"".join(message(m) for m in messages)
    if payload or end:
        peer.data(stream_id, payload, end_stream=end)


async def settle() -> None:
    """Let the tasks the calls started run as far as they can (no I/O, no timers: deterministic)."""
    for _ in range(10):
        await asyncio.sleep(0)


@dataclass
class Reply:
    """What the server wrote on one stream."""

    kinds: list[int] = field(default_factory=list)
    blocks: list[dict[str, str]] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    @property
    def messages(self) -> list[tuple[int, bytes]]:
        out, offset = [], 0
        while offset < len(self.data):
            length = int.from_bytes(self.data[offset + 1 : offset + 5], "big")
            out.append((self.data[offset], bytes(self.data[offset + 5 : offset + 5 + length])))
            offset += 5 + length
        return out


def replies(peer: Peer) -> dict[int, Reply]:
    out: dict[int, Reply] = {}
    for f in peer.take():
        if f.stream_id == 0:
            continue
        reply = out.setdefault(f.stream_id, Reply())
        assert not reply.ended or f.kind == RST_STREAM, "a frame after END_STREAM"
        reply.kinds.append(f.kind)
        if f.kind == HEADERS:
            reply.blocks.append(dict(peer.decode(f.payload)))
        elif f.kind == DATA:
            reply.data += f.payload
        elif f.kind == RST_STREAM:
            reply.reset = int.from_bytes(f.payload, "big")
        reply.ended = reply.ended or bool(f.kind in (HEADERS, DATA) and f.flags & END_STREAM)
    return out


def trailers_only(code: int, message: str | None = None) -> list[dict[str, str]]:
    block = {**RESPONSE_HEADERS, "grpc-status": str(code)}
    if message is not None:
        block["grpc-message"] = message
    return [block]


def assert_ok(reply: Reply, *messages: bytes) -> None:
    assert reply.blocks == [RESPONSE_HEADERS, OK]
    assert reply.messages == [(0, m) for m in messages]
    assert reply.kinds == [HEADERS, *[DATA] * (len(reply.kinds) - 2), HEADERS]
    assert reply.ended


# ---------------------------------------------------------------------------------------- unary calls


async def test_unary_call_answers_headers_one_message_and_ok_trailers() -> None:
    service, peer = connect({ECHO: method(echo)})
    send_call(peer, 1, ECHO, [b"hi"])
    await settle()
    reply = replies(peer)[1]
    assert reply.kinds == [HEADERS, DATA, HEADERS]
    assert_ok(reply, b"echo:hi")
    assert reply.data == b"\x00\x00\x00\x00\x07echo:hi"
    assert service.calls == set()


async def test_finished_calls_leave_no_reference_cycle_for_the_collector() -> None:
    # A Stream <-> GrpcCall cycle per request made the collector run (and pause) every few hundred calls.
    seen: list[GrpcCall] = []

    async def recording_echo(request: bytes, call: GrpcCall) -> bytes:
        seen.append(call)
        return await echo(request, call)

    _, peer = connect({ECHO: method(recording_echo)})
    send_call(peer, 1, ECHO, [b"hi"])
    await settle()
    assert_ok(replies(peer)[1], b"echo:hi")
    (call,) = seen
    assert call.stream.closed
    assert call.stream.call is None


async def test_message_split_across_many_data_frames_is_reassembled() -> None:
    _, peer = connect({SIZE: method(size)})
    payload = bytes(i % 256 for i in range(100_000))
    wire = message(payload)
    peer.headers(1, request_headers(SIZE))
    for index in range(0, len(wire), 16_384):
        peer.data(1, wire[index : index + 16_384])
    peer.data(1, b"", end_stream=True)
    await settle()
    assert_ok(replies(peer)[1], b"%d %d" % (len(payload), zlib.crc32(payload)))


async def test_unknown_method_is_trailers_only_unimplemented() -> None:
    service, peer = connect({ECHO: method(echo)})
    peer.headers(1, request_headers("/pkg.Svc/Nope"), end_stream=True)
    reply = replies(peer)[1]
    assert reply.blocks == trailers_only(12, "Method not found: /pkg.Svc/Nope")
    assert reply.ended
    assert service.calls == set()


@pytest.mark.parametrize("content_type", ["application/json", None])
async def test_non_grpc_content_type_is_http_415(content_type: str | None) -> None:
    service, peer = connect({ECHO: method(echo)})
    peer.headers(1, request_headers(ECHO, content_type=content_type))
    peer.data(1, message(b"x"), end_stream=True)
    await settle()
    reply = replies(peer)[1]
    details = f"invalid gRPC request content-type '{content_type or ''}'"
    assert reply.blocks == [{":status": "415", "grpc-status": "2", "grpc-message": details}]
    assert reply.kinds == [HEADERS, RST_STREAM]  # the request's DATA came after the stream ended
    assert service.calls == set()


@pytest.mark.parametrize(("code", "number"), [(3, 3), (grpc.StatusCode.NOT_FOUND, 5)], ids=["int", "grpc.StatusCode"])
async def test_abort_is_trailers_only_with_a_percent_encoded_message(code: Any, number: int) -> None:
    details = "bad 100% ünï\n"

    async def aborting(request: bytes, call: GrpcCall) -> bytes:
        await call.abort(code, details)
        raise AssertionError("abort returned")

    service, peer = connect({ECHO: method(aborting)})
    send_call(peer, 1, ECHO, [b"x"])
    await settle()
    reply = replies(peer)[1]
    assert reply.blocks == trailers_only(number, "bad 100%25 %C3%BCn%C3%AF%0A")
    assert urllib.parse.unquote(reply.blocks[0]["grpc-message"]) == details
    assert service.calls == set()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("bad input"), 3),
        (UnsupportedError("bad input"), 12),
        (UnavailableError("bad input"), 14),
        (RuntimeError("bad input"), 13),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
async def test_raised_error_becomes_its_grpc_status(error: Exception, code: int) -> None:
    async def failing(request: bytes, call: GrpcCall) -> bytes:
        raise error

    service, peer = connect({ECHO: method(failing)})
    send_call(peer, 1, ECHO, [b"x"])
    await settle()
    assert replies(peer)[1].blocks == trailers_only(code, "bad input")
    assert service.calls == set()


@pytest.mark.parametrize(
    ("messages", "code", "details"),
    [
        ([], 13, "Received no request message for a unary call"),
        ([b"a", b"b"], 12, "Received more than one request message for a unary call"),
    ],
    ids=["none", "two"],
)
async def test_unary_call_needs_exactly_one_request_message(messages: list[bytes], code: int, details: str) -> None:
    service, peer = connect({ECHO: method(echo)})
    send_call(peer, 1, ECHO, messages)
    await settle()
    assert replies(peer)[1].blocks == trailers_only(code, details)
    assert service.calls == set()


async def test_oversized_message_is_resource_exhausted() -> None:
    service, peer = connect({ECHO: method(echo)})
    send_call(peer, 1, ECHO, end=False)
    peer.data(1, b"\x00\xff\xff\xff\xff")
    reply = replies(peer)[1]
    assert reply.blocks == trailers_only(8, f"Received message larger than max ({2**32 - 1} vs. {2**31 - 1})")
    assert service.calls == set()


async def test_invocation_metadata_leaves_out_pseudo_and_transport_headers() -> None:
    seen: list[Any] = []

    async def inspect(request: bytes, call: GrpcCall) -> bytes:
        seen.extend([call.invocation_metadata(), call.peer(), call.cancelled()])
        return b""

    _, peer = connect({ECHO: method(inspect)})
    extra = [
        ("grpc-timeout", "100S"),
        ("grpc-encoding", "identity"),
        ("grpc-accept-encoding", "identity,gzip"),
        ("user-agent", "grpc-test/1.0"),
        ("x-request-id", "abc"),
        ("authorization", "Bearer t"),
    ]
    send_call(peer, 1, ECHO, [b"x"], *extra)
    await settle()
    assert seen == [
        (("user-agent", "grpc-test/1.0"), ("x-request-id", "abc"), ("authorization", "Bearer t")),
        "ipv4:127.0.0.1:5555",
        False,
    ]
    assert_ok(replies(peer)[1], b"")


# ---------------------------------------------------------------------------------------- the start fast path


def fast_method(
    future: asyncio.Future[Any], error: Exception | None = None, inference: InferenceRequest | None = None
) -> Method:
    def start(request: bytes, call: GrpcCall) -> StartResult:
        if error is not None:
            raise error
        return future, lambda done: b"fast:" + request + done.result(), inference

    return method(never, start=start)


@pytest.mark.parametrize("outcome", ["result", "error", "cancelled"])
async def test_start_fast_path_answers_when_the_future_completes(outcome: str) -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    service, peer = connect({FAST: fast_method(future)})
    send_call(peer, 1, FAST, [b"in"])
    await settle()
    assert replies(peer) == {}
    assert len(service.calls) == 1
    if outcome == "result":
        future.set_result(b":out")
    elif outcome == "error":
        future.set_exception(InvalidArgumentError("bad tensor"))
    else:
        future.cancel()
    await settle()
    reply = replies(peer)[1]
    if outcome == "result":
        assert_ok(reply, b"fast:in:out")
    elif outcome == "error":
        assert reply.blocks == trailers_only(3, "bad tensor")
    else:
        assert reply.blocks == trailers_only(1, "Cancelled")
    assert service.calls == set()


async def test_start_fast_path_answers_from_the_requests_complete_hook() -> None:
    """With an inference request, the response is written when the model calls the request's
    ``on_complete`` hook (in the iteration that settles the future), not from a done-callback."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    inference = InferenceRequest("m")
    service, peer = connect({FAST: fast_method(future, inference=inference)})
    send_call(peer, 1, FAST, [b"in"])
    await settle()
    assert inference.on_complete is not None
    future.set_result(b":out")
    await settle()
    assert replies(peer) == {}  # the future alone does not answer
    inference.notify_complete(future)  # what the model does right after settling it
    assert_ok(replies(peer)[1], b"fast:in:out")
    assert service.calls == set()


async def test_start_raising_ends_the_call_with_its_status() -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    service, peer = connect({FAST: fast_method(future, InvalidArgumentError("no such input"))})
    send_call(peer, 1, FAST, [b"in"])
    assert replies(peer)[1].blocks == trailers_only(3, "no such input")
    assert service.calls == set()


async def test_client_reset_cancels_the_start_future() -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    service, peer = connect({FAST: fast_method(future)})
    send_call(peer, 1, FAST, [b"in"])
    peer.send(frame(RST_STREAM, 0, 1, u32(8)))
    assert future.cancelled()
    await settle()
    assert replies(peer) == {}
    assert service.calls == set()


async def test_client_reset_cancels_a_running_behaviour() -> None:
    blocker = Blocker()
    service, peer = connect({SLOW: method(blocker.unary)})
    send_call(peer, 1, SLOW, [b"in"])
    await settle()
    assert blocker.started == 1
    peer.send(frame(RST_STREAM, 0, 1, u32(8)))
    await settle()
    assert blocker.cancelled == 1
    assert blocker.calls[0].cancelled()
    assert replies(peer) == {}
    assert service.calls == set()


# ---------------------------------------------------------------------------------------- streaming calls


async def test_streaming_call_reassembles_messages_and_answers_in_order() -> None:
    service, peer = connect({STREAM: method(echo_stream, client_streaming=True, server_streaming=True)})
    peer.headers(1, request_headers(STREAM))
    first = message(b"first")
    for piece in (first[:3], first[3:6], first[6:]):  # the length prefix itself is split
        peer.data(1, piece)
    peer.data(1, message(b"second") + message(b"third"))  # two messages in one frame
    fourth_fifth = message(b"fourth") + message(b"fifth")
    peer.data(1, fourth_fifth[:13])  # one message and the first bytes of the next
    await settle()
    peer.data(1, fourth_fifth[13:])
    peer.data(1, b"", end_stream=True)
    await settle()
    assert_ok(replies(peer)[1], *(b"echo:" + m for m in (b"first", b"second", b"third", b"fourth", b"fifth")))
    assert service.calls == set()


async def test_streamed_messages_queued_together_leave_in_one_write() -> None:
    _, peer = connect({STREAM: method(echo_stream, client_streaming=True, server_streaming=True)})
    send_call(peer, 1, STREAM, [b"a", b"b", b"c"], end=False)
    peer.take()
    before = peer.transport.writes
    await settle()
    assert peer.transport.writes == before + 1  # headers and three messages: one write
    assert replies(peer)[1].messages == [(0, b"echo:a"), (0, b"echo:b"), (0, b"echo:c")]


async def test_streaming_error_after_a_message_ends_with_status_trailers() -> None:
    async def failing(requests: AsyncIterator[bytes], call: GrpcCall) -> None:
        async for request in requests:
            call.send_message(request)
            raise InvalidArgumentError("no more")

    service, peer = connect({STREAM: method(failing, client_streaming=True, server_streaming=True)})
    send_call(peer, 1, STREAM, [b"one"], end=False)
    await settle()
    reply = replies(peer)[1]
    assert reply.blocks == [RESPONSE_HEADERS, {"grpc-status": "3", "grpc-message": "no more"}]
    assert reply.messages == [(0, b"one")]
    assert reply.ended
    assert service.calls == set()


# ---------------------------------------------------------------------------------------- compression


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_compressed_request_message_is_decompressed(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    _, peer = connect({ECHO: method(echo)})
    peer.headers(1, request_headers(ECHO, ("grpc-encoding", encoding)))
    peer.data(1, message(compress(b"squeezed"), flag=1), end_stream=True)
    await settle()
    assert_ok(replies(peer)[1], b"echo:squeezed")


async def test_unsupported_request_compression_is_unimplemented() -> None:
    service, peer = connect({ECHO: method(echo)})
    peer.headers(1, request_headers(ECHO, ("grpc-encoding", "snappy")))
    peer.data(1, message(b"????", flag=1), end_stream=True)
    await settle()
    assert replies(peer)[1].blocks == trailers_only(12, "Compression algorithm 'snappy' is not supported")
    assert service.calls == set()


@pytest.mark.parametrize(
    ("level", "accepted", "algorithm"),
    [
        ("none", "identity,deflate,gzip", None),
        ("low", "identity,deflate,gzip", "gzip"),
        ("medium", "identity,deflate,gzip", "deflate"),
        ("high", "identity,deflate,gzip", "deflate"),
        ("low", "identity, deflate", "deflate"),
        ("high", "gzip", "gzip"),
        ("high", "identity", None),
        ("medium", "br", None),
    ],
)
def test_response_algorithm_follows_grpc_core_levels(level: str, accepted: str, algorithm: str | None) -> None:
    assert response_algorithm(level, accepted) == algorithm


@pytest.mark.parametrize(
    ("level", "accepted", "algorithm"),
    [("low", "identity,deflate,gzip", "gzip"), ("high", "identity,deflate,gzip", "deflate"), ("low", None, None)],
)
async def test_response_is_compressed_as_the_level_chooses(
    level: str, accepted: str | None, algorithm: str | None
) -> None:
    _, peer = connect({ECHO: method(echo)}, compression_level=level)
    extra = () if accepted is None else (("grpc-accept-encoding", accepted),)
    send_call(peer, 1, ECHO, [b"x" * 1000], *extra)
    await settle()
    reply = replies(peer)[1]
    assert reply.blocks[1:] == [OK]
    ((flag, payload),) = reply.messages
    if algorithm is None:
        assert reply.blocks[0] == RESPONSE_HEADERS
        assert (flag, payload) == (0, b"echo:" + b"x" * 1000)
    else:
        assert reply.blocks[0] == {**RESPONSE_HEADERS, "grpc-encoding": algorithm}
        assert flag == 1
        expected = gzip.decompress(payload) if algorithm == "gzip" else zlib.decompress(payload)
        assert expected == b"echo:" + b"x" * 1000


# ---------------------------------------------------------------------------------------- deadlines


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1m", 0.001),
        ("5S", 5.0),
        ("2H", 7200.0),
        ("10M", 600.0),
        ("250u", 250e-6),
        ("7n", 7e-9),
        ("12345678m", 12345.678),
    ],
)
def test_parse_timeout(value: str, seconds: float) -> None:
    assert _parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "m", "1", "1x", "-1m", "+1m", "1.5S", " 1m", "m1", "1 m", "\u00b2m", "\uff11m"])
def test_parse_timeout_rejects_malformed_values(value: str) -> None:
    assert _parse_timeout(value) is None


@pytest.mark.parametrize(("value", "has_deadline"), [("100S", True), ("1x", False), ("\u00b2m", False)])
async def test_grpc_timeout_sets_a_deadline_and_malformed_ones_are_ignored(value: str, has_deadline: bool) -> None:
    remaining: list[float | None] = []

    async def inspect(request: bytes, call: GrpcCall) -> bytes:
        remaining.append(call.time_remaining())
        return b""

    _, peer = connect({ECHO: method(inspect)})
    send_call(peer, 1, ECHO, [b"x"], ("grpc-timeout", value))
    await settle()
    assert_ok(replies(peer)[1], b"")
    (left,) = remaining
    if has_deadline:
        assert left is not None
        assert 0 < left <= 100
    else:
        assert left is None


async def test_deadline_exceeded_ends_the_call_and_cancels_the_behaviour() -> None:
    blocker = Blocker()
    service, peer = connect({SLOW: method(blocker.unary)})
    send_call(peer, 1, SLOW, [b"in"], ("grpc-timeout", "100S"))
    await settle()
    (call,) = service.calls
    assert call.timer is not None
    call.timer.cancel()  # the test expires the deadline itself
    call.deadline_exceeded()
    assert replies(peer)[1].blocks == trailers_only(4, "Deadline Exceeded")
    await settle()
    assert blocker.cancelled == 1
    assert call.timed_out
    assert not call.cancelled()
    assert service.calls == set()


async def test_deadline_before_the_request_ends_releases_the_call() -> None:
    service, peer = connect({ECHO: method(echo)})
    send_call(peer, 1, ECHO, [b"in"], ("grpc-timeout", "100S"), end=False)
    (call,) = service.calls
    assert call.timer is not None
    call.timer.cancel()
    call.deadline_exceeded()
    reply = replies(peer)[1]
    assert reply.blocks == trailers_only(4, "Deadline Exceeded")
    assert reply.reset == 0  # NO_ERROR: the client may stop sending
    peer.data(1, b"", end_stream=True)  # the client's END_STREAM arrives after the deadline: ignored
    await settle()
    assert 1 not in replies(peer)
    assert service.calls == set()


# ---------------------------------------------------------------------------------------- shutdown


async def test_drained_returns_once_the_calls_finish() -> None:
    blocker = Blocker()
    service, peer = connect({SLOW: method(blocker.unary)})
    await service.drained()  # no call: returns at once
    send_call(peer, 1, SLOW, [b"in"])
    send_call(peer, 3, SLOW, [b"in"])
    waiter = asyncio.get_running_loop().create_task(service.drained())
    await settle()
    assert blocker.started == 2
    assert not waiter.done()
    blocker.release.set()
    await settle()
    assert waiter.done()
    await waiter
    assert {stream_id: reply.messages for stream_id, reply in replies(peer).items()} == {
        1: [(0, b"done")],
        3: [(0, b"done")],
    }


async def test_cancel_all_ends_running_calls_with_unavailable() -> None:
    blocker = Blocker()
    service, peer = connect(
        {
            SLOW: method(blocker.unary),
            STREAM: method(blocker.streaming, client_streaming=True, server_streaming=True),
        }
    )
    send_call(peer, 1, SLOW, [b"in"])  # running its behaviour
    send_call(peer, 3, STREAM, end=False)  # has sent a message
    send_call(peer, 5, SLOW, end=False)  # still receiving its request
    await settle()
    assert blocker.started == 2
    assert replies(peer)[3].messages == [(0, b"first")]
    service.cancel_all()
    shutting_down = {"grpc-status": "14", "grpc-message": "the server is shutting down"}
    sent = replies(peer)
    assert sent[1].blocks == [{**RESPONSE_HEADERS, **shutting_down}]
    assert sent[3].blocks == [shutting_down]
    assert sent[5].blocks == [{**RESPONSE_HEADERS, **shutting_down}]
    assert all(reply.ended for reply in sent.values())
    await settle()
    assert blocker.cancelled == 2
    assert service.calls == set()
    await service.drained()
