"""SystemSharedMemory: registration, bounds-checked reads and writes, and keys confined to the shm root."""

from __future__ import annotations

from pathlib import Path

import pytest

from airtower.core.shared_memory import SystemSharedMemory
from airtower.errors import AlreadyExistsError, InternalError, InvalidArgumentError, NotFoundError


@pytest.fixture
def memory(tmp_path: Path) -> SystemSharedMemory:
    (tmp_path / "region").write_bytes(bytes(range(32)))
    return SystemSharedMemory(root=str(tmp_path))


def test_reads_and_writes_within_the_registered_window(memory: SystemSharedMemory, tmp_path: Path) -> None:
    memory.register("r", "/region", 8, 16)
    assert memory.status() == [{"name": "r", "key": "/region", "offset": 8, "byte_size": 16}]
    assert memory.read("r", 0, 4) == bytes([8, 9, 10, 11])
    memory.write("r", 12, b"\xff\xff\xff\xff")
    assert (tmp_path / "region").read_bytes()[20:24] == b"\xff" * 4
    # Triton's checks and words (2.51): the offset first, then the span, and an empty span at 0.
    spans = {
        (12, 8): "Invalid offset + byte size for shared memory region: 'r'",  # past the window, inside the file
        (16, 0): "Invalid offset for shared memory region: 'r'",
        (0, 0): "Invalid offset + byte size for shared memory region: 'r'",
    }
    for (offset, size), message in spans.items():
        with pytest.raises(InvalidArgumentError) as info:
            memory.read("r", offset, size)
        assert info.value.message == message
    assert memory.read("r", 4, 0) == b""
    with pytest.raises(NotFoundError, match="Unable to find shared memory region: 'other'"):
        memory.read("other", 0, 1)


def test_registration_errors_are_triton_s(memory: SystemSharedMemory) -> None:
    memory.register("r", "region", 0, 32)
    with pytest.raises(AlreadyExistsError, match="shared memory region 'r' already in manager"):
        memory.register("r", "region", 0, 32)
    with pytest.raises(InternalError, match="exceed the 32 bytes"):
        memory.register("big", "region", 16, 32)
    with pytest.raises(NotFoundError, match="Unable to find system shared memory region: 'x'"):
        memory.status("x")
    memory.unregister("x")  # unknown: not an error
    memory.unregister()
    assert memory.status() == []


@pytest.mark.parametrize("key", ["../etc/passwd", "/a/b", "", "/", "..", "/.."])
def test_keys_cannot_leave_the_shared_memory_root(memory: SystemSharedMemory, key: str) -> None:
    with pytest.raises(InternalError, match="Unable to open shared memory region"):
        memory.register("r", key, 0, 1)
