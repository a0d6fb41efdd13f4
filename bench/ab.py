"""A/B: airtower at another git revision against the working tree, on the same model, in one run.

    .venv/bin/python bench/ab.py --base HEAD~1 [--model add_sub] [--concurrency 1 4 16] [--rounds 3]

On a shared two-core machine the throughput of the same server moves by ±10-15% between runs, so a
change is judged against its base measured in the same run: the base revision is checked out into a
temporary git worktree and served with its own ``src`` first on ``PYTHONPATH`` (same virtual
environment), the working tree as installed. For each concurrency the two servers are measured in
turn with perf_analyzer over HTTP, alternating which goes first, ``--rounds`` times; the script
prints each side's median throughput and p99 and the median ratio (working tree / base). The
models are bench/run.py's (``add_sub``, ``add_sub_batched``, ``add_sub_dynamic``, ``accumulator``),
bench/batching.py's MLP (``mlp``: one request per execution, ``mlp_batched``: dynamic
batching; ``--mlp-widths`` changes it) and the example ONNX model ``add_sub_onnx``. Both sides run
compiled, as ``make compile`` builds them (the base is built in its worktree when it has the build);
``--pure`` runs both from source instead.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import batching
from run import SEQUENCE_MODELS, make_repository, model_arguments
from servers import REF, ROOT, build, env_with_src, free_port, stop, wait_ready, worktree


def serve(src: Path | None, repository: Path, model: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """airtower from ``src`` (None: the working tree) serving ``model``; returns it and its HTTP port."""
    port = free_port()
    args = [sys.executable, "-m", "airtower", "serve", "--model-repository", str(repository),
            "--http-address", "127.0.0.1", "--http-port", str(port), "--allow-grpc=false", "--allow-metrics=false",
            "--model-control-mode", "explicit", "--load-model", model]  # fmt: skip
    process = subprocess.Popen(args, env=env_with_src(src), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_ready(port, process)
    except BaseException:
        stop(process)
        raise
    return process, port


def measure(port: int, model: str, concurrency: int, seconds: float, workdir: Path) -> tuple[float, float]:
    """perf_analyzer's throughput (infer/s) and p99 (µs) against ``port``."""
    report = workdir / "perf.csv"
    done = subprocess.run(
        [str(REF / "bin" / "perf_analyzer"), "-m", model, "-u", f"127.0.0.1:{port}", "-i", "http",
         "--concurrency-range", f"{concurrency}:{concurrency}", "--measurement-interval", str(int(seconds * 1000)),
         "--percentile", "99", "--stability-percentage", "50", "--max-trials", "20", "-f", str(report),
         *model_arguments(model)],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"perf_analyzer failed on port {port}:\n{done.stdout}\n{done.stderr}")
    row = next(csv.DictReader(report.open()))
    return float(row["Inferences/Second"]), float(row["p99 latency"])  # the percentile column is p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the git revision to compare with (e.g. HEAD~1, main)")
    parser.add_argument(
        "--model",
        default="add_sub",
        choices=(
            "add_sub",
            "add_sub_batched",
            "add_sub_dynamic",
            *SEQUENCE_MODELS,
            "mlp",
            "mlp_batched",
            "add_sub_onnx",
        ),
    )
    parser.add_argument("--mlp-widths", type=int, nargs="+", default=list(batching.MLP_WIDTHS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="perf_analyzer measurement window")
    parser.add_argument("--pure", action="store_true", help="run both sides from source (AIRTOWER_PURE_PYTHON=1)")
    args = parser.parse_args()
    if args.pure:
        os.environ["AIRTOWER_PURE_PYTHON"] = "1"
    with tempfile.TemporaryDirectory(prefix="airtower-ab-") as temp:
        workdir = Path(temp)
        with worktree(args.base, workdir / "base") as base_src:
            if not args.pure:
                build(base_src)
                build(ROOT / "src")
            if args.model.startswith("mlp"):
                repository = batching.make_repository(workdir, ["mlp"], [0], tuple(args.mlp_widths))
            elif args.model == "add_sub_onnx":
                repository = workdir / "onnx_repository"
                shutil.copytree(ROOT / "examples" / "model_repository" / args.model, repository / args.model)
            else:
                repository = make_repository(workdir)
            sides = {"base": base_src, "tree": None}
            results: dict[tuple[str, int], list[tuple[float, float]]] = {}
            for round_index in range(args.rounds):
                for concurrency in args.concurrency:
                    order = ["base", "tree"] if round_index % 2 == 0 else ["tree", "base"]
                    for side in order:
                        process, port = serve(sides[side], repository, args.model, workdir / f"{side}.log")
                        try:
                            result = measure(port, args.model, concurrency, args.seconds, workdir)
                        finally:
                            stop(process)
                        results.setdefault((side, concurrency), []).append(result)
            print(f"{args.model}: working tree vs {args.base} ({args.rounds} rounds, alternating)")
            for concurrency in args.concurrency:
                base_runs, tree_runs = results[("base", concurrency)], results[("tree", concurrency)]
                ratios = [t[0] / b[0] for t, b in zip(tree_runs, base_runs, strict=True)]
                print(
                    f"c={concurrency:<3d} base {statistics.median(r[0] for r in base_runs):7.0f}/s "
                    f"p99 {statistics.median(r[1] for r in base_runs):6.0f}us | "
                    f"tree {statistics.median(r[0] for r in tree_runs):7.0f}/s "
                    f"p99 {statistics.median(r[1] for r in tree_runs):6.0f}us | "
                    f"throughput x{statistics.median(ratios):.3f}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
