"""The backend registry: lazy imports, clear errors, and one backend per name under concurrency."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from airtower.backends import registry
from airtower.errors import InvalidArgumentError, UnavailableError

_SLOW_BACKEND = """
import time
time.sleep(0.2)  # a framework that takes a while to import, like onnxruntime


class SlowBackend:
    created = 0

    def __init__(self):
        SlowBackend.created += 1
"""


@pytest.fixture
def slow_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "airtower_test_slow_backend.py").write_text(_SLOW_BACKEND)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.BACKENDS, "slow", "airtower_test_slow_backend:SlowBackend")
    monkeypatch.setattr(registry, "_loaded", {})
    yield "slow"
    sys.modules.pop("airtower_test_slow_backend", None)


def test_concurrent_first_use_imports_and_creates_the_backend_once(slow_backend: str) -> None:
    results: list[object] = []
    barrier = threading.Barrier(4)

    def load() -> None:
        barrier.wait()
        results.append(registry.get_backend(slow_backend))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(result is results[0] for result in results)
    assert type(results[0]).created == 1  # type: ignore[attr-defined]


def test_later_calls_return_the_cached_backend(slow_backend: str) -> None:
    first = registry.get_backend(slow_backend)
    assert registry.get_backend(slow_backend) is first
    assert type(first).created == 1  # type: ignore[attr-defined]


def test_unknown_backend_names_the_available_ones() -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=r"unable to find backend library for backend 'nope', .* \(airtower provides: onnxruntime",
    ):
        registry.get_backend("nope")


def test_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BACKENDS, "absent", "airtower_no_such_module_anywhere:Backend")
    monkeypatch.setattr(registry, "_loaded", {})
    with pytest.raises(UnavailableError, match=r"needs a package that is not installed \(airtower_no_such_module"):
        registry.get_backend("absent")
