"""A decoupled (streaming) Python model on airtower vs the reference Triton, over gRPC ModelStreamInfer (issue 5).

    .venv/bin/python bench/streaming.py [--responses 16 64] [--concurrency 1 4] [--rounds 3] [--seconds 3]
                                        [--sender execute|thread]

Both servers load the same temporary model repository: ``streamer``, a decoupled Python model
(``model_transaction_policy { decoupled: true }``, one CPU instance) that answers a request whose INT32 input
``N`` holds n with n responses, each a 16-element FP32 tensor ``OUT`` (the response's index), then a final
flags-only send (``TRITONSERVER_RESPONSE_COMPLETE_FINAL``). With ``--sender execute`` (default) the responses
are sent from ``execute`` itself; with ``--sender thread`` from a thread started by ``execute`` (as the example
``token_streamer`` does). The model only uses triton_python_backend_utils, so it runs unchanged on both.

The client is tritonclient.grpc in this process: one ``start_stream`` per unit of concurrency, each with
one request in flight (``async_stream_infer(..., enable_empty_final_response=True)``); the stream's callback
sends the next request as soon as the (empty) final response arrives. Per request it records the time to the
first response; per response its arrival time. A run warms up for ``--warmup`` seconds, then counts over
``--seconds``: responses/s (responses that arrived in the window), requests/s, time to first response (median
and p99 over the requests sent in the window) and each server's CPU time per response (process CPU, Triton's
Python stub processes included). For each N and concurrency the two servers are measured in turn (the order
alternates between rounds), ``--rounds`` times; the medians are kept and the ratios printed (airtower / Triton).
The reference comes from TRITON_REF (default /tmp/triton-ref). Results go to bench/results/streaming.json.
Target (issue 5): airtower >= 1.5x Triton's responses/s.

``--base REV`` also serves airtower at another git revision (checked out into a temporary worktree and
compiled there, as bench/ab.py does) as the server ``base``, to judge a change in one run:
``--servers airtower --base HEAD`` prints the working tree's ratios to HEAD's.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from servers import REF, ROOT, build, cpu_seconds, median_of, own_cpu_seconds, start, stop, worktree

MODEL = "streamer"
#: A request in perf_analyzer's --profile-export-file: its timestamp and its first response's (ns).
PROFILE_REQUEST = re.compile(r'"timestamp":(\d+),"request_inputs":\{[^}]*\},"response_timestamps":\[(\d+)')

MODEL_PY = '''"""streamer: answers a request holding N with N responses (OUT = the index), then a final flag."""

import json
import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.from_thread = parameters.get("sender", {}).get("string_value") == "thread"

    def execute(self, requests):
        for request in requests:
            count = int(pb_utils.get_input_tensor_by_name(request, "N").as_numpy().reshape(-1)[0])
            sender = request.get_response_sender()
            if self.from_thread:
                threading.Thread(target=self.stream, args=(count, sender), daemon=True).start()
            else:
                self.stream(count, sender)
        return None

    def stream(self, count, sender):
        for index in range(count):
            out = pb_utils.Tensor("OUT", np.full(16, index, dtype=np.float32))
            sender.send(pb_utils.InferenceResponse([out]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
'''

CONFIG = """name: "streamer"
backend: "python"
max_batch_size: 0
model_transaction_policy { decoupled: true }
input [ { name: "N" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 16 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
parameters { key: "sender" value: { string_value: "%s" } }
"""


def make_repository(directory: Path, sender: str) -> Path:
    repository = directory / "streaming_repository"
    version = repository / MODEL / "1"
    version.mkdir(parents=True)
    (version / "model.py").write_text(MODEL_PY)
    (repository / MODEL / "config.pbtxt").write_text(CONFIG % sender)
    return repository


# -- servers -----------------------------------------------------------------------------------


def inference_count(http_url: str) -> int:
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{MODEL}/stats", timeout=10) as response:
        return int(json.load(response)["model_stats"][0]["inference_count"])


def percentile(ordered: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of the (sorted) values lie; 0 for none."""
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


# -- client ------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One gRPC stream keeping one request in flight; the callback sends the next request."""

    url: str
    count: int
    requests: list[tuple[float, float, float, int]] = field(default_factory=list)  # (sent, first, final, responses)
    arrivals: list[float] = field(default_factory=list)
    error: str | None = None

    def __post_init__(self) -> None:
        import tritonclient.grpc as grpcclient

        self.client: Any = grpcclient.InferenceServerClient(self.url)
        tensor = grpcclient.InferInput("N", [1], "INT32")
        tensor.set_data_from_numpy(np.array([self.count], dtype=np.int32))
        self.inputs = [tensor]
        self.stopping = False
        self.idle = threading.Event()
        self.sent, self.first, self.received = 0.0, 0.0, 0

    def begin(self) -> None:
        self.client.start_stream(callback=self.on_response)
        self.send()

    def send(self) -> None:
        self.sent, self.first, self.received = time.perf_counter(), 0.0, 0
        self.client.async_stream_infer(MODEL, self.inputs, enable_empty_final_response=True)

    def on_response(self, result: Any, error: Any) -> None:
        now = time.perf_counter()
        if error is not None:
            self.error = str(error)
            self.idle.set()
            return
        response = result.get_response()
        if response.outputs:
            self.arrivals.append(now)
            self.received += 1
            if not self.first:
                self.first = now
        if response.parameters["triton_final_response"].bool_param:
            self.requests.append((self.sent, self.first, now, self.received))
            if self.stopping:
                self.idle.set()
            else:
                self.send()

    def end(self) -> None:
        self.stopping = True
        self.idle.wait(60)
        self.client.stop_stream()
        self.client.close()


def client_run(url: str, pid: int, count: int, concurrency: int, warmup: float, window: float) -> dict[str, float]:
    streams = [Stream(url, count) for _ in range(concurrency)]
    try:
        for stream in streams:
            stream.begin()
        time.sleep(warmup)
        begin, server_before, client_before = time.perf_counter(), cpu_seconds(pid), own_cpu_seconds()
        time.sleep(window)
        end, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(pid), own_cpu_seconds()
    finally:
        for stream in streams:
            stream.end()
    errors = [stream.error for stream in streams if stream.error]
    if errors:
        raise RuntimeError(f"stream failed: {errors[0]}")
    requests = [r for s in streams for r in s.requests if begin <= r[0] <= end]
    short = [received for *_, received in requests if received != count]
    if short:
        raise RuntimeError(f"a request got {short[0]} responses instead of {count}")
    responses = sum(begin <= t <= end for s in streams for t in s.arrivals)
    firsts = sorted((first - sent) * 1e6 for sent, first, _, _ in requests)
    finals = sorted((final - sent) * 1e6 for sent, _, final, _ in requests)
    return {
        "responses_per_s": responses / (end - begin),
        "requests_per_s": len(requests) / (end - begin),
        "ttfr_p50_us": percentile(firsts, 0.5),
        "ttfr_p99_us": percentile(firsts, 0.99),
        "stream_p50_us": percentile(finals, 0.5),
        "server_cpu_us_per_response": (server_cpu - server_before) / max(responses, 1) * 1e6,
        "client_cpu_us_per_response": (client_cpu - client_before) / max(responses, 1) * 1e6,
    }


def perf_analyzer_run(
    urls: dict[str, str], pid: int, count: int, concurrency: int, window: float, workdir: Path
) -> dict[str, float]:
    """One ``perf_analyzer --streaming`` run.

    perf_analyzer 2.51 says it uses "the first response for measuring latency" of a decoupled model, but its
    latency figures match the time to the final response; the time to the first response is computed from its
    ``--profile-export-file`` (request and response timestamps).

    CPU figures cover the whole run (its trials included), per response counted by the statistics extension.
    """
    data = workdir / f"n{count}.json"
    data.write_text(json.dumps({"data": [{"N": [count]}]}))
    out = workdir / f"pa-{time.monotonic_ns()}.csv"
    profile = out.with_suffix(".json")
    args = [str(REF / "bin" / "perf_analyzer"), "-m", MODEL, "-u", urls["grpc"], "-i", "grpc", "--streaming",
            "--input-data", str(data), "--concurrency-range", str(concurrency), "--measurement-interval",
            str(int(window * 1000)), "--percentile", "99", "--stability-percentage", "50", "--max-trials", "10",
            "-f", str(out), "--profile-export-file", str(profile)]  # fmt: skip
    server_before, client_before = cpu_seconds(pid), own_cpu_seconds(resource.RUSAGE_CHILDREN)
    requests_before = inference_count(urls["http"])
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {urls['grpc']}:\n{done.stdout}\n{done.stderr}")
    server_cpu, client_cpu = cpu_seconds(pid) - server_before, own_cpu_seconds(resource.RUSAGE_CHILDREN) - client_before
    responses = max((inference_count(urls["http"]) - requests_before) * count, 1)
    with out.open() as handle:
        row = next(csv.DictReader(handle))
    # read with a pattern rather than json: the export holds every response's outputs (tens of MB at N = 64)
    firsts = sorted((int(first) - int(sent)) / 1000 for sent, first in PROFILE_REQUEST.findall(profile.read_text()))
    profile.unlink()
    return {
        "responses_per_s": float(row["Response Throughput"]),
        "requests_per_s": float(row["Inferences/Second"]),
        "ttfr_p50_us": percentile(firsts, 0.5),
        "ttfr_p99_us": percentile(firsts, 0.99),
        "stream_p50_us": float(row["p50 latency"]),  # perf_analyzer: to the final response
        "server_cpu_us_per_response": server_cpu / responses * 1e6,
        "client_cpu_us_per_response": client_cpu / responses * 1e6,
    }


def measure(
    client: str, urls: dict[str, str], pid: int, count: int, concurrency: int, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    if client == "perf_analyzer":
        return perf_analyzer_run(urls, pid, count, concurrency, args.pa_seconds, workdir)
    return client_run(urls["grpc"], pid, count, concurrency, args.warmup, args.seconds)


# -- main --------------------------------------------------------------------------------------


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        "| client | N | concurrency | airtower responses/s | Triton responses/s | **responses/s ratio** | "
        "TTFR p50 airtower / Triton | TTFR p99 airtower / Triton | whole stream p50 airtower / Triton | "
        "server CPU per response airtower / Triton | "
        "client CPU per response airtower / Triton |"
    )
    print("\n" + header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for row in rows:
        ours, ref = row["airtower"], row["triton"]
        print(
            f"| {row['client']} | {row['responses']} | {row['concurrency']} | {ours['responses_per_s']:.0f} | "
            f"{ref['responses_per_s']:.0f} | **{row['ratio']:.2f}x** | "
            f"{ours['ttfr_p50_us'] / 1000:.2f} / {ref['ttfr_p50_us'] / 1000:.2f} ms | "
            f"{ours['ttfr_p99_us'] / 1000:.2f} / {ref['ttfr_p99_us'] / 1000:.2f} ms | "
            f"{ours['stream_p50_us'] / 1000:.2f} / {ref['stream_p50_us'] / 1000:.2f} ms | "
            f"{ours['server_cpu_us_per_response']:.0f} / {ref['server_cpu_us_per_response']:.0f} µs | "
            f"{ours['client_cpu_us_per_response']:.0f} / {ref['client_cpu_us_per_response']:.0f} µs |"
        )


def sweep(
    client: str, servers: dict[str, tuple[dict[str, str], int]], args: argparse.Namespace, workdir: Path
) -> list[dict[str, Any]]:
    """Every N and concurrency with one client: the servers in turn, ``args.rounds`` times."""
    rows: list[dict[str, Any]] = []
    for count in args.responses:
        for concurrency in args.concurrency:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
            for round_index in range(args.rounds):
                # alternate which server goes first so drift favours neither
                for name in list(servers) if round_index % 2 == 0 else list(reversed(servers)):
                    urls, pid = servers[name]
                    runs[name].append(measure(client, urls, pid, count, concurrency, args, workdir))
            medians = {name: median_of(one) for name, one in runs.items()}
            row: dict[str, Any] = {"client": client, "responses": count, "concurrency": concurrency}
            row |= {"sender": args.sender, **medians, "rounds": runs}
            line = f"{client:13s} N={count:<4d} c={concurrency:<3d} " + " | ".join(
                f"{name} {m['responses_per_s']:6.0f} responses/s TTFR p50 {m['ttfr_p50_us'] / 1000:6.2f}ms "
                f"p99 {m['ttfr_p99_us'] / 1000:6.2f}ms cpu {m['server_cpu_us_per_response']:4.0f}us/response"
                for name, m in medians.items()
            )
            for other in ("triton", "base"):
                if other in runs and "airtower" in runs:
                    pairs = zip(runs["airtower"], runs[other], strict=True)
                    ratio = statistics.median(a["responses_per_s"] / t["responses_per_s"] for a, t in pairs)
                    row["ratio" if other == "triton" else "ratio_to_base"] = ratio
                    line += f" | responses/s x{ratio:.2f} ({other})"
            rows.append(row)
            print(line, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, nargs="+", default=[16, 64], help="responses per request (N)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4], help="streams, one request each")
    parser.add_argument(
        "--clients", nargs="+", choices=["perf_analyzer", "python"], default=["perf_analyzer", "python"]
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="the Python client's measurement window")
    parser.add_argument("--pa-seconds", type=float, default=1.0, help="perf_analyzer's measurement window")
    parser.add_argument("--warmup", type=float, default=1.0, help="the Python client's warm-up")
    parser.add_argument("--sender", choices=["execute", "thread"], default="execute")
    parser.add_argument("--servers", nargs="+", choices=["airtower", "triton"], default=["airtower", "triton"])
    parser.add_argument("--base", help="also serve airtower at this git revision (server 'base')")
    args = parser.parse_args()
    if not (REF / "bin" / "perf_analyzer").exists():
        print(f"no reference Triton in {REF}: run `make reference` first", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="airtower-streaming-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        repository = make_repository(workdir, args.sender)
        sources: dict[str, Path | None] = dict.fromkeys(args.servers)  # server → its src (None: this tree)
        if args.base:
            sources["base"] = stack.enter_context(worktree(args.base, workdir / "base"))
            build(sources["base"])
        try:
            servers: dict[str, tuple[dict[str, str], int]] = {}
            for name, src in sources.items():
                process, http, grpc = start(name, repository, workdir / f"{name}.log", src)
                processes.append(process)
                servers[name] = ({"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}"}, process.pid)
            for client in args.clients:
                rows += sweep(client, servers, args, workdir)
        except BaseException:
            for name in sources:  # the logs go with the temporary directory: show their ends
                log = workdir / f"{name}.log"
                if log.exists():
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    print(f"--- end of {name}'s log ---\n{tail}", file=sys.stderr)
            raise
        finally:
            for process in processes:
                stop(process)
    if "triton" in sources and "airtower" in sources:
        print_table(rows)
        met = all(row["ratio"] >= 1.5 for row in rows)
        print(f"\ntarget (airtower >= 1.5x Triton's responses/s everywhere): {'met' if met else 'NOT met'}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "streaming.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
