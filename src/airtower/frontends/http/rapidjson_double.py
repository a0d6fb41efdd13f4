"""Doubles written as Triton's JSON writer (RapidJSON) writes them.

Triton renders every JSON number with RapidJSON's ``Writer::Double``: the digits come from the
Grisu2 algorithm (Loitsch, "Printing Floating-Point Numbers Quickly and Accurately with Integers",
2010), which always reads back as the same double but is not always the shortest or closest such
string, so about a third of FP32 outputs get a different last digit than Python's ``repr``; the
layout is RapidJSON's ``Prettify`` (``100.0``, ``0.001234``, ``1.5e-7``, ``1e21``: no ``+`` and no
zero padding in exponents, decimal notation up to 21 integer digits) and non-finite values are
``NaN``, ``Infinity`` and ``-Infinity`` (Triton's writer allows them).

``double_text`` is that writer for one value and ``float_array_json`` for a tensor's values. They
run the C accelerator ``_rapidjson_double.c`` when ``make compile`` has built it (about 50 ns a
value, less than ``repr``); else this module's pure-Python implementation (``python_double_text``,
``python_float_array_json``: integer arithmetic on the double's bits, as in the C++, with 64-bit
unsigned arithmetic kept to 64 bits where it could wrap; ~4 µs a value, ~1.4 µs in arrays of
128 or more through numpy), which the C follows step for step and the tests hold it to.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from airtower import compiled

__all__ = ["double_text", "float_array_json", "python_double_text", "python_float_array_json"]

_MASK64 = (1 << 64) - 1
_HIDDEN_BIT = 1 << 52
_SIGNIFICAND_MASK = _HIDDEN_BIT - 1
_EXPONENT_BIAS = 1075  # 0x3FF + 52
_DENORMAL_EXPONENT = -1074
_DOUBLE = struct.Struct("<d")
_BITS = struct.Struct("<Q")
_POW10 = [10**i for i in range(10)]
_POW10_64 = [10**i for i in range(64)]


def _cached_powers() -> tuple[list[int], list[int]]:
    """Grisu's table: 10^k for k = -348, -340, ..., 340 as a 64-bit significand (top bit set,
    rounded to nearest) and a binary exponent."""
    significands: list[int] = []
    exponents: list[int] = []
    for index in range(87):
        k = -348 + 8 * index
        numerator, denominator = (10**k, 1) if k >= 0 else (1, 10**-k)
        # Find e with 2^63 <= 10^k / 2^e < 2^64, then round 10^k / 2^e to the nearest integer.
        e = numerator.bit_length() - denominator.bit_length() - 64
        while True:
            scaled_num = numerator << -e if e < 0 else numerator
            scaled_den = denominator << e if e > 0 else denominator
            quotient, remainder = divmod(scaled_num, scaled_den)
            if quotient < 1 << 63:
                e -= 1
            elif quotient >= 1 << 64:
                e += 1
            else:
                break
        if 2 * remainder >= scaled_den:
            quotient += 1
        if quotient == 1 << 64:
            quotient >>= 1
            e += 1
        significands.append(quotient)
        exponents.append(e)
    return significands, exponents


_CACHED_F, _CACHED_E = _cached_powers()


def _multiply(f1: int, e1: int, f2: int, e2: int) -> tuple[int, int]:
    """DiyFp product: the high 64 bits of the 128-bit product, rounded (RapidJSON's __int128 path)."""
    return (f1 * f2 + (1 << 63)) >> 64, e1 + e2 + 64


def _normal_powers() -> list[tuple[int, int, int]]:
    """For each biased exponent of a normal double: the cached power's significand, its K and
    the DigitGen shift (m+ of a normal double always has exponent e - 11)."""
    table = [(0, 0, 0)]
    for biased in range(1, 2047):
        plus_e = biased - _EXPONENT_BIAS - 11
        index, big_k = _cached_index(plus_e)
        table.append((_CACHED_F[index], big_k, -(plus_e + _CACHED_E[index] + 64)))
    return table


def _cached_index(plus_e: int) -> tuple[int, int]:
    """GetCachedPower: the table index whose power brings ``plus_e`` into [-60, -32], and K."""
    dk = (-61 - plus_e) * 0.30102999566398114 + 347
    k = int(dk)
    if dk - k > 0.0:
        k += 1
    index = (k >> 3) + 1
    return index, -(-348 + index * 8)


_NORMAL_POWERS = _normal_powers()
_ROUNDING = 1 << 63


def _digits(value: float) -> tuple[str, int]:
    """Grisu2: the decimal digits of positive, finite ``value`` and K, with value ~ digits * 10^K."""
    bits = _BITS.unpack(_DOUBLE.pack(value))[0]
    biased = bits >> 52  # the sign bit is clear
    if biased:  # normal: every shift is known (m+ = (2f + 1) << 10, W = f << 11)
        f = (bits & _SIGNIFICAND_MASK) | _HIDDEN_BIT
        c_f, big_k, shift = _NORMAL_POWERS[biased]
        minus = ((f << 2) - 1) << 9 if f == _HIDDEN_BIT else ((f << 1) - 1) << 10
        w_f = ((f << 11) * c_f + _ROUNDING) >> 64
        mp_f = ((((f << 1) + 1) << 10) * c_f + _ROUNDING >> 64) - 1
        wm_f = (minus * c_f + _ROUNDING >> 64) + 1
        return _digit_gen(w_f, mp_f, -shift, mp_f - wm_f, big_k)
    f, e = bits & _SIGNIFICAND_MASK, _DENORMAL_EXPONENT
    # The boundaries m+ and m- (halfway to the neighbouring doubles), normalized to a common exponent.
    plus_f, plus_e = (f << 1) + 1, e - 1
    while not plus_f & (_HIDDEN_BIT << 1):
        plus_f <<= 1
        plus_e -= 1
    plus_f <<= 10
    plus_e -= 10
    if f == _HIDDEN_BIT:
        minus_f, minus_e = (f << 2) - 1, e - 2
    else:
        minus_f, minus_e = (f << 1) - 1, e - 1
    minus_f <<= minus_e - plus_e
    # The cached power of ten that brings m+'s exponent into [-60, -32].
    index, big_k = _cached_index(plus_e)
    c_f, c_e = _CACHED_F[index], _CACHED_E[index]
    shift = 64 - f.bit_length()
    w_f = _multiply(f << shift, e - shift, c_f, c_e)[0]
    wp_f, wp_e = _multiply(plus_f, plus_e, c_f, c_e)
    wm_f = _multiply(minus_f, plus_e, c_f, c_e)[0]
    wm_f += 1
    wp_f -= 1
    return _digit_gen(w_f, wp_f, wp_e, wp_f - wm_f, big_k)


def _digit_gen(w_f: int, mp_f: int, mp_e: int, delta: int, big_k: int) -> tuple[str, int]:
    """DigitGen: the digits of Mp down to where the rest fits in ``delta``, then GrisuRound."""
    shift = -mp_e
    one_f = 1 << shift
    low = one_f - 1
    wp_w = mp_f - w_f
    p1 = mp_f >> shift
    p2 = mp_f & low
    head = str(p1)  # the integral part's digits (p1 >= 8: Mp has its top bit set and shift <= 60)
    kappa = len(head)
    # Integral digits, one at a time, while what is left is more than delta.
    for used in range(1, kappa + 1):
        ten_kappa = _POW10[kappa - used]
        rest = ((p1 % ten_kappa) << shift) + p2
        if rest <= delta:
            digits = _round(head[:used], delta, rest, ten_kappa << shift, wp_w)
            return digits, big_k + kappa - used
    # Fractional digits: after j more, they are p2 * 10^j >> shift and the rest p2 * 10^j & low
    # (never more than 64 bits); stop at the first j whose rest is below delta * 10^j.
    j = 1
    while ((p2 * _POW10_64[j]) & low) >= delta * _POW10_64[j]:
        j += 1
    rest = (p2 * _POW10_64[j]) & low
    scaled = p2 * _POW10_64[j] >> shift
    digits = head + str(scaled).rjust(j, "0")
    # The RapidJSON Triton links scales the distance to w only for fewer than 9 extra digits
    # (else 0: no rounding), which is why its digits are not always the closest.
    unit = (wp_w * _POW10[j]) & _MASK64 if j < 9 else 0
    return _round(digits, delta * _POW10_64[j], rest, one_f, unit), big_k - j


def _round(digits: str, delta: int, rest: int, ten_kappa: int, wp_w: int) -> str:
    """GrisuRound: move the last digit towards the value while that stays inside the interval."""
    steps = 0
    while (
        rest < wp_w and delta - rest >= ten_kappa and (rest + ten_kappa < wp_w or wp_w - rest > rest + ten_kappa - wp_w)
    ):
        steps += 1
        rest += ten_kappa
    if not steps:
        return digits
    return digits[:-1] + chr(ord(digits[-1]) - steps)


def python_double_text(value: float) -> str:
    """``value`` as RapidJSON's ``Writer::Double`` writes it (with ``kWriteNanAndInfFlag``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = ""
    if value < 0:
        sign, value = "-", -value
    if value < 9007199254740992.0 and value.is_integer():  # below 2^53 the digits are the integer's
        return f"{sign}{int(value)}.0"
    text, k = _digits(value)
    return _layout(sign, text, k)


def _layout(sign: str, text: str, k: int) -> str:
    """RapidJSON's Prettify: ``text`` (the digits) times 10^k, with ``sign``."""
    length = len(text)
    kk = length + k  # 10^(kk-1) <= value < 10^kk
    if k >= 0 and kk <= 21:  # 1234e7 -> 12340000000.0
        return f"{sign}{text}{'0' * k}.0"
    if 0 < kk <= 21:  # 1234e-2 -> 12.34
        return f"{sign}{text[:kk]}.{text[kk:]}"
    if -6 < kk <= 0:  # 1234e-6 -> 0.001234
        return f"{sign}0.{'0' * -kk}{text}"
    if kk < -324:  # beyond maxDecimalPlaces
        return f"{sign}0.0"
    if length == 1:  # 1e30
        return f"{sign}{text}e{kk - 1}"
    return f"{sign}{text[0]}.{text[1:]}e{kk - 1}"  # 1234e30 -> 1.234e33


def python_float_array_json(values: Sequence[float] | npt.NDArray[Any]) -> str:
    """A JSON array of ``values`` written as Triton writes a tensor's FP32/FP64 data."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size < _MANY:
        return "[" + ",".join([python_double_text(float(value)) for value in array.tolist()]) + "]"
    magnitude = np.abs(array)
    with np.errstate(invalid="ignore"):
        general = np.isfinite(array) & (array != 0) & ~((magnitude < 2.0**53) & (array == np.trunc(array)))
    texts = [python_double_text(value) for value in array.tolist()] if not general.all() else [""] * array.size
    if general.any():
        signs = np.signbit(array[general]).tolist()
        many = _texts_many(magnitude[general])
        for position, negative, text in zip(np.flatnonzero(general).tolist(), signs, many, strict=True):
            texts[position] = "-" + text if negative else text
    return "[" + ",".join(texts) + "]"


#: From this many values on, ``float_array_json`` works on numpy arrays (a fixed cost of ~0.5 ms).
_MANY = 128


# -- many values at once -------------------------------------------------------------------------
# The same steps on numpy uint64 arrays, whose arithmetic wraps modulo 2^64 exactly as the C++'s
# uint64_t does; only the final text is made per value. ``float_array_json`` uses it for arrays of
# more than a few values.

_U64 = np.uint64
_CF = np.array(_CACHED_F, dtype=np.uint64)
_CE = np.array(_CACHED_E, dtype=np.int64)
_P10 = np.array(_POW10, dtype=np.uint64)
_M32 = _U64(0xFFFFFFFF)


def _bit_length(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Bit lengths of values below 2^54 (exact in a double)."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


def _multiply_many(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """High 64 bits of the 128-bit products, rounded (``_multiply``), from 32-bit halves."""
    a_hi, a_lo, b_hi, b_lo = a >> _U64(32), a & _M32, b >> _U64(32), b & _M32
    ac, ad, bc, bd = a_hi * b_hi, a_hi * b_lo, a_lo * b_hi, a_lo * b_lo
    middle = (bd >> _U64(32)) + (ad & _M32) + (bc & _M32)
    high: npt.NDArray[Any] = ac + (ad >> _U64(32)) + (bc >> _U64(32)) + (middle >> _U64(32))
    high += (middle >> _U64(31)) & _U64(1)  # the rounding bit
    return high


def _texts_many(values: npt.NDArray[np.float64]) -> list[str]:
    """``python_double_text`` of positive, finite, non-integral-below-2^53 doubles."""
    bits = values.view(np.uint64)
    biased = ((bits >> _U64(52)) & _U64(0x7FF)).astype(np.int64)
    significand = bits & _U64(_SIGNIFICAND_MASK)
    normal = biased != 0
    f = np.where(normal, significand | _U64(_HIDDEN_BIT), significand)
    e = np.where(normal, biased - _EXPONENT_BIAS, _DENORMAL_EXPONENT)
    plus_f = (f << _U64(1)) + _U64(1)
    shift = 54 - _bit_length(plus_f)
    plus_f = plus_f << (shift + 10).astype(np.uint64)
    plus_e = e - 1 - shift - 10
    asymmetric = f == _U64(_HIDDEN_BIT)
    minus_f = np.where(asymmetric, (f << _U64(2)) - _U64(1), (f << _U64(1)) - _U64(1))
    minus_e = np.where(asymmetric, e - 2, e - 1)
    minus_f = minus_f << (minus_e - plus_e).astype(np.uint64)
    dk = (-61 - plus_e) * 0.30102999566398114 + 347
    k = dk.astype(np.int64)
    k += (dk - k > 0.0).astype(np.int64)
    index = (k >> 3) + 1
    big_k = 348 - 8 * index
    c_f, c_e = _CF[index], _CE[index]
    w_f = _multiply_many(f << (64 - _bit_length(f)).astype(np.uint64), c_f)
    mp_f = _multiply_many(plus_f, c_f) - _U64(1)
    wm_f = _multiply_many(minus_f, c_f) + _U64(1)
    delta = mp_f - wm_f
    wp_w = mp_f - w_f
    shifts = -(plus_e + c_e + 64)
    shift_u = shifts.astype(np.uint64)
    one_f = _U64(1) << shift_u
    low = one_f - _U64(1)
    p1 = mp_f >> shift_u
    p2 = mp_f & low
    kappa = np.searchsorted(_P10, p1, side="right").astype(np.int64)  # decimal digits of p1 (>= 8)
    count = len(values)
    used = np.zeros(count, dtype=np.int64)  # integral digits kept (first loop), or 0
    rest = np.zeros(count, dtype=np.uint64)
    ten_kappa = np.zeros(count, dtype=np.uint64)
    unit = np.zeros(count, dtype=np.uint64)
    for taken in range(1, 11):
        open_ = (used == 0) & (taken <= kappa)
        if not open_.any():
            break
        tk = _P10[np.clip(kappa - taken, 0, 9)]
        candidate = ((p1 % tk) << shift_u) + p2
        hit = open_ & (candidate <= delta)
        used[hit] = taken
        rest[hit] = candidate[hit]
        ten_kappa[hit] = (tk << shift_u)[hit]
        unit[hit] = wp_w[hit]
    fractional = used == 0
    extra = np.zeros(count, dtype=np.int64)  # fractional digits (second loop)
    digits = np.zeros((count, 0), dtype=np.uint8)
    if fractional.any():
        columns: list[npt.NDArray[np.uint64]] = []
        scaled_delta = delta.copy()
        for j in range(1, 64):
            open_ = fractional & (extra == 0)
            if not open_.any():
                break
            p2 = p2 * _U64(10)
            scaled_delta = scaled_delta * _U64(10)
            columns.append(p2 >> shift_u)
            p2 = p2 & low
            hit = open_ & (p2 < scaled_delta)
            extra[hit] = j
            rest[hit] = p2[hit]
            ten_kappa[hit] = one_f[hit]
            unit[hit] = (wp_w * _P10[min(j, 9)])[hit] if j < 9 else _U64(0)
            delta = np.where(hit, scaled_delta, delta)
        digits = np.stack(columns, axis=1).astype(np.uint8) + np.uint8(48)
    # GrisuRound, on every value at once.
    steps = np.zeros(count, dtype=np.int64)
    with np.errstate(over="ignore"):
        while True:
            go = (
                (rest < unit)
                & (delta - rest >= ten_kappa)
                & ((rest + ten_kappa < unit) | (unit - rest > rest + ten_kappa - unit))
            )
            if not go.any():
                break
            steps += go
            rest = rest + np.where(go, ten_kappa, _U64(0))
    texts: list[str] = []
    rows = digits.tobytes()
    width = digits.shape[1]
    for i in range(count):
        head = str(int(p1[i]))
        n = int(extra[i])
        if n:
            text = head + rows[i * width : i * width + n].decode()
            exponent = int(big_k[i]) - n
        else:
            taken = int(used[i])
            text = head[:taken]
            exponent = int(big_k[i]) + len(head) - taken
        if steps[i]:
            text = text[:-1] + chr(ord(text[-1]) - int(steps[i]))
        texts.append(_layout("", text, exponent))
    return texts


# -- the C accelerator ---------------------------------------------------------------------------


def _load_accelerator() -> Any:
    module = compiled.accelerator("frontends.http._rapidjson_double")
    if module is not None:
        module.set_powers(_CACHED_F, _CACHED_E)  # one table for both implementations
    return module


_ACCELERATOR = _load_accelerator()


def double_text(value: float) -> str:
    """``value`` as RapidJSON's ``Writer::Double`` writes it (with ``kWriteNanAndInfFlag``)."""
    if _ACCELERATOR is not None:
        return str(_ACCELERATOR.double_text(value))
    return python_double_text(value)


def float_array_json(values: Sequence[float] | npt.NDArray[Any]) -> str:
    """A JSON array of ``values`` written as Triton writes a tensor's FP32/FP64 data."""
    if _ACCELERATOR is not None:
        return str(_ACCELERATOR.array_json(np.ascontiguousarray(values, dtype=np.float64).reshape(-1)))
    return python_float_array_json(values)
