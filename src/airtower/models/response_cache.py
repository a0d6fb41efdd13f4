"""The response cache (``--cache-config local,size=<bytes>`` and a model's ``response_cache { enable: true }``).

A request whose model version, inputs (names, datatypes, shapes, bytes) and requested outputs
equal an earlier successful one gets that response again without executing. Keys are BLAKE2b
digests; entries are evicted least recently used first when the cache would exceed its size
(outputs' bytes). One cache serves every model of the server; it is used on the event loop only.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from airtower.core.request import InferenceRequest
from airtower.core.response import InferenceResponse
from airtower.core.tensor import array_to_buffer
from airtower.errors import InvalidArgumentError


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """``--cache-config local,size=<bytes>``."""

    size: int

    @classmethod
    def parse(cls, settings: list[tuple[str, str, str]]) -> CacheConfig | None:
        """The ``(cache, key, value)`` triples of every ``--cache-config``; None when no cache is set.

        Raises:
            InvalidArgumentError: a cache other than ``local``, or a size that is not a byte count.
        """
        size: int | None = None
        for cache, key, value in settings:
            if cache != "local":
                raise InvalidArgumentError(f"unable to find '{cache}' cache: only the 'local' cache is available")
            if key == "size":
                if not value.isdigit():
                    raise InvalidArgumentError(f"invalid cache size '{value}', expected a number of bytes")
                size = int(value)
        return None if size is None else cls(size)


def request_key(model_name: str, version: int, request: InferenceRequest) -> bytes:
    """What makes two requests of a model version answer the same."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{model_name}\0{version}\0".encode())
    for name in sorted(request.inputs):
        tensor = request.inputs[name]
        digest.update(f"{name}\0{tensor.datatype}\0{tensor.shape}\0".encode())
        digest.update(array_to_buffer(tensor.datatype, tensor.data))
    for output in sorted(request.outputs, key=lambda output: output.name):
        digest.update(f"out\0{output.name}\0{output.class_count}\0".encode())
    return digest.digest()


def response_size(response: InferenceResponse) -> int:
    size = 0
    for tensor in response.outputs:
        data = tensor.data
        size += sum(len(item) for item in data.flat) if data.dtype == object else data.nbytes
    return size


class ResponseCache:
    """Least-recently-used responses, bounded by the bytes of their outputs."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.used = 0
        self._entries: OrderedDict[bytes, tuple[InferenceResponse, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: bytes) -> InferenceResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def insert(self, key: bytes, response: InferenceResponse) -> bool:
        """Keep ``response`` (False when it is larger than the whole cache)."""
        size = response_size(response)
        if size > self.size:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.used -= old[1]
        while self._entries and self.used + size > self.size:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.used -= evicted
        self._entries[key] = (response, size)
        self.used += size
        return True
