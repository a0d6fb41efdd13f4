"""TritonJson: JSON bodies read as Triton reads them (RapidJSON with ``kParseNanAndInfFlag``).

Triton parses every HTTP body with RapidJSON, which accepts the literals ``NaN``, ``Inf`` and
``Infinity`` (each optionally negative) as numbers, and words a malformed document as
``<RapidJSON's English message> at <byte offset>``. Python's ``json.dumps`` writes ``NaN`` and
``Infinity`` for non-finite floats, so tritonclient's JSON requests carry them.

``loads`` parses with orjson (fast, and right for every strict-JSON document); only when orjson
refuses a document does ``RapidJsonReader`` read it again: it mirrors RapidJSON's reader
(``GenericReader::ParseValue`` and friends), so it returns the value of a document that only
orjson refused (non-finite literals, integers beyond 64 bits, invalid UTF-8) and otherwise raises
``JsonParseError`` with RapidJSON's message and offset.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

__all__ = ["JsonParseError", "RapidJsonReader", "loads"]

# RapidJSON's GetParseError_En wording, by error.
DOCUMENT_EMPTY = "The document is empty."
ROOT_NOT_SINGULAR = "The document root must not be followed by other values."
VALUE_INVALID = "Invalid value."
OBJECT_MISS_NAME = "Missing a name for object member."
OBJECT_MISS_COLON = "Missing a colon after a name of object member."
OBJECT_MISS_COMMA = "Missing a comma or '}' after an object member."
ARRAY_MISS_COMMA = "Missing a comma or ']' after an array element."
ESCAPE_INVALID_HEX = "Incorrect hex digit after \\u escape in string."
SURROGATE_INVALID = "The surrogate pair in string is invalid."
ESCAPE_INVALID = "Invalid escape character in string."
MISS_QUOTATION_MARK = "Missing a closing quotation mark in string."
NUMBER_TOO_BIG = "Number too big to be stored in double."
MISS_FRACTION = "Miss fraction part in number."
MISS_EXPONENT = "Miss exponent in number."
#: Not RapidJSON's: a document nested deeper than this reader's (Python) stack allows.
NESTING_TOO_DEEP = "The document is nested too deeply."

_WHITESPACE = b" \n\r\t"
_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
#: A run of string bytes that need no attention: not a quote, a backslash or a control character.
_PLAIN = re.compile(rb'[^"\\\x00-\x1f]+')
_DIGITS = re.compile(rb"[0-9]+")
_HEX4 = re.compile(rb"[0-9A-Fa-f]{4}")
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class JsonParseError(ValueError):
    """A document RapidJSON would refuse: its message and the byte offset it reports."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at {offset}")
        self.message = message
        self.offset = offset


def loads(body: bytes) -> Any:
    """The value of the JSON document ``body``, as Triton would read it.

    Raises:
        JsonParseError: RapidJSON would refuse ``body``.
    """
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError):
        return RapidJsonReader(body).parse()


class RapidJsonReader:
    """One document, read the way RapidJSON's recursive reader reads it (with NaN and Infinity)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._end = len(data)
        self._pos = 0

    def parse(self) -> Any:
        self._skip_whitespace()
        if self._peek() == 0:
            raise JsonParseError(DOCUMENT_EMPTY, self._pos)
        try:
            value = self._value()
        except RecursionError:  # RapidJSON has no limit; ours is Python's stack
            raise JsonParseError(NESTING_TOO_DEEP, self._pos) from None
        self._skip_whitespace()
        if self._peek() != 0:
            raise JsonParseError(ROOT_NOT_SINGULAR, self._pos)
        return value

    # -- helpers ----------------------------------------------------------------------------

    def _peek(self) -> int:
        """The next byte, 0 at the end (RapidJSON's stream reads a NUL there)."""
        return self._data[self._pos] if self._pos < self._end else 0

    def _consume(self, expected: int) -> bool:
        """Take the next byte if it is ``expected`` (never 0, so never past the end)."""
        if self._peek() == expected:
            self._pos += 1
            return True
        return False

    def _next_item(self, close: int, error: str) -> bool:
        """After a member or element: True when ``close`` ends the container, False after a comma."""
        self._skip_whitespace()
        if self._consume(ord(",")):
            self._skip_whitespace()
            return False
        if self._consume(close):
            return True
        raise JsonParseError(error, self._pos)

    def _skip_whitespace(self) -> None:
        data, pos, end = self._data, self._pos, self._end
        while pos < end and data[pos] in _WHITESPACE:
            pos += 1
        self._pos = pos

    # -- values -----------------------------------------------------------------------------

    def _value(self) -> Any:
        c = self._peek()
        if c == ord("n"):
            return self._literal(b"null", None)
        if c == ord("t"):
            return self._literal(b"true", True)
        if c == ord("f"):
            return self._literal(b"false", False)
        if c == ord('"'):
            return self._string()
        if c == ord("{"):
            return self._object()
        if c == ord("["):
            return self._array()
        return self._number()

    def _literal(self, word: bytes, value: Any) -> Any:
        for byte in word:
            if not self._consume(byte):
                raise JsonParseError(VALUE_INVALID, self._pos)
        return value

    def _object(self) -> dict[str, Any]:
        self._pos += 1  # "{"
        result: dict[str, Any] = {}
        self._skip_whitespace()
        if self._consume(ord("}")):
            return result
        while True:
            if self._peek() != ord('"'):
                raise JsonParseError(OBJECT_MISS_NAME, self._pos)
            name = self._string()
            self._skip_whitespace()
            if not self._consume(ord(":")):
                raise JsonParseError(OBJECT_MISS_COLON, self._pos)
            self._skip_whitespace()
            result[name] = self._value()
            if self._next_item(ord("}"), OBJECT_MISS_COMMA):
                return result

    def _array(self) -> list[Any]:
        self._pos += 1  # "["
        result: list[Any] = []
        self._skip_whitespace()
        if self._consume(ord("]")):
            return result
        while True:
            result.append(self._value())
            if self._next_item(ord("]"), ARRAY_MISS_COMMA):
                return result

    def _string(self) -> str:
        data = self._data
        self._pos += 1  # the opening quote
        parts: list[str] = []
        while True:
            plain = _PLAIN.match(data, self._pos)
            if plain is not None:
                # RapidJSON does not validate UTF-8 by default; invalid bytes become U+FFFD here.
                parts.append(plain.group().decode("utf-8", "replace"))
                self._pos = plain.end()
            c = self._peek()
            if c == ord('"'):
                self._pos += 1
                return "".join(parts)
            if c == ord("\\"):
                parts.append(self._escape())
            elif c == 0:
                raise JsonParseError(MISS_QUOTATION_MARK, self._pos)
            else:  # another control character: Triton's RapidJSON calls it an invalid escape
                raise JsonParseError(ESCAPE_INVALID, self._pos)

    def _escape(self) -> str:
        escape_offset = self._pos  # RapidJSON reports an escape's errors at its backslash
        self._pos += 1
        c = self._peek()
        simple = _ESCAPES.get(c)
        if simple is not None:
            self._pos += 1
            return simple
        if c != ord("u"):
            raise JsonParseError(ESCAPE_INVALID, escape_offset)
        self._pos += 1
        codepoint = self._hex4(escape_offset)
        if 0xD800 <= codepoint <= 0xDBFF:
            if not (self._consume(ord("\\")) and self._consume(ord("u"))):
                raise JsonParseError(SURROGATE_INVALID, escape_offset)
            low = self._hex4(escape_offset)
            if not 0xDC00 <= low <= 0xDFFF:
                raise JsonParseError(SURROGATE_INVALID, escape_offset)
            codepoint = 0x10000 + ((codepoint - 0xD800) << 10) + (low - 0xDC00)
        elif 0xDC00 <= codepoint <= 0xDFFF:
            return "\ufffd"  # Triton's RapidJSON lets a lone low surrogate through; no str can hold one
        return chr(codepoint)

    def _hex4(self, escape_offset: int) -> int:
        match = _HEX4.match(self._data, self._pos, min(self._pos + 4, self._end))
        if match is None:
            raise JsonParseError(ESCAPE_INVALID_HEX, escape_offset)
        self._pos += 4
        return int(match.group(), 16)

    def _number(self) -> int | float:
        start = self._pos
        minus = self._consume(ord("-"))
        c = self._peek()
        special: float | None = None  # NaN or an infinity
        if c == ord("0"):
            self._pos += 1
        elif ord("1") <= c <= ord("9"):
            self._digits()
        elif c == ord("N"):
            self._pos += 1
            if not (self._consume(ord("a")) and self._consume(ord("N"))):
                raise JsonParseError(VALUE_INVALID, self._pos)
            special = math.nan
        elif c == ord("I"):
            self._pos += 1
            if not (self._consume(ord("n")) and self._consume(ord("f"))):
                raise JsonParseError(VALUE_INVALID, self._pos)
            if self._peek() == ord("i") and not all(self._consume(byte) for byte in b"inity"):
                raise JsonParseError(VALUE_INVALID, self._pos)
            special = -math.inf if minus else math.inf
        else:
            raise JsonParseError(VALUE_INVALID, self._pos)
        integral = special is None
        if self._consume(ord(".")):
            integral = False
            if not self._digits():
                raise JsonParseError(MISS_FRACTION, self._pos)
        if self._peek() in b"eE":  # the end reads as 0, in neither
            integral = False
            self._pos += 1
            if self._peek() in b"+-":
                self._pos += 1
            if not self._digits():
                raise JsonParseError(MISS_EXPONENT, self._pos)
        if special is not None:  # RapidJSON reads (and ignores) a fraction or exponent after one
            return special
        text = self._data[start : self._pos]
        if integral:
            value = int(text)
            if _INT64_MIN <= value <= _UINT64_MAX:
                return value
        number = float(text)  # RapidJSON keeps integers beyond 64 bits as doubles
        if math.isinf(number):
            raise JsonParseError(NUMBER_TOO_BIG, start)
        return number

    def _digits(self) -> bool:
        match = _DIGITS.match(self._data, self._pos)
        if match is None:
            return False
        self._pos = match.end()
        return True
