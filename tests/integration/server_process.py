"""Start a real ``airtower serve`` process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

_STARTED = re.compile(r"Started HTTPService at [^:]+:(\d+)")


@dataclass
class ServerProcess:
    """A running server; ``url`` is ``127.0.0.1:<port>`` for tritonclient."""

    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return "".join(self.log)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait, and return the exit code (kills after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def _pump(stream: object, log: list[str], ready: threading.Event, port: list[int]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        log.append(line)
        match = _STARTED.search(line)
        if match and not ready.is_set():
            port.append(int(match.group(1)))
            ready.set()
    ready.set()


def start_server(repositories: Sequence[Path], *extra: str, timeout: float = 120) -> ServerProcess:
    """Start the server with ``--http-port 0`` and wait until it reports its port.

    Raises RuntimeError (with the server's log) if it exits or never starts.
    """
    args = [sys.executable, "-m", "airtower", "serve", "--http-address", "127.0.0.1", "--http-port", "0"]
    for repository in repositories:
        args += ["--model-repository", str(repository)]
    args += list(extra)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log: list[str] = []
    ready = threading.Event()
    port: list[int] = []
    reader = threading.Thread(target=_pump, args=(process.stdout, log, ready, port), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            ServerProcess(process, 0, log, reader).stop(timeout=1)
            raise RuntimeError("server did not start in time:\n" + "".join(log))
    server = ServerProcess(process, port[0] if port else 0, log, reader)
    if not port:
        server.stop()
        raise RuntimeError(f"server exited with {process.returncode}:\n" + "".join(log))
    return server


def run_server_to_exit(repositories: Sequence[Path], *extra: str, timeout: float = 120) -> tuple[int, str]:
    """Run a server that is expected to exit by itself (e.g. a start-up failure)."""
    args = [sys.executable, "-m", "airtower", "serve", "--http-address", "127.0.0.1", "--http-port", "0"]
    for repository in repositories:
        args += ["--model-repository", str(repository)]
    args += list(extra)
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr
