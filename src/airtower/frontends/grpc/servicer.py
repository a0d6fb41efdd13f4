"""One method per RPC of ``inference.GRPCInferenceService`` (and ``grpc.health.v1.Health/Check``).

Each method takes its parsed request and the call's context (``calls.GrpcCall``, shaped like
grpc.aio's servicer context), calls the ``InferenceServer`` and encodes the answer; a ``TritonError``
aborts the RPC with the status from ``errors.py``. ModelInfer is ``start_infer``: no task per call.
``ModelStreamInfer`` keeps several requests in flight: a reader task starts each request as it
arrives and responses are written as they complete; a failing request sends its error in ``error_message`` and the
stream stays open. A client that cancels an RPC cancels the server's future of its request,
which drops the request if it has not started executing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from tritonclient.grpc import service_pb2, service_pb2_grpc

from airtower.core.request import RequestTraceContext
from airtower.errors import InternalError, TritonError, UnsupportedError
from airtower.frontends.grpc.calls import Method, Started
from airtower.frontends.grpc.codec import (
    InferRequestDecoder,
    InferResponseEncoder,
    decode_infer_request,
    empty_final_response,
    encode_model_metadata,
    encode_model_statistics,
    encode_repository_index,
    parse_infer_request,
    stream_error_response,
)
from airtower.frontends.grpc.errors import status_of
from airtower.frontends.grpc.extension_messages import (
    load_parameters,
    log_setting_changes,
    trace_setting_changes,
    unload_dependents,
)
from airtower.server import REPOSITORY_NAME_UNSUPPORTED

if TYPE_CHECKING:
    from airtower.core.request import InferenceRequest
    from airtower.core.response import InferenceResponse
    from airtower.server import InferenceServer

logger = logging.getLogger(__name__)

_Context = Any  # calls.GrpcCall (kept loose: the servicers only use abort and invocation_metadata)


def _as_triton_error(exc: BaseException, where: str) -> TritonError:
    """``exc`` as the error the client sees; unexpected ones are logged (request boundary)."""
    if isinstance(exc, TritonError):
        return exc
    logger.error("unexpected error in %s", where, exc_info=exc)
    return InternalError(str(exc) or type(exc).__name__)


async def _abort(context: _Context, error: TritonError) -> NoReturn:
    await context.abort(status_of(error), error.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """``inference.GRPCInferenceService`` over one ``InferenceServer``."""

    def __init__(self, server: InferenceServer) -> None:
        self.server = server
        self._encoder = InferResponseEncoder(server.shared_memory)
        self._decoder = InferRequestDecoder(server.shared_memory)

    # ---------------------------------------------------------------- health and metadata

    async def ServerLive(self, request: Any, context: _Context) -> Any:
        return service_pb2.ServerLiveResponse(live=self.server.is_live())

    async def ServerReady(self, request: Any, context: _Context) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.server.is_ready())

    async def ModelReady(self, request: Any, context: _Context) -> Any:
        try:
            return service_pb2.ModelReadyResponse(ready=self.server.is_model_ready(request.name, request.version))
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "ModelReady")  # a version string that is not a number
        return await _abort(context, error)

    async def ServerMetadata(self, request: Any, context: _Context) -> Any:
        metadata = self.server.server_metadata()
        return service_pb2.ServerMetadataResponse(
            name=metadata["name"], version=metadata["version"], extensions=metadata["extensions"]
        )

    async def ModelMetadata(self, request: Any, context: _Context) -> Any:
        try:
            return encode_model_metadata(self.server.model_metadata(request.name, request.version))
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "ModelMetadata")
        return await _abort(context, error)

    async def ModelConfig(self, request: Any, context: _Context) -> Any:
        try:
            return service_pb2.ModelConfigResponse(config=self.server.model_config(request.name, request.version))
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "ModelConfig")
        return await _abort(context, error)

    async def ModelStatistics(self, request: Any, context: _Context) -> Any:
        try:
            return encode_model_statistics(self.server.model_statistics(request.name, request.version))
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "ModelStatistics")
        return await _abort(context, error)

    # ---------------------------------------------------------------- inference

    def _decode(self, message: Any, unary: bool = False) -> InferenceRequest:
        """``message`` decoded; ``unary``: for ModelInfer, which refuses a decoupled model first."""
        if isinstance(message, bytes):  # the native transport's ModelInfer: serialized
            try:
                return self._decoder.decode(message)
            except TritonError:
                message = parse_infer_request(message)
        try:
            return decode_infer_request(message, shared_memory=self.server.shared_memory)
        except TritonError:
            # Like the HTTP frontend, an unknown or unready model (the look-up raises), or a decoupled
            # one over ModelInfer, is reported before a bad input; the config words the error of an
            # unknown input datatype.
            caller = "ModelInfer RPC" if unary else None
            config = self.server.infer_target_config(message.model_name, message.model_version, caller)
            return decode_infer_request(message, config, self.server.shared_memory)

    def _start(
        self, message: Any, trace: RequestTraceContext | None = None
    ) -> tuple[InferenceRequest, asyncio.Future[InferenceResponse]]:
        request = self._decode(message, unary=True)
        request.trace_context = trace
        return request, self.server.infer(request, "ModelInfer RPC")

    def start_infer(self, message: Any, context: _Context) -> Started:
        """ModelInfer: the request started, up to the model's future, how the finished future
        becomes the serialized ``ModelInferResponse`` (raising the request's error), and the
        request. The transport writes the response from the request's ``on_complete`` hook: no
        task per RPC.

        Raises:
            Exception: the request could not start (unknown model, bad input...).
        """
        trace = _trace_context(context) if self.server.tracing else None
        request, future = self._start(message, trace)

        def complete(done: asyncio.Future[InferenceResponse]) -> bytes:
            if trace is None:
                return self._encoder.encode(done.result(), request)
            try:
                response = done.result()
            except asyncio.CancelledError:
                self.server.trace_finished(trace, None)
                raise
            except BaseException:
                now = time.monotonic_ns()
                self.server.trace_finished(trace, (now, now, now))
                raise
            completed = time.monotonic_ns()
            encoded = self._encoder.encode(response, request)
            self.server.trace_finished(trace, (completed, completed, time.monotonic_ns()))
            return encoded

        return future, complete, request

    async def ModelStreamInfer(self, requests: AsyncIterator[Any], context: _Context) -> None:
        """The stream's messages are written as they come (``context.send_message``, in the loop
        iteration that delivers them), not yielded: no task hop per response. Returns when the
        client has ended its requests and every request's last response is out; an error under
        ``triton_grpc_error`` ends the stream with its status instead (nothing is written after it)."""
        ended: asyncio.Queue[TritonError | None] = asyncio.Queue()
        in_flight: set[asyncio.Future[InferenceResponse]] = set()
        reading = True
        aborting = False
        encoder = self._encoder
        # Header "triton_grpc_error: true": the first error ends the stream with its gRPC status
        # instead of travelling in a response's error_message (Triton's opt-in).
        grpc_errors = any(
            key == "triton_grpc_error" and str(value).lower() == "true"
            for key, value in (context.invocation_metadata() or ())
        )

        def send(data: bytes) -> None:
            if not aborting and not context.stream.closed:
                context.send_message(data)

        def send_error(error: TritonError, request_id: str, model_name: str = "") -> None:
            nonlocal aborting
            if grpc_errors:
                if not aborting:
                    aborting = True
                    ended.put_nowait(error)
            else:
                send(stream_error_response(error.message, request_id, model_name).SerializeToString())

        def on_response(
            request: InferenceRequest, message_id: str, item: InferenceResponse | TritonError | None, final: bool
        ) -> None:
            """A response of ``request`` (every model answers through here, decoupled or not);
            ``message_id``: the id as the client sent it (``request.id`` ends at a NUL)."""
            if isinstance(item, TritonError):
                send_error(item, request.id, request.model_name)
            elif item is not None:
                try:
                    data = encoder.encode_stream(item, request, final)
                except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a response
                    send_error(_as_triton_error(exc, "ModelStreamInfer"), request.id)
                    return
                send(data)
            elif request.enable_empty_final_response:
                # As Triton: the version the request named, none when it named none.
                send(empty_final_response(request, request.model_version, message_id).SerializeToString())

        def finished(future: asyncio.Future[InferenceResponse]) -> None:
            in_flight.discard(future)
            if not reading and not in_flight:
                ended.put_nowait(None)

        async def read() -> None:
            nonlocal reading
            try:
                async for message in requests:
                    trace = _trace_context(context) if self.server.tracing else None
                    try:
                        request = self._decode(message)
                        request.trace_context = trace
                        future = self.server.infer_stream(request, functools.partial(on_response, request, message.id))
                    except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a response
                        send_error(_as_triton_error(exc, "ModelStreamInfer"), message.id)
                        continue
                    in_flight.add(future)
                    future.add_done_callback(finished)
                    if trace is not None:
                        future.add_done_callback(functools.partial(self._stream_traced, trace))
            finally:
                reading = False
                if not in_flight:
                    ended.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            error = await ended.get()
            if error is not None:
                await _abort(context, error)
            await reader
        finally:
            reader.cancel()
            for future in list(in_flight):
                future.cancel()

    def _stream_traced(self, trace: RequestTraceContext, future: asyncio.Future[InferenceResponse]) -> None:
        """A traced request of a stream is done: its last response is queued for the stream."""
        if future.cancelled():
            self.server.trace_finished(trace, None)
            return
        now = time.monotonic_ns()
        self.server.trace_finished(trace, (now, now, now))

    # ---------------------------------------------------------------- model repository extension

    async def RepositoryIndex(self, request: Any, context: _Context) -> Any:
        try:
            if request.repository_name:
                raise UnsupportedError(REPOSITORY_NAME_UNSUPPORTED)
            return encode_repository_index(self.server.repository_index(request.ready))
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "RepositoryIndex")
        return await _abort(context, error)

    async def RepositoryModelLoad(self, request: Any, context: _Context) -> Any:
        try:
            config, files = load_parameters(request)
            await self.server.load_model(request.model_name, config, files, request.repository_name)
            return service_pb2.RepositoryModelLoadResponse()
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "RepositoryModelLoad")
        return await _abort(context, error)

    async def RepositoryModelUnload(self, request: Any, context: _Context) -> Any:
        try:
            dependents = unload_dependents(request)
            await self.server.unload_model(request.model_name, dependents, request.repository_name)
            return service_pb2.RepositoryModelUnloadResponse()
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, "RepositoryModelUnload")
        return await _abort(context, error)

    # ---------------------------------------------------------------- shared-memory extensions

    async def SystemSharedMemoryStatus(self, request: Any, context: _Context) -> Any:
        return await self._shared_memory(context, "SystemSharedMemoryStatus", "system", "status", request)

    async def SystemSharedMemoryRegister(self, request: Any, context: _Context) -> Any:
        return await self._shared_memory(context, "SystemSharedMemoryRegister", "system", "register", request)

    async def SystemSharedMemoryUnregister(self, request: Any, context: _Context) -> Any:
        return await self._shared_memory(context, "SystemSharedMemoryUnregister", "system", "unregister", request)

    async def CudaSharedMemoryStatus(self, request: Any, context: _Context) -> Any:
        return await self._shared_memory(context, "CudaSharedMemoryStatus", "cuda", "status", request)

    async def CudaSharedMemoryRegister(self, request: Any, context: _Context) -> Any:
        return await self._shared_memory(context, "CudaSharedMemoryRegister", "cuda", "register", request)

    async def CudaSharedMemoryUnregister(self, request: Any, context: _Context) -> Any:
        return await self._shared_memory(context, "CudaSharedMemoryUnregister", "cuda", "unregister", request)

    async def _shared_memory(self, context: _Context, rpc: str, kind: str, action: str, request: Any) -> Any:
        """The shared-memory extensions, answered as over HTTP (CUDA: no region can be registered)."""
        name = request.name
        try:
            if action == "status":
                return self._shared_memory_status(kind, name)
            if action == "unregister":
                self.server.shared_memory_unregister(kind, name)
                return (
                    service_pb2.SystemSharedMemoryUnregisterResponse()
                    if kind == "system"
                    else service_pb2.CudaSharedMemoryUnregisterResponse()
                )
            if kind == "system":
                self.server.shared_memory_register(kind, name, request.key, request.offset, request.byte_size)
                return service_pb2.SystemSharedMemoryRegisterResponse()
            self.server.shared_memory_register(kind, name)
            return service_pb2.CudaSharedMemoryRegisterResponse()
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            error = _as_triton_error(exc, rpc)
        return await _abort(context, error)

    def _shared_memory_status(self, kind: str, name: str) -> Any:
        regions = self.server.shared_memory_status(kind, name)
        if kind == "system":
            response = service_pb2.SystemSharedMemoryStatusResponse()
            for region in regions:
                status = response.regions[str(region["name"])]
                status.name, status.key = str(region["name"]), str(region["key"])
                status.offset, status.byte_size = int(str(region["offset"])), int(str(region["byte_size"]))
            return response
        return service_pb2.CudaSharedMemoryStatusResponse()

    async def TraceSetting(self, request: Any, context: _Context) -> Any:
        """The trace extension: settings global or per model (``model_name``), read or updated."""
        try:
            settings = self.server.trace_settings(request.model_name, trace_setting_changes(request))
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            await _abort(context, _as_triton_error(exc, "TraceSetting"))
        response = service_pb2.TraceSettingResponse()
        for key, value in settings.items():
            response.settings[key].value.extend(value if isinstance(value, list) else [str(value)])
        return response

    async def LogSettings(self, request: Any, context: _Context) -> Any:
        """The logging extension: an empty request reads the settings, others update them."""
        try:
            changes, refused = log_setting_changes(request)
            if changes or refused is not None:
                settings = self.server.update_log_settings(changes, refused)
            else:
                settings = self.server.log_settings()
        except Exception as exc:  # noqa: BLE001 - request boundary: every error becomes a status
            await _abort(context, _as_triton_error(exc, "LogSettings"))
        response = service_pb2.LogSettingsResponse()
        for key, value in settings.items():
            entry = response.settings[key]
            if isinstance(value, bool):
                entry.bool_param = value
            elif isinstance(value, int):
                entry.uint32_param = value
            else:
                entry.string_param = str(value)
        return response


def _serialize(message: Any) -> bytes:
    """Response serializer that also passes already-serialized bytes through (ModelInfer's)."""
    if isinstance(message, bytes):
        return message
    data: bytes = message.SerializeToString()
    return data


#: Full name of Triton's inference service.
INFERENCE_SERVICE = "inference.GRPCInferenceService"


def _unparsed(data: bytes) -> bytes:
    return data


def native_methods(servicer: InferenceServicer, health: HealthServicer) -> dict[str, Method]:
    """The methods of both services for the native transport (``calls.py``), by ``:path``."""
    methods: dict[str, Method] = {}
    service = service_pb2.DESCRIPTOR.services_by_name[INFERENCE_SERVICE.rsplit(".", 1)[1]]
    for method in service.methods:
        request_class = message_factory.GetMessageClass(method.input_type)
        infer = method.name == "ModelInfer"  # decoded from its bytes, with InferRequestDecoder's cache
        methods[f"/{INFERENCE_SERVICE}/{method.name}"] = Method(
            deserialize=_unparsed if infer else request_class.FromString,
            serialize=_serialize,
            behaviour=getattr(servicer, method.name),
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            start=servicer.start_infer if infer else None,  # ModelInfer's behaviour is never called
        )
    methods["/grpc.health.v1.Health/Check"] = Method(
        deserialize=health_pb2.HealthCheckRequest.FromString, serialize=_serialize, behaviour=health.Check
    )
    return methods


class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """``grpc.health.v1.Health``: SERVING iff the server is ready (Triton's meaning), whatever the service name."""

    def __init__(self, server: InferenceServer) -> None:
        self.server = server

    async def Check(self, request: Any, context: _Context) -> Any:
        serving = self.server.is_ready()
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)


def _trace_context(context: _Context) -> RequestTraceContext:
    """The W3C trace context headers of an RPC's metadata, for its trace (received now)."""
    now = time.monotonic_ns()
    headers = {
        key: value
        for key, value in (context.invocation_metadata() or ())
        if key in ("traceparent", "tracestate") and isinstance(value, str)
    }
    return RequestTraceContext("GRPC", headers, (now, now))
