"""One small function per HTTP route: parse → ``InferenceServer`` call → render.

Endpoints receive an already-routed ``HttpRequest`` (path parameters are URL-decoded by the
router in ``app.py``) and return an ``HttpResponse``; they raise ``TritonError`` for the app to
render through ``errors.py``. Synchronous routes stay synchronous so that health checks never
pay for a task; the repository load/unload are coroutines, ``infer`` answers with a ``Deferred``
and the generate extension with a ``Streamed`` (a chunked body written as responses come).
"""

from __future__ import annotations

import asyncio
import functools
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airtower.core.model_config import config_to_json
from airtower.core.request import RequestTraceContext
from airtower.errors import InternalError, InvalidArgumentError, TritonError
from airtower.frontends.http.codec import (
    InferRequestDecoder,
    InferResponseEncoder,
    decode_raw_request,
    encode_json,
    parse_json_body,
)
from airtower.frontends.http.errors import encode_error_body
from airtower.frontends.http.extension_bodies import (
    index_ready,
    load_parameters,
    log_setting_changes,
    shared_memory_region,
    trace_setting_changes,
    unload_dependents,
)
from airtower.frontends.http.generate import GenerateReply, decode_generate_request, input_layouts

if TYPE_CHECKING:
    from airtower.core.request import InferenceRequest
    from airtower.core.response import InferenceResponse
    from airtower.server import InferenceServer

JSON = b"application/json"
TEXT = b"text/plain"
OCTET_STREAM = b"application/octet-stream"
EVENT_STREAM = b"text/event-stream; charset=utf-8"
_EMPTY = memoryview(b"")


@dataclass(slots=True, init=False)
class HttpRequest:
    """One parsed HTTP request. Header names are lower-case bytes."""

    method: bytes
    path: str
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool
    #: Set when the request was rejected while being read (too large, unparsable): sent as is.
    rejection: HttpResponse | None
    #: When its first byte was parsed (steady clock, ns): the trace's ``HTTP_RECV_START``.
    received_ns: int

    # The per-request classes write __init__ out so that mypyc compiles it (core.request).
    def __init__(
        self,
        method: bytes,
        path: str,
        headers: dict[bytes, bytes],
        body: bytes,
        keep_alive: bool = True,
        rejection: HttpResponse | None = None,
        received_ns: int = 0,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.rejection = rejection
        self.received_ns = received_ns


@dataclass(slots=True, init=False)
class HttpResponse:
    """A response before encoding; ``buffers`` follow ``body`` on the wire (binary outputs)."""

    status: int
    body: bytes
    content_type: bytes
    #: Extra pre-encoded header lines, each ending in CRLF.
    headers: bytes
    buffers: list[bytes | memoryview]

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes = JSON,
        headers: bytes = b"",
        buffers: list[bytes | memoryview] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.buffers = [] if buffers is None else buffers


@dataclass(slots=True, init=False)
class Deferred:
    """An inference's response, which comes later: when ``future`` (``request``'s) resolves,
    ``render(result)`` builds it.

    The connection waits without a task per request: it sets the request's ``on_complete`` hook,
    which the model calls in the loop iteration that settles the future (one iteration sooner
    than a done-callback). It cancels the future when its client disconnects.
    """

    future: asyncio.Future[Any]
    render: Callable[[Any], HttpResponse]
    request: InferenceRequest
    #: For a traced request: called once the response was written, with the times (steady clock,
    #: ns) it was complete and its writing started and ended, or None when it was not written.
    finished: Callable[[tuple[int, int, int] | None], None] | None

    def __init__(
        self,
        future: asyncio.Future[Any],
        render: Callable[[Any], HttpResponse],
        request: InferenceRequest,
        finished: Callable[[tuple[int, int, int] | None], None] | None = None,
    ) -> None:
        self.future = future
        self.render = render
        self.request = request
        self.finished = finished


@dataclass(slots=True, eq=False)
class Streamed:
    """A response whose body is written in chunks as it is produced (``Transfer-Encoding: chunked``).

    The producer calls ``push``: the head goes out once ``status`` is set, then each chunk, and
    ``ended`` writes the last (empty) chunk. The connection sets ``notify`` to write what is
    pending (it may already hold everything when the connection attaches) and cancels ``future``
    when its client disconnects.
    """

    content_type: bytes
    status: int = 0
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False
    future: asyncio.Future[Any] | None = None
    notify: Callable[[], None] | None = None

    def push(self, status: int, chunks: list[bytes], end: bool) -> None:
        if not self.status:
            self.status = status
        if chunks:
            self.chunks.extend(chunks)
        if end:
            self.ended = True
        if self.notify is not None:
            self.notify()


def error_response(status: int, message: str, content_type: bytes = JSON, headers: bytes = b"") -> HttpResponse:
    return HttpResponse(status, encode_error_body(message), content_type, headers)


OK_EMPTY = HttpResponse(200, b"", TEXT)
BAD_REQUEST_EMPTY = HttpResponse(400, b"", TEXT)
MODEL_NOT_READY = error_response(400, "Model version not ready", TEXT)
NOT_FOUND = error_response(404, "Not Found", TEXT)
METHOD_NOT_ALLOWED = error_response(405, "Method Not Allowed", TEXT)
UNSUPPORTED_COMPRESSION = error_response(
    501, "Unsupported compression type", TEXT, b"Accept-Encoding: gzip, deflate\r\n"
)
#: Triton's generate handler sets a JSON content type before checking the method.
GENERATE_METHOD_NOT_ALLOWED = error_response(405, "Method Not Allowed")
_LOADED = HttpResponse(200, b"", JSON)


def too_large_message(size: int, limit: int) -> str:
    return (
        f"Request JSON size of {size} bytes exceeds the maximum allowed value of {limit} bytes. "
        "Use --http-max-input-size to increase the limit."
    )


class Endpoints:
    """The route handlers, bound to one ``InferenceServer``."""

    def __init__(self, server: InferenceServer, max_input_size: int) -> None:
        self.server = server
        self.max_input_size = max_input_size
        self._decoder = InferRequestDecoder(shared_memory=server.shared_memory)
        self._encoder = InferResponseEncoder(shared_memory=server.shared_memory)

    # ---------------------------------------------------------------- KServe v2 health / metadata

    def health_live(self, request: HttpRequest) -> HttpResponse:
        """GET /v2/health/live (KServe v2 health)."""
        return OK_EMPTY if self.server.is_live() else BAD_REQUEST_EMPTY

    def health_ready(self, request: HttpRequest) -> HttpResponse:
        """GET /v2/health/ready (KServe v2 health)."""
        return OK_EMPTY if self.server.is_ready() else BAD_REQUEST_EMPTY

    def server_metadata(self, request: HttpRequest) -> HttpResponse:
        """GET /v2 (KServe v2 server metadata)."""
        return HttpResponse(200, encode_json(self.server.server_metadata()))

    def model_metadata(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        """GET /v2/models/{m}[/versions/{v}] (KServe v2 model metadata)."""
        return HttpResponse(200, encode_json(self.server.model_metadata(name, version)))

    def model_ready(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        """GET /v2/models/{m}[/versions/{v}]/ready: 200, or 400 for unknown and unready models alike."""
        try:
            ready = self.server.is_model_ready(name, version)
        except InvalidArgumentError:
            raise  # a version Triton cannot read: its error
        except TritonError:
            ready = False
        return OK_EMPTY if ready else MODEL_NOT_READY

    def model_config(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        """GET /v2/models/{m}[/versions/{v}]/config (Triton model configuration extension)."""
        return HttpResponse(200, encode_json(config_to_json(self.server.model_config(name, version))))

    def model_statistics(self, request: HttpRequest, name: str, version: str) -> HttpResponse:
        """GET /v2/models[/{m}[/versions/{v}]]/stats (Triton statistics extension)."""
        return HttpResponse(200, encode_json(self.server.model_statistics(name, version)))

    # ---------------------------------------------------------------- inference

    def infer(self, request: HttpRequest, name: str, version: str) -> HttpResponse | Deferred:
        """POST /v2/models/{m}[/versions/{v}]/infer (KServe v2 + binary tensor, classification,
        parameters, sequence and schedule-policy extensions)."""
        body = self._decompressed(request)
        if isinstance(body, HttpResponse):
            return body
        try:
            inference_request, binary_data_output = self._decode(request.headers, body, name, version)
        except TritonError:
            # Like Triton, an unknown or unready model, or a decoupled one, is reported before a
            # malformed body (the look-up raises); only failed requests pay for this second look-up.
            self.server.infer_target_config(name, version, "HTTP end point")
            raise
        accept = request.headers.get(b"accept-encoding")
        trace = None
        if self.server.tracing:
            trace = RequestTraceContext(
                "HTTP", _trace_headers(request.headers), (request.received_ns, time.monotonic_ns())
            )
            inference_request.trace_context = trace

        def render(inference_response: InferenceResponse) -> HttpResponse:
            header, buffers = self._encoder.encode(inference_response, inference_request, binary_data_output)
            if buffers:
                response = HttpResponse(
                    200, header, OCTET_STREAM, b"Inference-Header-Content-Length: %d\r\n" % len(header), buffers
                )
            else:
                response = HttpResponse(200, header)
            if accept is not None:
                _compress(response, accept)
            return response

        deferred = Deferred(self.server.infer(inference_request, "HTTP end point"), render, inference_request)
        if trace is not None:
            deferred.finished = functools.partial(self.server.trace_finished, trace)
        return deferred

    # ---------------------------------------------------------------- generate extension

    def generate(self, request: HttpRequest, name: str, version: str) -> Streamed:
        """POST /v2/models/{m}[/versions/{v}]/generate: one JSON object, for a model that sends
        exactly one response (decoupled models included)."""
        return self._generate(request, name, version, streaming=False)

    def generate_stream(self, request: HttpRequest, name: str, version: str) -> Streamed:
        """POST /v2/models/{m}[/versions/{v}]/generate_stream: a server-sent event per response."""
        return self._generate(request, name, version, streaming=True)

    def _generate(self, request: HttpRequest, name: str, version: str, streaming: bool) -> Streamed:
        # Triton's order: the model's metadata (unknown model: 404), the encoding, then the body.
        layouts = input_layouts(self.server.model_metadata(name, version))
        encoding = request.headers.get(b"content-encoding")
        if encoding is not None and encoding.strip().lower() != b"identity":
            raise InvalidArgumentError("Unsupported content-encoding, only 'identity' is supported.")
        inference_request = decode_generate_request(name, version, parse_json_body(request.body), layouts)
        reply = GenerateReply(streaming)
        stream = Streamed(EVENT_STREAM if streaming else JSON)

        def on_response(item: InferenceResponse | TritonError | None, final: bool) -> None:
            stream.push(*reply.on_response(item, final))

        def on_done(future: asyncio.Future[InferenceResponse]) -> None:
            # Every model ends through ``on_response``; this catches requests dropped without a
            # response (queue timeouts) and cancellations, so that the reply always ends.
            if reply.ended:
                return
            if future.cancelled():
                stream.push(reply.status or 200, [], True)
                return
            error = future.exception()
            if error is None:
                on_response(None, True)
            else:
                on_response(error if isinstance(error, TritonError) else InternalError(str(error)), True)

        trace = None
        if self.server.tracing:
            trace = RequestTraceContext(
                "HTTP", _trace_headers(request.headers), (request.received_ns, time.monotonic_ns())
            )
            inference_request.trace_context = trace
        stream.future = self.server.infer_stream(inference_request, on_response)
        stream.future.add_done_callback(on_done)
        if trace is not None:
            stream.future.add_done_callback(functools.partial(self._generate_traced, trace))
        return stream

    def _generate_traced(self, trace: RequestTraceContext, future: asyncio.Future[InferenceResponse]) -> None:
        """A traced generate request is done: its last chunk is queued for the connection."""
        now = time.monotonic_ns()
        self.server.trace_finished(trace, None if future.cancelled() else (now, now, now))

    def _decode(
        self, headers: dict[bytes, bytes], body: bytes, name: str, version: str
    ) -> tuple[InferenceRequest, bool]:
        """The request and its ``binary_data_output`` flag, from a JSON, binary or raw binary body."""
        header_length = headers.get(b"inference-header-content-length")
        if header_length is None and body:
            return self._decoder.decode(name, version, body, _EMPTY)
        length = 0 if header_length is None else _parse_int(header_length)
        if length == 0:  # as in Triton, an empty body is a raw binary request too
            config = self.server.model_config(name, version)
            return decode_raw_request(name, version, body, config), True
        if 0 < length <= len(body):
            view = memoryview(body)
            return self._decoder.decode(name, version, view[:length].tobytes(), view[length:])
        raise InvalidArgumentError(f"inference header size should be in range (0, {len(body)}), got: {length}")

    def _decompressed(self, request: HttpRequest) -> bytes | HttpResponse:
        encoding = request.headers.get(b"content-encoding")
        if encoding is None:
            return request.body
        encoding = encoding.strip().lower()
        if encoding == b"gzip":
            wbits = 16 + zlib.MAX_WBITS
        elif encoding == b"deflate":
            wbits = zlib.MAX_WBITS
        elif encoding in (b"identity", b""):
            return request.body
        else:
            return UNSUPPORTED_COMPRESSION
        decompressor = zlib.decompressobj(wbits)
        try:
            body = decompressor.decompress(request.body, self.max_input_size + 1)
        except zlib.error as exc:
            raise InvalidArgumentError(f"failed to decompress the request body: {exc}") from exc
        if len(body) > self.max_input_size or decompressor.unconsumed_tail:
            raise InvalidArgumentError(too_large_message(len(body), self.max_input_size))
        return body

    # ---------------------------------------------------------------- shared-memory extensions

    def shared_memory_status(self, request: HttpRequest, kind: str, name: str) -> HttpResponse:
        """GET /v2/{system,cuda}sharedmemory[/region/{r}]/status."""
        return HttpResponse(200, encode_json(self.server.shared_memory_status(kind, name)))

    def shared_memory_unregister(self, request: HttpRequest, kind: str, name: str) -> HttpResponse:
        """POST /v2/{system,cuda}sharedmemory[/region/{r}]/unregister."""
        self.server.shared_memory_unregister(kind, name)
        return _LOADED

    def shared_memory_register(self, request: HttpRequest, kind: str, name: str) -> HttpResponse:
        """POST /v2/{system,cuda}sharedmemory/region/{r}/register: ``{"key", "offset", "byte_size"}``."""
        if kind != "system":
            self.server.shared_memory_register(kind, name)
            return _LOADED
        key, offset, byte_size = shared_memory_region(request.body)
        self.server.shared_memory_register(kind, name, key, offset, byte_size)
        return _LOADED

    # ---------------------------------------------------------------- trace extension

    def trace_settings(self, request: HttpRequest, name: str) -> HttpResponse:
        """GET/POST /v2/trace/setting and /v2/models/{m}/trace/setting."""
        changes = trace_setting_changes(request.body) if request.method == b"POST" else None
        return HttpResponse(200, encode_json(self.server.trace_settings(name, changes)))

    # ---------------------------------------------------------------- logging extension

    def log_settings(self, request: HttpRequest) -> HttpResponse:
        """GET /v2/logging."""
        return HttpResponse(200, encode_json(self.server.log_settings()))

    def update_log_settings(self, request: HttpRequest) -> HttpResponse:
        """POST /v2/logging with some of the settings; answers all of them."""
        changes, refused = log_setting_changes(request.body)
        return HttpResponse(200, encode_json(self.server.update_log_settings(changes, refused)))

    # ---------------------------------------------------------------- model repository extension

    def repository_index(self, request: HttpRequest, repository: str) -> HttpResponse:
        """POST /v2/repository[/{repo}]/index; the body may be empty or ``{"ready": bool}``. As in
        Triton, a repository name here is ignored."""
        return HttpResponse(200, encode_json(self.server.repository_index(index_ready(request.body))))

    async def repository_load(self, request: HttpRequest, repository: str, name: str) -> HttpResponse:
        """POST /v2/repository[/{repo}]/models/{m}/load with optional ``config`` and ``file:`` parameters."""
        config, files = load_parameters(request.body)
        await self.server.load_model(name, config, files, repository)
        return _LOADED

    async def repository_unload(self, request: HttpRequest, repository: str, name: str) -> HttpResponse:
        """POST /v2/repository[/{repo}]/models/{m}/unload with optional ``unload_dependents``."""
        await self.server.unload_model(name, unload_dependents(request.body), repository)
        return _LOADED


def _parse_int(value: bytes) -> int:
    """Leading optional sign and digits, like C's ``atoi`` (Triton reads the header that way)."""
    if value.isdigit():
        return int(value)
    text = value.strip()
    end = 1 if text[:1] in (b"-", b"+") else 0
    while end < len(text) and 48 <= text[end] <= 57:
        end += 1
    try:
        return int(text[:end])
    except ValueError:
        return 0


def _accepted_encoding(accept: bytes) -> bytes | None:
    """gzip or deflate, whichever ``Accept-Encoding`` prefers (q > 0; the first on ties)."""
    best: bytes | None = None
    best_q = 0.0
    for part in accept.lower().split(b","):
        coding, _, params = part.partition(b";")
        coding = coding.strip()
        if coding not in (b"gzip", b"deflate"):
            continue
        q = 1.0
        params = params.strip()
        if params.startswith(b"q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > best_q:
            best, best_q = coding, q
    return best


def _compress(response: HttpResponse, accept: bytes) -> None:
    coding = _accepted_encoding(accept)
    if coding is None:
        return
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS if coding == b"gzip" else zlib.MAX_WBITS)
    parts = [compressor.compress(response.body)]
    parts.extend(compressor.compress(buffer) for buffer in response.buffers)
    parts.append(compressor.flush())
    response.body = b"".join(parts)
    response.buffers = []
    response.headers += b"Content-Encoding: " + coding + b"\r\n"


def _trace_headers(headers: dict[bytes, bytes]) -> dict[str, str]:
    """The W3C trace context headers of a request (OpenTelemetry propagation)."""
    return {
        name.decode(): value.decode("latin-1")
        for name in (b"traceparent", b"tracestate")
        if (value := headers.get(name)) is not None
    }
