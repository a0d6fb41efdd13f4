"""--reuse-http-port: two HTTP frontends bind one port (SO_REUSEPORT); without it the second fails."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any, cast

import pytest

from airtower.frontends.http.app import HttpFrontend


def _frontend(port: int, reuse_port: bool) -> HttpFrontend:
    server = cast("Any", SimpleNamespace(shared_memory=None))  # binding needs no InferenceServer
    return HttpFrontend(server, host="127.0.0.1", port=port, max_input_size=1024, reuse_port=reuse_port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_two_frontends_share_a_port_with_reuse_port() -> None:
    port = _free_port()
    first, second = _frontend(port, True), _frontend(port, True)
    assert await first.start() == port
    try:
        assert await second.start() == port
        await second.aclose()
    finally:
        await first.aclose()


async def test_without_reuse_port_the_second_bind_fails() -> None:
    port = _free_port()
    first = _frontend(port, False)
    await first.start()
    try:
        with pytest.raises(OSError, match="address already in use"):
            await _frontend(port, False).start()
    finally:
        await first.aclose()
