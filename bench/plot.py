"""Plots of bench/batching.py's results for docs/performance.md.

    .venv/bin/python bench/plot.py [--results bench/results/batching.json] [--out docs/images/batching.svg]

Throughput (left) and p99 latency (right) against concurrency, for each model with and without
dynamic batching. Needs matplotlib (the ``bench`` extra: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "batching.json")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "batching.svg")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.loads(args.results.read_text())
    models = sorted({row["model"] for row in rows})
    figure, axes = plt.subplots(len(models), 2, figsize=(10, 3.6 * len(models)), squeeze=False)
    for line, model in enumerate(models):
        mine = sorted((row for row in rows if row["model"] == model), key=lambda row: row["concurrency"])
        concurrency = [row["concurrency"] for row in mine]
        for kind, style in (("plain", "o--"), ("batched", "s-")):
            label = "dynamic_batching" if kind == "batched" else "no batching"
            axes[line][0].plot(concurrency, [row[kind]["throughput"] for row in mine], style, label=label)
            axes[line][1].plot(concurrency, [row[kind]["p99_us"] / 1000 for row in mine], style, label=label)
        axes[line][0].plot(
            concurrency, [row["batched"]["direct_throughput"] for row in mine], ":", label="onnxruntime direct"
        )
        axes[line][0].set_ylim(bottom=0)
        axes[line][1].set_ylim(bottom=0)
        axes[line][0].set_title(f"{model}: throughput")
        axes[line][0].set_ylabel("inferences / s")
        axes[line][1].set_title(f"{model}: p99 latency")
        axes[line][1].set_ylabel("ms")
        for axis in axes[line]:
            axis.set_xscale("log", base=2)
            axis.set_xticks(concurrency, [str(c) for c in concurrency])
            axis.set_xlabel("concurrency (perf_analyzer)")
            axis.grid(True, alpha=0.3)
            axis.legend()
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, metadata={"Date": None})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
