"""The HTTP frontend's error table and error body."""

from __future__ import annotations

import json

import pytest

from airtower import errors
from airtower.errors import ErrorCode
from airtower.frontends.http.errors import HTTP_STATUS_BY_CODE, encode_error_body, status_of


def test_http_errors_table_covers_every_code() -> None:
    assert set(HTTP_STATUS_BY_CODE) == set(ErrorCode)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidArgumentError("x"), 400),
        (errors.ModelConfigError("x"), 400),
        (errors.ModelNotFoundError("x"), 404),
        (errors.AlreadyExistsError("x"), 400),
        (errors.QueueFullError("x"), 503),
        (errors.ModelNotReadyError("x"), 503),
        (errors.UnsupportedError("x"), 501),
        (errors.RequestCancelledError("x"), 400),
        (errors.BackendExecutionError("x"), 500),
        (errors.UnknownError("x"), 400),
    ],
)
def test_http_errors_status_of_follows_triton(error: errors.TritonError, status: int) -> None:
    assert status_of(error) == status


def test_http_errors_body_is_compact_json_with_unescaped_utf8() -> None:
    body = encode_error_body("unknown model: 'modèle' \"q\"")
    assert body == '{"error":"unknown model: \'modèle\' \\"q\\""}'.encode()
    assert json.loads(body) == {"error": "unknown model: 'modèle' \"q\""}
