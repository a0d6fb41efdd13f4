"""airtower vs the reference Triton on the same Python model, measured with perf_analyzer.

    .venv/bin/python bench/run.py [--concurrency 1 4 16] [--rounds 2] [--protocol http|grpc]

Both servers load the same model repository (the example `add_sub` Python model, two FP32
inputs of 16 elements, max_batch_size 0; `add_sub_batched`, the same model with
max_batch_size 8; `add_sub_dynamic`, max_batch_size 8 with the dynamic batcher; and the example
`accumulator`, a stateful model behind the sequence batcher, which perf_analyzer drives with
sequences of ``SEQUENCE_LENGTH`` requests, each sequence pinned to one of its c streams). For each
concurrency the two servers are measured in turn, alternating which goes first, ``--rounds``
times. Each measurement records perf_analyzer's throughput and p99 and the
server's own CPU time per inference (process CPU time, including Triton's Python stub
processes, divided by the inferences its statistics extension counted). The script prints the
median of each and the ratios (airtower / reference), and writes bench/results/latest.json
(latest-grpc.json for ``--protocol grpc``).
The reference comes from ../shared/reference/setup.sh (TRITON_REF, default /tmp/triton-ref).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from servers import EXAMPLES, REF, ROOT, cpu_seconds, median_of, start, stop

#: Requests per sequence for the models behind the sequence batcher.
SEQUENCE_LENGTH = 10
SEQUENCE_MODELS = ("accumulator",)


def model_arguments(model: str) -> list[str]:
    """perf_analyzer's arguments that ``model`` needs (sequences for a stateful model)."""
    return ["--sequence-length", str(SEQUENCE_LENGTH)] if model in SEQUENCE_MODELS else []


def make_repository(directory: Path) -> Path:
    """The add_sub model three times: as shipped (max_batch_size 0), with max_batch_size 8, and
    with max_batch_size 8 and the dynamic batcher (``dynamic_batching { }``, Triton's defaults);
    and the accumulator as shipped."""
    repository = directory / "bench_repository"
    shutil.copytree(EXAMPLES / "add_sub", repository / "add_sub")
    for name in SEQUENCE_MODELS:
        shutil.copytree(EXAMPLES / name, repository / name)
    for name, extra in (("add_sub_batched", ""), ("add_sub_dynamic", "dynamic_batching { }\n")):
        copy = repository / name
        shutil.copytree(EXAMPLES / "add_sub", copy)
        config = (copy / "config.pbtxt").read_text()
        config = config.replace('name: "add_sub"', f'name: "{name}"')
        config = config.replace("max_batch_size: 0", "max_batch_size: 8")
        (copy / "config.pbtxt").write_text(config + extra)
    return repository


def inference_count(url: str, model: str) -> int:
    with urllib.request.urlopen(f"http://{url}/v2/models/{model}/stats", timeout=10) as response:
        return int(json.load(response)["model_stats"][0]["inference_count"])


def measure(
    model: str, urls: dict[str, str], pid: int, protocol: str, concurrency: int, seconds: float, workdir: Path
) -> dict[str, float]:
    """One perf_analyzer run over ``protocol`` (``urls[protocol]``); statistics are read over HTTP."""
    url, stats_url = urls[protocol], urls["http"]
    cpu_before, count_before = cpu_seconds(pid), inference_count(stats_url, model)
    out = workdir / f"pa-{time.monotonic_ns()}.csv"
    args = [str(REF / "bin" / "perf_analyzer"), "-m", model, "-u", url, "-i", protocol,
            "--concurrency-range", str(concurrency), "--measurement-interval", str(int(seconds * 1000)),
            "--percentile", "99", "--stability-percentage", "50", "--max-trials", "20", "-f", str(out),
            *model_arguments(model)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {url}:\n{done.stdout}\n{done.stderr}")
    cpu = cpu_seconds(pid) - cpu_before
    count = inference_count(stats_url, model) - count_before
    with out.open() as handle:
        row = next(csv.DictReader(handle))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p99_us": float(row["p99 latency"]),
        "cpu_us_per_inference": cpu / max(count, 1) * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0, help="perf_analyzer measurement window")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument(
        "--models", nargs="+", default=["add_sub", "add_sub_batched", "add_sub_dynamic", *SEQUENCE_MODELS]
    )
    args = parser.parse_args()
    if not (REF / "bin" / "perf_analyzer").exists():
        print(f"no reference Triton in {REF}: run `make reference` first", file=sys.stderr)
        return 2
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="airtower-bench-") as tmp:
        workdir = Path(tmp)
        repository = make_repository(workdir)
        ours, our_port, our_grpc = start("airtower", repository, workdir / "airtower.log")
        try:
            ref, ref_port, ref_grpc = start("triton", repository, workdir / "triton.log")
        except BaseException:
            stop(ours)
            raise
        try:
            servers = {
                "airtower": ({"http": f"127.0.0.1:{our_port}", "grpc": f"127.0.0.1:{our_grpc}"}, ours.pid),
                "triton": ({"http": f"127.0.0.1:{ref_port}", "grpc": f"127.0.0.1:{ref_grpc}"}, ref.pid),
            }
            # Warm-up: each server serves each model for a moment before anything counts, so that
            # first-request costs (lazy imports, caches, connection set-up) are in neither's figures.
            for model in args.models:
                for urls, pid in servers.values():
                    measure(model, urls, pid, args.protocol, max(args.concurrency), 1.0, workdir)
            for model in args.models:
                for concurrency in args.concurrency:
                    runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
                    ratios: list[float] = []
                    for round_index in range(args.rounds):
                        # alternate which server goes first so drift favours neither
                        order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
                        for name in order:
                            urls, pid = servers[name]
                            runs[name].append(
                                measure(model, urls, pid, args.protocol, concurrency, args.seconds, workdir)
                            )
                        ratios.append(runs["airtower"][-1]["throughput"] / runs["triton"][-1]["throughput"])
                    mine, theirs = median_of(runs["airtower"]), median_of(runs["triton"])
                    row = {
                        "model": model,
                        "protocol": args.protocol,
                        "concurrency": concurrency,
                        "airtower": mine,
                        "triton": theirs,
                        "rounds": runs,
                        "throughput_ratio": statistics.median(ratios),
                        "p99_ratio": mine["p99_us"] / theirs["p99_us"],
                        "cpu_ratio": mine["cpu_us_per_inference"] / theirs["cpu_us_per_inference"],
                    }
                    results.append(row)
                    print(
                        f"{model:16s} {args.protocol:4s} c={concurrency:<3d} "
                        f"airtower {mine['throughput']:7.0f}/s p99 {mine['p99_us']:6.0f}us "
                        f"cpu {mine['cpu_us_per_inference']:5.0f}us | "
                        f"triton {theirs['throughput']:7.0f}/s p99 {theirs['p99_us']:6.0f}us "
                        f"cpu {theirs['cpu_us_per_inference']:5.0f}us | "
                        f"throughput x{row['throughput_ratio']:.2f} p99 x{row['p99_ratio']:.2f} "
                        f"cpu x{row['cpu_ratio']:.2f}",
                        flush=True,
                    )
        finally:
            stop(ours)
            stop(ref)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    name = "latest.json" if args.protocol == "http" else f"latest-{args.protocol}.json"
    (out_dir / name).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
