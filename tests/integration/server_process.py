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
_GRPC_STARTED = re.compile(r"Started GRPCInferenceService at .+:(\d+)")
_METRICS_STARTED = re.compile(r"Started Metrics Service at .+:(\d+)")
_BASE_ARGS = ["-m", "airtower", "serve", "--http-address", "127.0.0.1", "--http-port", "0",
              "--grpc-address", "127.0.0.1", "--grpc-port", "0",
              "--metrics-address", "127.0.0.1", "--metrics-port", "0"]  # fmt: skip


@dataclass
class ServerProcess:
    """A running server; ``url`` (HTTP) and ``grpc_url`` are ``127.0.0.1:<port>`` for tritonclient,
    ``metrics_url`` its Prometheus endpoint (``metrics_port`` is 0 with ``--allow-metrics=false``)."""

    process: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    grpc_port: int = 0
    metrics_port: int = 0

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

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


def _pump(stream: object, log: list[str], ready: threading.Event, ports: dict[str, int], wanted: set[str]) -> None:
    patterns = (("http", _STARTED), ("grpc", _GRPC_STARTED), ("metrics", _METRICS_STARTED))
    for line in stream:  # type: ignore[attr-defined]
        log.append(line)
        for key, pattern in patterns:
            match = pattern.search(line)
            if match and key not in ports:
                ports[key] = int(match.group(1))
        if wanted <= ports.keys():
            ready.set()
    ready.set()


def _allowed(extra: Sequence[str], flag: str) -> bool:
    """Whether ``--allow-<service>`` (``flag``) is left on by ``extra``."""
    allowed = True
    for index, arg in enumerate(extra):
        if arg.startswith(f"{flag}="):
            allowed = arg.split("=", 1)[1].lower() in ("true", "1", "yes", "on")
        elif arg == flag and index + 1 < len(extra) and not extra[index + 1].startswith("--"):
            allowed = extra[index + 1].lower() in ("true", "1", "yes", "on")
    return allowed


def _wanted_services(extra: Sequence[str]) -> set[str]:
    """The services whose "Started" line the server prints before it is ready for the tests."""
    wanted = {"http"}
    if _allowed(extra, "--allow-grpc"):
        wanted.add("grpc")
    if _allowed(extra, "--allow-metrics"):
        wanted.add("metrics")
    return wanted


def start_server(repositories: Sequence[Path | str], *extra: str, timeout: float = 120) -> ServerProcess:
    """Start the server with ``--http-port 0 --grpc-port 0`` and wait until it reports its ports.

    Raises RuntimeError (with the server's log) if it exits or never starts.
    """
    args = [sys.executable, *_BASE_ARGS]
    for repository in repositories:
        args += ["--model-repository", str(repository)]
    args += list(extra)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    log: list[str] = []
    ready = threading.Event()
    ports: dict[str, int] = {}
    reader = threading.Thread(
        target=_pump, args=(process.stdout, log, ready, ports, _wanted_services(extra)), daemon=True
    )
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            ServerProcess(process, 0, log, reader).stop(timeout=1)
            raise RuntimeError("server did not start in time:\n" + "".join(log))
    server = ServerProcess(process, ports.get("http", 0), log, reader, ports.get("grpc", 0), ports.get("metrics", 0))
    if "http" not in ports:
        server.stop()
        raise RuntimeError(f"server exited with {process.returncode}:\n" + "".join(log))
    return server


def run_server_to_exit(repositories: Sequence[Path | str], *extra: str, timeout: float = 120) -> tuple[int, str]:
    """Run a server that is expected to exit by itself (e.g. a start-up failure)."""
    args = [sys.executable, *_BASE_ARGS]
    for repository in repositories:
        args += ["--model-repository", str(repository)]
    args += list(extra)
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    return done.returncode, done.stdout + done.stderr
