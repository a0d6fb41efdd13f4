"""triton_json: bodies read as Triton's RapidJSON reads them; every message and offset below is what
the reference Triton 2.51 answered for the same bytes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from airtower.errors import InternalError
from airtower.frontends.http import triton_json
from airtower.frontends.http.codec import parse_json_body


@pytest.mark.parametrize(
    ("body", "message", "offset"),
    [
        (b" ", "The document is empty.", 1),
        (b"{", "Missing a name for object member.", 1),
        (b"{'a':1}", "Missing a name for object member.", 1),
        (b'{"a"', "Missing a colon after a name of object member.", 4),
        (b'{"a" 1}', "Missing a colon after a name of object member.", 5),
        (b'{"a":', "Invalid value.", 5),
        (b'{"a":1', "Missing a comma or '}' after an object member.", 6),
        (b'{"a":01}', "Missing a comma or '}' after an object member.", 6),
        (b'{"a":1,', "Missing a name for object member.", 7),
        (b"[1,2", "Missing a comma or ']' after an array element.", 4),
        (b"[1 2]", "Missing a comma or ']' after an array element.", 3),
        (b"nul", "Invalid value.", 3),
        (b"tru", "Invalid value.", 3),
        (b'{"a":-}', "Invalid value.", 6),
        (b"-Infinit", "Invalid value.", 8),
        (b'{"a":infinity}', "Invalid value.", 5),
        (b'"abc', "Missing a closing quotation mark in string.", 4),
        (b'{"a":"\\x"}', "Invalid escape character in string.", 6),
        (b'{"a":"x\x01"}', "Invalid escape character in string.", 7),
        (b'{"a":"\\u12G4"}', "Incorrect hex digit after \\u escape in string.", 6),
        (b'{"a":"\\u12"}', "Incorrect hex digit after \\u escape in string.", 6),
        (b'{"a":"\\ud800"}', "The surrogate pair in string is invalid.", 6),
        (b'{"a":"\\ud800\\u0041"}', "The surrogate pair in string is invalid.", 6),
        (b'{"a":1} x', "The document root must not be followed by other values.", 8),
        (b'{"a":1.}', "Miss fraction part in number.", 7),
        (b'{"a":1e}', "Miss exponent in number.", 7),
        (b'{"a":1e999}', "Number too big to be stored in double.", 5),
    ],
)
def test_triton_json_reports_rapidjson_errors(body: bytes, message: str, offset: int) -> None:
    with pytest.raises(triton_json.JsonParseError) as raised:
        triton_json.loads(body)
    assert (raised.value.message, raised.value.offset) == (message, offset)
    with pytest.raises(InternalError) as wrapped:
        parse_json_body(body)
    assert wrapped.value.message == f"failed to parse the request JSON buffer: {message} at {offset}"


def test_triton_json_reads_nan_and_infinity() -> None:
    value = triton_json.loads(b'[NaN, -NaN, Inf, -Inf, Infinity, -Infinity, NaN.5, {"k": [NaN]}]')
    assert all(math.isnan(value[index]) for index in (0, 1, 6))
    assert value[2:6] == [math.inf, -math.inf, math.inf, -math.inf]
    assert math.isnan(value[7]["k"][0])
    # What Python's json (so tritonclient in JSON mode) writes for non-finite floats.
    assert math.isinf(triton_json.loads(json.dumps({"x": [math.inf]}).encode())["x"][0])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"123456789012345678901234567890", 1.2345678901234568e29),  # beyond 64 bits: a double
        (b"18446744073709551615", 18446744073709551615),  # uint64 max stays an integer
        (b"-9223372036854775808", -9223372036854775808),
        (b'{"a":"\\udc00"}', {"a": "\ufffd"}),  # a lone low surrogate passes Triton's RapidJSON
        (b'{"a":"\\ud83d\\ude00 \\u00e9\\n\\/"}', {"a": "\U0001f600 \u00e9\n/"}),
        (b'\t[ 1 , 2.5e1 , -0 , true , null , "s" ]\r\n', [1, 25.0, 0, True, None, "s"]),
        (b'{"a": [Infinity], "b": 1}', {"a": [math.inf], "b": 1}),
    ],
)
def test_triton_json_reads_what_rapidjson_accepts(body: bytes, expected: Any) -> None:
    assert triton_json.loads(body) == expected


def test_triton_json_reader_agrees_with_orjson_on_strict_json() -> None:
    document = {"inputs": [{"name": "x", "shape": [2, 3], "data": [1.5, -2, 3e-5, 0, 7, 1e300]}], "id": "é\n"}
    body = json.dumps(document).encode()
    assert triton_json.RapidJsonReader(body).parse() == triton_json.loads(body) == document


def test_triton_json_reports_deep_nesting_as_an_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(triton_json.JsonParseError, match="nested too deeply"):
        triton_json.loads(body)
