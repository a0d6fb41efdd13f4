"""What every benchmark script shares: paths, starting and stopping airtower and the reference
Triton on free loopback ports, another revision of airtower to compare with, and CPU time readings.

The scripts run as ``.venv/bin/python bench/<script>.py``, so this module is imported from their
own folder.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "model_repository"
#: The reference Triton installed by ../shared/reference/setup.sh (``make reference``).
REF = Path(os.environ.get("TRITON_REF", "/tmp/triton-ref"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server not ready in time")


def start(name: str, repository: Path, log: Path, src: Path | None = None) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start ``airtower`` (from ``src`` first on PYTHONPATH, when given: another revision's tree) or
    ``triton`` (the reference) on ``repository``, wait until it is ready; returns the process and its
    HTTP and gRPC ports. Its output goes to ``log``."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = env_with_src(src)
    if name != "triton":
        args = [str(ROOT / ".venv" / "bin" / "airtower"), "serve", "--model-repository", str(repository),
                "--http-address", "127.0.0.1", "--http-port", str(http), "--grpc-address", "127.0.0.1",
                "--grpc-port", str(grpc), "--allow-metrics=false"]  # fmt: skip
    else:
        args = [str(REF / "bin" / "tritonserver"), f"--model-repository={repository}", f"--http-port={http}",
                f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--allow-metrics=false"]  # fmt: skip
    process = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_ready(http, process)
    except BaseException:
        stop(process)
        raise
    return process, http, grpc


def env_with_src(src: Path | None) -> dict[str, str]:
    """This process's environment, with ``src`` (another revision's tree) first on PYTHONPATH when given."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(src)
    return env


@contextmanager
def worktree(revision: str, where: Path) -> Iterator[Path]:
    """``revision`` checked out in a temporary git worktree at ``where`` (removed afterwards); yields its ``src``."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), revision], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield where / "src"
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], capture_output=True)


def build(src: Path) -> None:
    """Compile ``src``'s request path as ``make compile`` does, when that revision has one."""
    if not (src / "airtower" / "compiled.py").exists():
        return
    code = "import sys, airtower.compiled as c; sys.exit(c.main(['--strict']))"
    subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(src)), check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its child processes (Triton's Python stubs), in seconds."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ticks = 0
    for one in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU time of this process (or, with ``RUSAGE_CHILDREN``, of its finished children)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}
