"""System shared memory: POSIX shared-memory regions clients register to pass tensors without
copying them through the socket (Triton's system shared memory extension).

A region is a named window (``offset``, ``byte_size``) of the shared-memory object ``key``
(``shm_open`` name, i.e. ``/dev/shm/<key>``). Frontends read request inputs from regions and write
outputs into them; every access is bounds-checked against the window. Thread-safe.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from airtower.errors import AlreadyExistsError, InternalError, InvalidArgumentError, NotFoundError

#: Where Linux keeps POSIX shared-memory objects.
SHM_ROOT = "/dev/shm"


@dataclass(slots=True)
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    mapping: mmap.mmap


class SystemSharedMemory:
    """The registered system shared-memory regions."""

    def __init__(self, root: str = SHM_ROOT) -> None:
        self._root = root
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: str, offset: int, byte_size: int) -> None:
        """Map ``byte_size`` bytes at ``offset`` of the object ``key`` as region ``name``.

        Raises:
            AlreadyExistsError: a region with that name is registered.
            InternalError: the object cannot be opened, or is smaller than the window (Triton's INTERNAL).
        """
        with self._lock:
            if name in self._regions:
                raise AlreadyExistsError(f"shared memory region '{name}' already in manager")
        object_name = key[1:] if key.startswith("/") else key
        if not object_name or "/" in object_name or object_name in (".", ".."):
            # A POSIX shared-memory name is one path component: nothing outside /dev/shm can be mapped.
            raise InternalError(f"Unable to open shared memory region: '{key}'")
        path = os.path.join(self._root, object_name)
        try:
            descriptor = os.open(path, os.O_RDWR)
        except OSError:
            raise InternalError(f"Unable to open shared memory region: '{key}'") from None
        try:
            size = os.fstat(descriptor).st_size
            if offset < 0 or byte_size < 0 or offset + byte_size > size:
                raise InternalError(
                    f"failed to register shared memory region '{name}': offset {offset} and byte size {byte_size} "
                    f"exceed the {size} bytes of '{key}'"
                )
            mapping = mmap.mmap(descriptor, size)
        finally:
            os.close(descriptor)
        with self._lock:
            if name in self._regions:
                mapping.close()
                raise AlreadyExistsError(f"shared memory region '{name}' already in manager")
            self._regions[name] = Region(name, key, offset, byte_size, mapping)

    def has(self, name: str) -> bool:
        with self._lock:
            return name in self._regions

    def check(self, name: str, offset: int, byte_size: int) -> None:
        """Whether ``byte_size`` bytes at ``offset`` lie within region ``name`` (an output's place,
        checked when the request is read, as Triton does).

        Raises:
            NotFoundError: an unknown region (Triton's 404).
            InvalidArgumentError: a span outside the region.
        """
        with self._lock:
            self._span(name, offset, byte_size)

    def unregister(self, name: str = "") -> None:
        """Forget region ``name`` (every region when empty); unknown names are not an error."""
        with self._lock:
            regions = list(self._regions.values()) if not name else [r for r in [self._regions.get(name)] if r]
            for region in regions:
                del self._regions[region.name]
        for region in regions:
            region.mapping.close()

    def status(self, name: str = "") -> list[dict[str, str | int]]:
        """``{"name", "key", "offset", "byte_size"}`` of region ``name``, or of every region.

        Raises:
            NotFoundError: no region has that name (Triton's message).
        """
        with self._lock:
            if name and name not in self._regions:
                raise NotFoundError(f"Unable to find system shared memory region: '{name}'")
            regions = [self._regions[name]] if name else sorted(self._regions.values(), key=lambda r: r.name)
            return [{"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size} for r in regions]

    def read(self, name: str, offset: int, byte_size: int) -> bytes:
        """A copy of ``byte_size`` bytes at ``offset`` within region ``name``.

        Raises:
            NotFoundError: an unknown region (Triton's 404).
            InvalidArgumentError: a span outside the region.
        """
        with self._lock:
            region = self._span(name, offset, byte_size)
            start = region.offset + offset
            return region.mapping[start : start + byte_size]

    def write(self, name: str, offset: int, data: bytes | memoryview) -> None:
        """Copy ``data`` to ``offset`` within region ``name``.

        Raises:
            InvalidArgumentError: an unknown region, or a span outside it.
        """
        size = len(data) if isinstance(data, bytes) else data.nbytes
        with self._lock:
            region = self._span(name, offset, size)
            start = region.offset + offset
            region.mapping[start : start + size] = data if isinstance(data, bytes) else data.cast("B")

    def _span(self, name: str, offset: int, byte_size: int) -> Region:
        region = self._regions.get(name)
        if region is None:
            raise NotFoundError(f"Unable to find shared memory region: '{name}'")
        # Triton's checks and words; a span of 0 bytes at offset 0 is refused too, as in Triton.
        if offset < 0 or offset >= region.byte_size:
            raise InvalidArgumentError(f"Invalid offset for shared memory region: '{name}'")
        if byte_size < 0 or offset + byte_size == 0 or offset + byte_size > region.byte_size:
            raise InvalidArgumentError(f"Invalid offset + byte size for shared memory region: '{name}'")
        return region


def write_output(
    shared_memory: SystemSharedMemory | None, output: str, data: bytes | memoryview, placement: Mapping[str, object]
) -> None:
    """Write output ``output``'s ``data`` where its request placed it (``shared_memory_region``,
    ``shared_memory_offset``, ``shared_memory_byte_size`` in ``placement``), for either frontend.

    Raises:
        InternalError: the region's window is smaller than the output (Triton's message and code).
        NotFoundError: the region is not registered.
    """
    region = str(placement["shared_memory_region"])
    capacity = int(str(placement["shared_memory_byte_size"]))
    size = len(data) if isinstance(data, bytes) else data.nbytes
    if size > capacity:
        raise InternalError(
            f"shared memory size specified with the request for output '{output}' ({capacity} bytes) should be "
            f"at least {size} bytes to hold the results"
        )
    if shared_memory is None:
        raise NotFoundError(f"Unable to find shared memory region: '{region}'")
    shared_memory.write(region, int(str(placement.get("shared_memory_offset", 0))), data)
