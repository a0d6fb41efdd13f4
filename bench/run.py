"""airtower vs the reference Triton on the same Python model, measured with perf_analyzer.

    .venv/bin/python bench/run.py [--concurrency 1 4 16] [--rounds 2] [--protocol http]

Both servers load the same model repository (the example `add_sub` Python model, two FP32
inputs of 16 elements, max_batch_size 0, and `add_sub_batched`, the same model with
max_batch_size 8). For each concurrency the two servers are measured in turn, alternating,
``--rounds`` times; the best-of-rounds throughput and its p99 are kept for each. The script
prints throughput and p99 ratios (airtower / reference) and writes bench/results/latest.json.
The reference comes from ../shared/reference/setup.sh (TRITON_REF, default /tmp/triton-ref).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "model_repository"
REF = Path(os.environ.get("TRITON_REF", "/tmp/triton-ref"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_repository(directory: Path) -> Path:
    """The add_sub model twice: as shipped (max_batch_size 0) and with max_batch_size 8."""
    repository = directory / "bench_repository"
    shutil.copytree(EXAMPLES / "add_sub", repository / "add_sub")
    batched = repository / "add_sub_batched"
    shutil.copytree(EXAMPLES / "add_sub", batched)
    config = (batched / "config.pbtxt").read_text()
    config = config.replace('name: "add_sub"', 'name: "add_sub_batched"')
    config = config.replace("max_batch_size: 0", "max_batch_size: 8")
    (batched / "config.pbtxt").write_text(config)
    return repository


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
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


def start_airtower(repository: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    http, grpc = free_port(), free_port()
    args = [str(ROOT / ".venv" / "bin" / "airtower"), "serve", "--model-repository", str(repository),
            "--http-address", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
            "--allow-metrics=false"]  # fmt: skip
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_ready(http, process)
    return process, http, grpc


def start_reference(repository: Path, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    args = [str(REF / "bin" / "tritonserver"), f"--model-repository={repository}", f"--http-port={http}",
            f"--grpc-port={grpc}", f"--metrics-port={metrics}", "--allow-metrics=false"]  # fmt: skip
    process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_ready(http, process)
    return process, http, grpc


def measure(model: str, url: str, protocol: str, concurrency: int, seconds: float, workdir: Path) -> dict[str, float]:
    out = workdir / f"pa-{time.monotonic_ns()}.csv"
    args = [str(REF / "bin" / "perf_analyzer"), "-m", model, "-u", url, "-i", protocol,
            "--concurrency-range", str(concurrency), "--measurement-interval", str(int(seconds * 1000)),
            "--percentile", "99", "--stability-percentage", "50", "--max-trials", "20", "-f", str(out)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {url}:\n{done.stdout}\n{done.stderr}")
    with out.open() as handle:
        row = next(csv.DictReader(handle))
    return {"throughput": float(row["Inferences/Second"]), "p99_us": float(row["p99 latency"])}


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="perf_analyzer measurement window")
    parser.add_argument("--protocol", choices=["http"], default="http")
    parser.add_argument("--models", nargs="+", default=["add_sub", "add_sub_batched"])
    args = parser.parse_args()
    if not (REF / "bin" / "perf_analyzer").exists():
        print(f"no reference Triton in {REF}: run `make reference` first", file=sys.stderr)
        return 2
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="airtower-bench-") as tmp:
        workdir = Path(tmp)
        repository = make_repository(workdir)
        ours, our_port, _ = start_airtower(repository, workdir / "airtower.log")
        try:
            ref, ref_port, _ = start_reference(repository, workdir / "triton.log")
        except BaseException:
            stop(ours)
            raise
        try:
            servers = {"airtower": f"127.0.0.1:{our_port}", "triton": f"127.0.0.1:{ref_port}"}
            for model in args.models:
                for concurrency in args.concurrency:
                    best: dict[str, dict[str, float]] = {}
                    for round_index in range(args.rounds):
                        # alternate which server goes first so drift favours neither
                        order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                        for name in order:
                            got = measure(model, servers[name], args.protocol, concurrency, args.seconds, workdir)
                            if name not in best or got["throughput"] > best[name]["throughput"]:
                                best[name] = got
                    row = {
                        "model": model,
                        "protocol": args.protocol,
                        "concurrency": concurrency,
                        "airtower": best["airtower"],
                        "triton": best["triton"],
                        "throughput_ratio": best["airtower"]["throughput"] / best["triton"]["throughput"],
                        "p99_ratio": best["airtower"]["p99_us"] / best["triton"]["p99_us"],
                    }
                    results.append(row)
                    mine, theirs = best["airtower"], best["triton"]
                    print(
                        f"{model:16s} {args.protocol:4s} c={concurrency:<3d} "
                        f"airtower {mine['throughput']:9.0f} infer/s p99 {mine['p99_us']:7.0f} us | "
                        f"triton {theirs['throughput']:9.0f} infer/s p99 {theirs['p99_us']:7.0f} us | "
                        f"throughput x{row['throughput_ratio']:.2f}  p99 x{row['p99_ratio']:.2f}",
                        flush=True,
                    )
        finally:
            stop(ours)
            stop(ref)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
