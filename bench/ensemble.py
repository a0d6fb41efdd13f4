"""An ensemble against the same steps called one by one by the client (issue 5), on airtower.

    .venv/bin/python bench/ensemble.py [--pipelines chain image_pipeline] [--concurrency 1 4 16]
                                       [--rounds 3] [--seconds 3] [--protocol http|grpc] [--no-perf-analyzer]

One airtower server loads a temporary model repository with two pipelines:

* ``chain`` (default): three Python steps ``step0`` -> ``step1`` -> ``step2``, each a copy of the example
  ``add_sub`` model (two FP32 inputs of 16 elements; OUTPUT0 = sum, OUTPUT1 = difference; one instance each),
  and the ensemble ``chain`` that wires step k's outputs into step k+1's inputs. The steps cost ~20 µs each,
  so the network hops and the client's own work are what the ensemble removes.
* ``image_pipeline`` (``--pipelines image_pipeline``): the example ensemble preprocess -> resnet50 ->
  postprocess on a 224 x 224 image (needs ``make examples``). resnet50 takes ~120 ms on this CPU, so the
  hops are lost in it: expect a ratio near 1.

Both sides are driven by the same Python client (tritonclient, ``--protocol``; one client and one thread per
unit of concurrency, each calling in a closed loop): "ensemble" sends one request to the ensemble;
"client chain" sends the steps' requests in turn, feeding each step the previous one's outputs, exactly as
the ensemble's ``input_map`` / ``output_map`` do. Both are checked to give the same outputs first. For each
concurrency the two run in turn (the order alternates between rounds), ``--rounds`` times; the medians are
kept. Each run reports pipelines/s, median and p99 latency, and the server's and this client's CPU time per
pipeline. perf_analyzer (from TRITON_REF, default /tmp/triton-ref) also measures the ensemble alone, as a
reference for what a C++ client gets. Results go to bench/results/ensemble.json. Target (issue 5): the
ensemble faster than the client chain.
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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from servers import EXAMPLES, REF, ROOT, cpu_seconds, median_of, own_cpu_seconds, start, stop

Tensors = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class Step:
    """One ensemble step: ``input_map`` (model input -> pipeline tensor), ``output_map`` (model output -> tensor)."""

    model: str
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass(frozen=True)
class Pipeline:
    ensemble: str
    steps: tuple[Step, ...]
    outputs: tuple[str, ...]  # the ensemble's outputs
    inputs: Callable[[], Tensors]  # the ensemble's inputs, made once per client
    concurrency: tuple[int, ...]
    min_window_s: float = 0.0


def chain_steps(length: int) -> tuple[Step, ...]:
    steps = []
    for index in range(length):
        source = ("INPUT0", "INPUT1") if index == 0 else (f"sum{index - 1}", f"diff{index - 1}")
        target = ("OUTPUT0", "OUTPUT1") if index == length - 1 else (f"sum{index}", f"diff{index}")
        steps.append(
            Step(
                f"step{index}",
                {"INPUT0": source[0], "INPUT1": source[1]},
                {"OUTPUT0": target[0], "OUTPUT1": target[1]},
            )
        )
    return tuple(steps)


def chain_inputs() -> Tensors:
    rng = np.random.default_rng(5)
    return {name: rng.standard_normal(16, dtype=np.float32) for name in ("INPUT0", "INPUT1")}


def image_inputs() -> Tensors:
    rng = np.random.default_rng(5)
    return {"IMAGE": rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)}


PIPELINES = {
    "chain": Pipeline("chain", chain_steps(3), ("OUTPUT0", "OUTPUT1"), chain_inputs, (1, 4, 16)),
    "image_pipeline": Pipeline(
        "image_pipeline",
        (
            Step("preprocess", {"IMAGE": "IMAGE"}, {"TENSOR": "preprocessed"}),
            Step("resnet50", {"input_0": "preprocessed"}, {"output_0": "scores"}),
            Step("postprocess", {"SCORES": "scores"}, {"TOP5": "TOP5"}),
        ),
        ("TOP5",),
        image_inputs,
        (1, 4),
        min_window_s=6.0,
    ),
}


# -- model repository ------------------------------------------------------------------------


CHAIN_IO = """input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 16 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 16 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 16 ] }
]
"""


def chain_config(name: str, pipeline: Pipeline) -> str:
    """The ensemble's config.pbtxt: ``CHAIN_IO`` and one ``step`` per pipeline step."""

    def mapping(key: str, pairs: dict[str, str]) -> str:
        return " ".join(f'{key} {{ key: "{k}" value: "{v}" }}' for k, v in pairs.items())

    steps = ",\n".join(
        f'    {{ model_name: "{s.model}" model_version: -1 {mapping("input_map", s.input_map)} '
        f"{mapping('output_map', s.output_map)} }}"
        for s in pipeline.steps
    )
    scheduling = f"ensemble_scheduling {{\n  step [\n{steps}\n  ]\n}}\n"
    return f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 0\n{CHAIN_IO}{scheduling}'


def make_repository(directory: Path, pipelines: list[str]) -> Path:
    repository = directory / "ensemble_repository"
    repository.mkdir()
    if "chain" in pipelines:
        pipeline = PIPELINES["chain"]
        for step in pipeline.steps:
            shutil.copytree(EXAMPLES / "add_sub", repository / step.model, ignore=shutil.ignore_patterns("__pycache__"))
            config = (EXAMPLES / "add_sub" / "config.pbtxt").read_text()
            (repository / step.model / "config.pbtxt").write_text(
                config.replace('name: "add_sub"', f'name: "{step.model}"')
            )
        (repository / "chain").mkdir()
        (repository / "chain" / "1").mkdir()
        (repository / "chain" / "config.pbtxt").write_text(chain_config("chain", pipeline))
    if "image_pipeline" in pipelines:
        if not (EXAMPLES / "resnet50" / "1" / "model.onnx").exists():
            raise SystemExit("examples/model_repository/resnet50/1/model.onnx is missing: run `make examples` first")
        for model in ("preprocess", "resnet50", "postprocess", "image_pipeline"):
            shutil.copytree(EXAMPLES / model, repository / model, ignore=shutil.ignore_patterns("__pycache__"))
    return repository


# -- server ------------------------------------------------------------------------------------


# -- client ------------------------------------------------------------------------------------


class Client:
    """One tritonclient connection that runs a pipeline either as the ensemble or step by step."""

    def __init__(self, protocol: str, url: str) -> None:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        self.module: Any = module
        self.protocol = protocol
        self.client: Any = module.InferenceServerClient(url)

    def infer(self, model: str, tensors: Tensors, inputs: dict[str, str], outputs: dict[str, str]) -> Tensors:
        """Call ``model`` with ``inputs`` (model input -> tensor name); return ``outputs`` (model output -> name)."""
        from tritonclient.utils import np_to_triton_dtype

        request = []
        for name, source in inputs.items():
            array = tensors[source]
            one = self.module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            one.set_data_from_numpy(array)
            request.append(one)
        if self.protocol == "http":
            wanted = [self.module.InferRequestedOutput(name, binary_data=True) for name in outputs]
        else:
            wanted = [self.module.InferRequestedOutput(name) for name in outputs]
        result = self.client.infer(model, request, outputs=wanted)
        return {target: result.as_numpy(name) for name, target in outputs.items()}

    def ensemble(self, pipeline: Pipeline, tensors: Tensors) -> Tensors:
        names = {name: name for name in tensors}
        return self.infer(pipeline.ensemble, tensors, names, {name: name for name in pipeline.outputs})

    def chain(self, pipeline: Pipeline, tensors: Tensors) -> Tensors:
        tensors = dict(tensors)
        for step in pipeline.steps:
            tensors.update(self.infer(step.model, tensors, step.input_map, step.output_map))
        return {name: tensors[name] for name in pipeline.outputs}

    def close(self) -> None:
        self.client.close()


def closed_loop(
    protocol: str, url: str, pipeline: Pipeline, mode: str, stop_at: threading.Event
) -> list[tuple[float, float]]:
    """Run one mode of a pipeline until ``stop_at`` is set; return (start, end) of each call."""
    calls: list[tuple[float, float]] = []
    client = Client(protocol, url)
    try:
        call = client.ensemble if mode == "ensemble" else client.chain
        tensors = pipeline.inputs()
        while not stop_at.is_set():
            start = time.perf_counter()
            call(pipeline, tensors)
            calls.append((start, time.perf_counter()))
    finally:
        client.close()
    return calls


def client_run(
    protocol: str, url: str, pid: int, pipeline: Pipeline, mode: str, concurrency: int, warmup: float, window: float
) -> dict[str, float]:
    """``concurrency`` closed-loop clients (threads) for ``warmup`` + ``window`` seconds; figures cover the window."""
    stop_at = threading.Event()
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(closed_loop, protocol, url, pipeline, mode, stop_at) for _ in range(concurrency)]
        try:
            time.sleep(warmup)
            begin, server_before, client_before = time.perf_counter(), cpu_seconds(pid), own_cpu_seconds()
            time.sleep(window)
            end, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(pid), own_cpu_seconds()
        finally:
            stop_at.set()
        calls = [call for future in futures for call in future.result()]
    latencies = sorted(e - s for s, e in calls if begin <= e <= end)
    count = max(len(latencies), 1)
    return {
        "throughput": len(latencies) / (end - begin),
        "p50_us": statistics.median(latencies) * 1e6 if latencies else 0.0,
        "p99_us": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1e6 if latencies else 0.0,
        "server_cpu_us": (server_cpu - server_before) / count * 1e6,
        "client_cpu_us": (client_cpu - client_before) / count * 1e6,
    }


def check_same_outputs(protocol: str, url: str, pipeline: Pipeline) -> None:
    client = Client(protocol, url)
    try:
        tensors = pipeline.inputs()
        by_ensemble, by_chain = client.ensemble(pipeline, tensors), client.chain(pipeline, tensors)
    finally:
        client.close()
    for name in pipeline.outputs:
        if not np.array_equal(by_ensemble[name], by_chain[name]):
            raise RuntimeError(f"{pipeline.ensemble}: output {name} differs between the ensemble and the client chain")


def perf_analyzer(url: str, protocol: str, model: str, concurrency: int, window: float, workdir: Path) -> float:
    """perf_analyzer's throughput on the ensemble alone (0 when perf_analyzer is missing)."""
    binary = REF / "bin" / "perf_analyzer"
    if not binary.exists():
        return 0.0
    out = workdir / f"pa-{time.monotonic_ns()}.csv"
    args = [str(binary), "-m", model, "-u", url, "-i", protocol, "--concurrency-range", str(concurrency),
            "--measurement-interval", str(int(window * 1000)), "--stability-percentage", "50",
            "--max-trials", "10", "-f", str(out)]  # fmt: skip
    if model == "image_pipeline":
        args += ["--shape", "IMAGE:224,224,3"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {model}:\n{done.stdout}\n{done.stderr}")
    with out.open() as handle:
        return float(next(csv.DictReader(handle))["Inferences/Second"])


# -- main --------------------------------------------------------------------------------------


def rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        "| pipeline | concurrency | ensemble /s | client chain /s | **ensemble / chain** | "
        "p50 ensemble / chain | p99 ensemble / chain | server CPU per pipeline ens. / chain | "
        "client CPU per pipeline ens. / chain | perf_analyzer ensemble /s |"
    )
    print("\n" + header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for row in rows:
        ens, chain = row["ensemble"], row["chain"]
        print(
            f"| {row['pipeline']} | {row['concurrency']} | {rate(ens['throughput'])} | {rate(chain['throughput'])} | "
            f"**{row['ratio']:.2f}x** | {ens['p50_us'] / 1000:.2f} / {chain['p50_us'] / 1000:.2f} ms | "
            f"{ens['p99_us'] / 1000:.2f} / {chain['p99_us'] / 1000:.2f} ms | "
            f"{ens['server_cpu_us']:.0f} / {chain['server_cpu_us']:.0f} µs | "
            f"{ens['client_cpu_us']:.0f} / {chain['client_cpu_us']:.0f} µs | "
            f"{rate(row['perf_analyzer']) if row['perf_analyzer'] else '-'} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", nargs="+", choices=sorted(PIPELINES), default=["chain"])
    parser.add_argument("--concurrency", type=int, nargs="+", help="default: chain 1 4 16, image_pipeline 1 4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="measurement window (image_pipeline: at least 6)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument("--no-perf-analyzer", action="store_true", help="skip the perf_analyzer reference column")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="airtower-ensemble-") as tmp:
        workdir = Path(tmp)
        repository = make_repository(workdir, args.pipelines)
        server, http, grpc = start("airtower", repository, workdir / "airtower.log")
        try:
            url = f"127.0.0.1:{http if args.protocol == 'http' else grpc}"
            for name in args.pipelines:
                pipeline = PIPELINES[name]
                check_same_outputs(args.protocol, url, pipeline)
                window = max(args.seconds, pipeline.min_window_s)
                for concurrency in args.concurrency or pipeline.concurrency:
                    runs: dict[str, list[dict[str, float]]] = {"ensemble": [], "chain": []}
                    for round_index in range(args.rounds):
                        # alternate which mode goes first so drift favours neither
                        for mode in ("ensemble", "chain") if round_index % 2 == 0 else ("chain", "ensemble"):
                            runs[mode].append(
                                client_run(
                                    args.protocol, url, server.pid, pipeline, mode, concurrency, args.warmup, window
                                )
                            )
                    pa = 0.0
                    if not args.no_perf_analyzer:
                        pa = perf_analyzer(url, args.protocol, pipeline.ensemble, concurrency, window, workdir)
                    ens, chain = median_of(runs["ensemble"]), median_of(runs["chain"])
                    ratios = [
                        e["throughput"] / c["throughput"] for e, c in zip(runs["ensemble"], runs["chain"], strict=True)
                    ]
                    row = {
                        "pipeline": name,
                        "protocol": args.protocol,
                        "concurrency": concurrency,
                        "ensemble": ens,
                        "chain": chain,
                        "ratio": statistics.median(ratios),
                        "perf_analyzer": pa,
                        "rounds": runs,
                    }
                    rows.append(row)
                    print(
                        f"{name:14s} {args.protocol:4s} c={concurrency:<3d} ensemble {rate(ens['throughput']):>6s}/s "
                        f"p99 {ens['p99_us'] / 1000:7.2f}ms | chain {rate(chain['throughput']):>6s}/s "
                        f"p99 {chain['p99_us'] / 1000:7.2f}ms | ensemble/chain x{row['ratio']:.2f}"
                        + (f" | perf_analyzer ensemble {rate(pa)}/s" if pa else ""),
                        flush=True,
                    )
        finally:
            stop(server)
    print_table(rows)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "ensemble.json").write_text(json.dumps(rows, indent=2))
    met = all(row["ratio"] > 1.0 for row in rows)
    print(f"\ntarget (ensemble faster than the client chain at every concurrency): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
