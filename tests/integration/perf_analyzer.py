"""Run the real perf_analyzer (installed by ../shared/reference/setup.sh) against a server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run_perf_analyzer(model: str, url: str, protocol: str, *extra: str) -> str:
    """A short, stability-tolerant perf_analyzer run; asserts it completed without errors, returns its output."""
    perf_analyzer = Path(os.environ.get("TRITON_REF", "/tmp/triton-ref")) / "bin" / "perf_analyzer"
    assert perf_analyzer.exists(), "run `make reference` (../shared/reference/setup.sh) first"
    done = subprocess.run(
        [str(perf_analyzer), "-m", model, "-u", url, "-i", protocol, "--concurrency-range", "2",
         "--measurement-mode", "count_windows", "--measurement-request-count", "300", "--max-trials", "10",
         "--stability-percentage", "1000", *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Throughput:" in output
    assert "error" not in output.lower(), output
    return output
