"""What the dynamic batcher buys on compute-bound ONNX models, measured with perf_analyzer.

    .venv/bin/python bench/batching.py [--models mlp resnet50] [--concurrency 1 4 16] [--rounds 2]
                                       [--seconds 2] [--queue-delay-us 0 500] [--protocol http|grpc]

One airtower server loads a temporary model repository holding each model twice: ``<m>`` without
``dynamic_batching`` (Triton's default scheduler, one request per execution) and ``<m>_batched``
with ``dynamic_batching { max_queue_delay_microseconds: 0 }`` (``<m>_batched_<d>us`` for each other
``--queue-delay-us``). The models:

* ``mlp``: FP32 [batch, 256] -> Gemm 2048 + Relu -> Gemm 2048 + Relu -> Gemm 10, weights from a fixed
  seed (numpy default_rng), max_batch_size 32. At batch 1 each call streams its 19 MB of weights
  (a GEMV); at batch 16 the same weights serve 16 rows, so an item costs about 5x less.
* ``resnet50``: the example model (examples/model_repository/resnet50, ``make examples``),
  max_batch_size 8 as in its config. Convolutions are compute-bound on a CPU at any batch size.

Every model has one CPU instance and ``intra_op_thread_count`` = ``inter_op_thread_count`` = 1: on
a 2-core machine the server's event loop and perf_analyzer need the second core.

For each model and concurrency, perf_analyzer runs against the plain and the batched models in turn
(the order alternates between rounds), ``--rounds`` times; the medians are kept. The average batch
size is the statistics extension's ``inference_count`` / ``execution_count`` delta over a run. Right
after each run (server idle) onnxruntime is called directly in this process (same model file, same
session options, built from the same config by the backend's ``SessionSettings``) at the batch size
that run formed (rounded; 1 for the plain model), and the script prints served / direct throughput
(``--mlp-widths`` changes the MLP). Results go to
bench/results/batching.json. perf_analyzer comes from the reference Triton (TRITON_REF, default
/tmp/triton-ref). Targets (issue 4): batched >= 3x plain at concurrency 16 on the MLP, and served
throughput >= 85% of direct onnxruntime at the batch size formed.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from servers import EXAMPLES, REF, ROOT, cpu_seconds, median_of, own_cpu_seconds, start, stop

MLP_SEED = 20261125
MLP_WIDTHS = (256, 2048, 2048, 10)  # input, hidden..., output
MLP_MAX_BATCH_SIZE = 32
#: Instance and thread settings shared by every model (and by the direct onnxruntime session).
INSTANCE_CONFIG = """instance_group [ { kind: KIND_CPU, count: 1 } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters { key: "inter_op_thread_count" value: { string_value: "1" } }
"""


@dataclass(frozen=True)
class ModelSpec:
    concurrency: tuple[int, ...]
    rounds: int
    min_window_s: float  # perf_analyzer's window must hold many requests even at high latency


SPECS = {
    "mlp": ModelSpec((1, 2, 4, 8, 16, 32), 2, 0.0),
    "resnet50": ModelSpec((1, 4, 8, 16), 1, 5.0),
}


# -- model repository ------------------------------------------------------------------------


def mlp_model_bytes(widths: tuple[int, ...] = MLP_WIDTHS) -> bytes:
    """The MLP as ONNX bytes: Gemm + Relu per hidden layer, He-initialised weights from ``MLP_SEED``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(MLP_SEED)
    nodes, initializers = [], []
    x = "INPUT0"
    layers = list(itertools.pairwise(widths))
    for index, (fan_in, fan_out) in enumerate(layers):
        last = index == len(layers) - 1
        weight = rng.standard_normal((fan_in, fan_out), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        bias = rng.standard_normal(fan_out, dtype=np.float32) * np.float32(0.01)
        initializers += [numpy_helper.from_array(weight, f"w{index}"), numpy_helper.from_array(bias, f"b{index}")]
        gemm = "OUTPUT0" if last else f"gemm{index}"
        nodes.append(helper.make_node("Gemm", [x, f"w{index}", f"b{index}"], [gemm]))
        if not last:
            nodes.append(helper.make_node("Relu", [gemm], [f"relu{index}"]))
            x = f"relu{index}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", widths[-1]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="airtower-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def mlp_config(widths: tuple[int, ...] = MLP_WIDTHS) -> str:
    return f"""name: "mlp"
backend: "onnxruntime"
max_batch_size: {MLP_MAX_BATCH_SIZE}
input [ {{ name: "INPUT0", data_type: TYPE_FP32, dims: [ {widths[0]} ] }} ]
output [ {{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ {widths[-1]} ] }} ]
"""


def batched_name(model: str, delay_us: int) -> str:
    return f"{model}_batched" if delay_us == 0 else f"{model}_batched_{delay_us}us"


def make_repository(
    directory: Path, models: list[str], delays: list[int], mlp_widths: tuple[int, ...] = MLP_WIDTHS
) -> Path:
    """Each model as ``<m>`` (default scheduler) and ``<m>_batched...`` (dynamic batcher, one per delay).

    Inputs and outputs are spelled out in every config, so the backend's auto-complete does not turn
    the dynamic batcher on for the plain model (onnxruntime_backend does that for incomplete configs).
    """
    repository = directory / "batching_repository"
    for model in models:
        if model == "mlp":
            base, model_file = mlp_config(mlp_widths), directory / "mlp.onnx"
            model_file.write_bytes(mlp_model_bytes(mlp_widths))
        else:
            base = (EXAMPLES / model / "config.pbtxt").read_text()
            model_file = EXAMPLES / model / "1" / "model.onnx"
            if not model_file.exists():
                raise SystemExit(f"{model_file} is missing: run `make examples` first")
        variants = {model: ""} | {
            batched_name(model, delay): f"dynamic_batching {{ max_queue_delay_microseconds: {delay} }}\n"
            for delay in delays
        }
        for name, extra in variants.items():
            version = repository / name / "1"
            version.mkdir(parents=True)
            (version / "model.onnx").symlink_to(model_file.resolve())
            config = base.replace(f'name: "{model}"', f'name: "{name}"')
            (repository / name / "config.pbtxt").write_text(config + INSTANCE_CONFIG + extra)
    return repository


# -- server and perf_analyzer ------------------------------------------------------------------


def counts(http_url: str, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) from the statistics extension."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=10) as response:
        stats = json.load(response)["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def perf_analyzer(
    model: str, urls: dict[str, str], pid: int, protocol: str, concurrency: int, seconds: float, workdir: Path
) -> dict[str, float]:
    """One perf_analyzer run; the batch size and CPU figures cover the whole run (its trials included)."""
    cpu_before, (inferences_before, executions_before) = cpu_seconds(pid), counts(urls["http"], model)
    client_before = own_cpu_seconds(resource.RUSAGE_CHILDREN)
    out = workdir / f"pa-{time.monotonic_ns()}.csv"
    args = [str(REF / "bin" / "perf_analyzer"), "-m", model, "-u", urls[protocol], "-i", protocol,
            "--concurrency-range", str(concurrency), "--measurement-interval", str(int(seconds * 1000)),
            "--percentile", "99", "--stability-percentage", "50", "--max-trials", "20", "-f", str(out)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on {model}:\n{done.stdout}\n{done.stderr}")
    cpu, client = cpu_seconds(pid) - cpu_before, own_cpu_seconds(resource.RUSAGE_CHILDREN) - client_before
    inferences_after, executions_after = counts(urls["http"], model)
    inferences, executions = inferences_after - inferences_before, executions_after - executions_before
    with out.open() as handle:
        row = next(csv.DictReader(handle))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p99_us": float(row["p99 latency"]),
        "avg_batch": inferences / max(executions, 1),
        "server_cpu_us_per_inference": cpu / max(inferences, 1) * 1e6,
        "client_cpu_us_per_inference": client / max(inferences, 1) * 1e6,
    }


# -- onnxruntime in-process ------------------------------------------------------------------


class DirectSession:
    """The model's onnxruntime session built as the backend builds it (same config, same options)."""

    def __init__(self, repository: Path, model: str) -> None:
        import onnxruntime as ort
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        from airtower.backends.onnxruntime import SessionSettings

        config = text_format.Parse((repository / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        options = SessionSettings.from_config(config).session_options(f"{model}:direct")
        path = repository / model / "1" / "model.onnx"
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = {io.name: tuple(io.dims) for io in config.input}
        self.outputs = [io.name for io in config.output]

    def throughput(self, batch: int, seconds: float) -> float:
        """Inferences per second of ``session.run`` at ``batch``, over at least ``seconds`` (and 3 runs)."""
        rng = np.random.default_rng(batch)
        feed = {name: rng.standard_normal((batch, *dims), dtype=np.float32) for name, dims in self.inputs.items()}
        self.session.run(self.outputs, feed)  # warm-up
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < seconds:
            self.session.run(self.outputs, feed)
            runs += 1
        return runs * batch / (time.perf_counter() - start)


def measure(
    model: str,
    direct: DirectSession,
    urls: dict[str, str],
    pid: int,
    args: argparse.Namespace,
    concurrency: int,
    window: float,
    workdir: Path,
) -> dict[str, float]:
    """perf_analyzer on ``model``, then onnxruntime in-process (server idle) at the batch size it formed."""
    run = perf_analyzer(model, urls, pid, args.protocol, concurrency, window, workdir)
    run["direct_batch"] = max(1, round(run["avg_batch"]))
    run["direct_throughput"] = direct.throughput(int(run["direct_batch"]), args.direct_seconds)
    run["served_over_direct"] = run["throughput"] / run["direct_throughput"]
    return run


# -- main --------------------------------------------------------------------------------------


def rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        "| model | concurrency | plain infer/s | batched infer/s | batching speed-up | avg batch | "
        "direct ORT infer/s (at batch) | served/direct | p99 plain / batched |"
    )
    print("\n" + header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for row in rows:
        plain, batched = row["plain"], row["batched"]
        print(
            f"| {row['batched_model']} | {row['concurrency']} | {rate(plain['throughput'])} | "
            f"{rate(batched['throughput'])} | **{row['speedup']:.2f}x** | {batched['avg_batch']:.1f} | "
            f"{rate(batched['direct_throughput'])} ({batched['direct_batch']:.0f}) | "
            f"**{batched['served_over_direct']:.0%}** | "
            f"{plain['p99_us'] / 1000:.1f} / {batched['p99_us'] / 1000:.1f} ms |"
        )


def sweep(
    model: str, repository: Path, urls: dict[str, str], pid: int, args: argparse.Namespace, workdir: Path
) -> list[dict[str, Any]]:
    """Every concurrency of one model: plain and batched variants in turn, ``args.rounds`` times."""
    spec = SPECS[model]
    window = max(args.seconds, spec.min_window_s)
    variants = [model, *(batched_name(model, delay) for delay in args.queue_delay_us)]
    direct = DirectSession(repository, variants[-1])  # the variants differ only in their scheduler
    rows: list[dict[str, Any]] = []
    for concurrency in args.concurrency or spec.concurrency:
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        for round_index in range(args.rounds or spec.rounds):
            # alternate which model goes first so drift favours neither
            for name in variants if round_index % 2 == 0 else variants[::-1]:
                runs[name].append(measure(name, direct, urls, pid, args, concurrency, window, workdir))
        plain = median_of(runs[model])
        for name in variants[1:]:
            batched = median_of(runs[name])
            speedups = [b["throughput"] / p["throughput"] for b, p in zip(runs[name], runs[model], strict=True)]
            row = {
                "model": model,
                "batched_model": name,
                "protocol": args.protocol,
                "concurrency": concurrency,
                "plain": plain,
                "batched": batched,
                "speedup": statistics.median(speedups),
                "rounds": {key: runs[key] for key in (model, name)},
            }
            rows.append(row)
            print(
                f"{name:20s} c={concurrency:<3d} plain {plain['throughput']:6.0f}/s p99 {plain['p99_us'] / 1000:6.1f}ms"
                f" ({plain['served_over_direct']:4.0%} of direct) | batched {batched['throughput']:6.0f}/s "
                f"p99 {batched['p99_us'] / 1000:6.1f}ms batch {batched['avg_batch']:4.1f} "
                f"({batched['served_over_direct']:4.0%} of direct {batched['direct_throughput']:.0f}/s) | "
                f"x{row['speedup']:.2f}",
                flush=True,
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(SPECS), default=["mlp", "resnet50"])
    parser.add_argument(
        "--concurrency", type=int, nargs="+", help="for every model (default: mlp 1..32, resnet50 1 4 8 16)"
    )
    parser.add_argument(
        "--rounds", type=int, help="perf_analyzer runs per model and concurrency (default: mlp 2, resnet50 1)"
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="perf_analyzer measurement window (resnet50: at least 5)"
    )
    parser.add_argument("--queue-delay-us", type=int, nargs="+", default=[0], help="max_queue_delay_microseconds")
    parser.add_argument("--protocol", choices=["http", "grpc"], default="http")
    parser.add_argument(
        "--mlp-widths", type=int, nargs="+", default=list(MLP_WIDTHS), help="input, hidden layers, output"
    )
    parser.add_argument("--direct-seconds", type=float, default=1.5, help="per direct onnxruntime measurement")
    args = parser.parse_args()
    if not (REF / "bin" / "perf_analyzer").exists():
        print(f"no perf_analyzer in {REF}: run `make reference` first", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="airtower-batching-") as tmp:
        workdir = Path(tmp)
        repository = make_repository(workdir, args.models, args.queue_delay_us, tuple(args.mlp_widths))
        server, http, grpc = start("airtower", repository, workdir / "airtower.log")
        try:
            urls = {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}"}
            for model in args.models:
                rows += sweep(model, repository, urls, server.pid, args, workdir)
        finally:
            stop(server)
    print_table(rows)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "batching.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
