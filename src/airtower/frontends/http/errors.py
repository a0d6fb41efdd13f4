"""TritonError → HTTP status: the one table of the HTTP frontend, and the error body.

Statuses follow Triton's ``HttpCodeFromError`` (since 24.01): INTERNAL 500, NOT_FOUND 404,
UNAVAILABLE 503, UNSUPPORTED 501, everything else 400. The body is always
``{"error": "<message>"}``. Imports nothing from the rest of the frontend.
"""

from __future__ import annotations

import json

from airtower.errors import ErrorCode, TritonError

HTTP_STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARG: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 400,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNSUPPORTED: 501,
    ErrorCode.CANCELLED: 400,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNKNOWN: 400,
}


def status_of(error: TritonError) -> int:
    """The HTTP status a client sees for ``error``."""
    return HTTP_STATUS_BY_CODE.get(error.code, 400)


def encode_error_body(message: str) -> bytes:
    """``{"error":"<message>"}`` exactly as Triton writes it (compact, UTF-8 unescaped)."""
    return json.dumps({"error": message}, ensure_ascii=False, separators=(",", ":")).encode()
