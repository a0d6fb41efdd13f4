"""The one exception hierarchy of airtower, carrying Triton's error codes.

Domain code raises these; each frontend maps ``error.code`` to its status through one
table (``frontends/http/errors.py``, later ``frontends/grpc/errors.py``). Nothing here
knows about HTTP or gRPC.

    TritonError
    ├── InvalidArgumentError        INVALID_ARG
    │   └── ModelConfigError
    ├── NotFoundError               NOT_FOUND
    │   └── ModelNotFoundError
    ├── AlreadyExistsError          ALREADY_EXISTS
    ├── UnavailableError            UNAVAILABLE
    │   ├── ModelNotReadyError
    │   ├── QueueFullError
    │   ├── QueueTimeoutError
    │   └── ServerNotReadyError
    ├── UnsupportedError            UNSUPPORTED
    ├── RequestCancelledError       CANCELLED
    ├── InternalError               INTERNAL
    │   ├── BackendExecutionError
    │   └── InstanceDiedError
    └── UnknownError                UNKNOWN
"""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """Triton's error codes (TRITONSERVER_Error_Code)."""

    UNKNOWN = "UNKNOWN"
    INTERNAL = "INTERNAL"
    NOT_FOUND = "NOT_FOUND"
    INVALID_ARG = "INVALID_ARG"
    UNAVAILABLE = "UNAVAILABLE"
    UNSUPPORTED = "UNSUPPORTED"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CANCELLED = "CANCELLED"


class TritonError(Exception):
    """Base of every error airtower raises on purpose; ``message`` is what the client sees."""

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def status_text(self) -> str:
        """``<Code>: <message>``, as Triton writes a status (a failed model version's reason,
        e.g. "Internal: ValueError: boom")."""
        return f"{_CODE_TEXT[self.code]}: {self.message}"

    @classmethod
    def from_code(cls, code: ErrorCode, message: str) -> TritonError:
        """The most general error class for ``code``, carrying ``message``."""
        return ERROR_CLASS_BY_CODE[code](message)


class InvalidArgumentError(TritonError):
    """The request (or a config) is malformed: bad shape, datatype, JSON... Client sees 400."""

    code = ErrorCode.INVALID_ARG


class ModelConfigError(InvalidArgumentError):
    """A model's configuration is invalid; the model becomes UNAVAILABLE with this reason."""


class NotFoundError(TritonError):
    """Something named by the request does not exist. Client sees 404."""

    code = ErrorCode.NOT_FOUND


class ModelNotFoundError(NotFoundError):
    """The model (or version) named by the request is unknown."""


class AlreadyExistsError(TritonError):
    """Something being created already exists. Client sees 400."""

    code = ErrorCode.ALREADY_EXISTS


class UnavailableError(TritonError):
    """The server cannot serve this now (not ready, exiting, queue full). Client sees 503."""

    code = ErrorCode.UNAVAILABLE


class ModelNotReadyError(UnavailableError):
    """The model version exists but is not READY."""


class QueueFullError(UnavailableError):
    """A scheduler queue is at ``max_queue_size``."""


class QueueTimeoutError(UnavailableError):
    """A request's queue timeout expired before it ran."""


class ServerNotReadyError(UnavailableError):
    """The server is starting or exiting."""


#: What a caller that takes one response per request says of a decoupled model ("HTTP end point ...").
DECOUPLED_UNSUPPORTED = "doesn't support models with decoupled transaction policy"


class UnsupportedError(TritonError):
    """The operation is not supported (e.g. decoupled model over HTTP). Client sees 501."""

    code = ErrorCode.UNSUPPORTED


class RequestCancelledError(TritonError):
    """The request was cancelled by its client before it completed. Client sees 400."""

    code = ErrorCode.CANCELLED


class InternalError(TritonError):
    """Something failed inside the server or a model. Client sees 500."""

    code = ErrorCode.INTERNAL


class BackendExecutionError(InternalError):
    """A backend's execute raised; every request of that execution fails with it."""


class InstanceDiedError(InternalError):
    """A model instance (thread or isolated process) died."""


class UnknownError(TritonError):
    """An error without a better code. Client sees 400."""

    code = ErrorCode.UNKNOWN


#: How Triton's ``Status::AsString`` names each code.
_CODE_TEXT = {
    ErrorCode.UNKNOWN: "Unknown",
    ErrorCode.INTERNAL: "Internal",
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.INVALID_ARG: "Invalid argument",
    ErrorCode.UNAVAILABLE: "Unavailable",
    ErrorCode.UNSUPPORTED: "Unsupported",
    ErrorCode.ALREADY_EXISTS: "Already exists",
    ErrorCode.CANCELLED: "Cancelled",
}

ERROR_CLASS_BY_CODE: dict[ErrorCode, type[TritonError]] = {
    ErrorCode.UNKNOWN: UnknownError,
    ErrorCode.INTERNAL: InternalError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.INVALID_ARG: InvalidArgumentError,
    ErrorCode.UNAVAILABLE: UnavailableError,
    ErrorCode.UNSUPPORTED: UnsupportedError,
    ErrorCode.ALREADY_EXISTS: AlreadyExistsError,
    ErrorCode.CANCELLED: RequestCancelledError,
}
