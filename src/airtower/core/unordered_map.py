"""The order in which Triton walks a ``std::unordered_map<std::string, ...>``, such as a request's inputs.

Triton's core keeps a request's inputs in an unordered map and checks them in its iteration order,
so when several inputs are wrong, the one its error names (and the order of the names its
input-count error lists) follows that order. It is libstdc++'s (Triton is built with GCC), which
is deterministic, and ``iteration_order`` reproduces it:

- a key's hash is ``std::_Hash_bytes(data, len, 0xc70f6907)``, a 64-bit MurmurHash2 variant, and its
  bucket is the hash modulo the bucket count;
- the first insertion sizes the table for 11 elements: 13 buckets, and every 13 keys the table grows
  to the next prime of libstdc++'s list at least twice as large, re-inserting the keys in iteration
  order;
- a key whose bucket is empty goes to the front of the single list that iteration follows; a key
  whose bucket holds keys goes just before them (the first of its bucket).

So two keys come out in reverse order, and more usually do too, unless two of them share a bucket.
Only error paths use this: a request that passes is checked in its own order.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["iteration_order", "string_hash"]

_MASK = (1 << 64) - 1
_MUL = (0xC6A4A793 << 32) + 0x5BD1E995
_SEED = 0xC70F6907
#: Bucket counts the table takes as it grows (libstdc++'s prime list, from 13 on); past 257 keys the
#: order is kept at 257 buckets, an approximation no model's inputs reach.
_BUCKETS = (13, 29, 59, 127, 257)


def _shift_mix(value: int) -> int:
    return value ^ (value >> 47)


def string_hash(data: bytes) -> int:
    """``std::hash<std::string>`` of libstdc++ on a 64-bit machine."""
    length = len(data)
    aligned = length & ~7
    value = (_SEED ^ (length * _MUL)) & _MASK
    for start in range(0, aligned, 8):
        word = int.from_bytes(data[start : start + 8], "little")
        value ^= (_shift_mix((word * _MUL) & _MASK) * _MUL) & _MASK
        value = (value * _MUL) & _MASK
    if length & 7:
        value ^= int.from_bytes(data[aligned:], "little")
        value = (value * _MUL) & _MASK
    return _shift_mix((_shift_mix(value) * _MUL) & _MASK)


def _insert(order: list[tuple[str, int]], key: str, code: int, buckets: int) -> None:
    bucket = code % buckets
    for index, (_, other) in enumerate(order):
        if other % buckets == bucket:
            order.insert(index, (key, code))
            return
    order.insert(0, (key, code))


def iteration_order(keys: Iterable[str]) -> list[str]:
    """``keys`` (distinct, in insertion order) in the order libstdc++'s unordered_map iterates them."""
    order: list[tuple[str, int]] = []
    size = 0
    for key in keys:
        if len(order) == _BUCKETS[size] and size + 1 < len(_BUCKETS):
            size += 1
            rehashed: list[tuple[str, int]] = []
            for old_key, old_code in order:
                _insert(rehashed, old_key, old_code, _BUCKETS[size])
            order = rehashed
        _insert(order, key, string_hash(key.encode()), _BUCKETS[size])
    return [key for key, _ in order]
