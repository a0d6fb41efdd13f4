"""TritonError → gRPC status code: the one table of the gRPC frontend.

Codes follow Triton's ``grpc_utils.cc`` (ARCHITECTURE.md 3.5): UNSUPPORTED becomes
UNIMPLEMENTED, INVALID_ARG becomes INVALID_ARGUMENT, the others keep their name.
Imports nothing from the rest of the frontend.
"""

from __future__ import annotations

import grpc  # type: ignore[import-untyped]

from airtower.errors import ErrorCode, TritonError

#: grpc++'s answer (INTERNAL) to a request message that does not parse, as tritonserver's clients see it.
UNPARSABLE_REQUEST = "Unable to parse request"

GRPC_STATUS_BY_CODE: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARG: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.CANCELLED: grpc.StatusCode.CANCELLED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorCode.UNKNOWN: grpc.StatusCode.UNKNOWN,
}


def status_of(error: TritonError) -> grpc.StatusCode:
    """The gRPC status code a client sees for ``error``."""
    return GRPC_STATUS_BY_CODE.get(error.code, grpc.StatusCode.UNKNOWN)
