"""Many kinds of traffic at once on one server: the server keeps serving and loses nothing.

HTTP and gRPC clients on Python models whose instances hold the event loop (``add_sub``, a dynamic
batcher with no delay), an ONNX model, a BLS router calling both, decoupled streams, interleaved
sequences, a model unloaded and loaded again while clients call it, and connections that send half a
request, malformed JSON, or leave before their answer. Every answer is checked; the only errors
allowed are the unloaded model's "no available versions". Each worker does a fixed number of
requests, so nothing here depends on timing; a hang fails on the join timeout.
"""

from __future__ import annotations

import queue
import random
import shutil
import socket
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.server_process import start_server

pytestmark = pytest.mark.integration

RELOADED = "add_sub_dyn"


def _repository(examples: Path, root: Path) -> Path:
    repository = root / "mixed"
    for name in ("add_sub", "add_sub_onnx", "bls_router", "token_streamer", "accumulator"):
        shutil.copytree(examples / name, repository / name, symlinks=True)
    shutil.copytree(examples / "add_sub", repository / RELOADED)
    config = (repository / RELOADED / "config.pbtxt").read_text()
    config = config.replace('name: "add_sub"', f'name: "{RELOADED}"').replace("max_batch_size: 0", "max_batch_size: 8")
    (repository / RELOADED / "config.pbtxt").write_text(config + "\ndynamic_batching { }\n")
    return repository


class Tally:
    """What the workers saw, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []

    def ok(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def problem(self, what: str) -> None:
        with self._lock:
            self.problems.append(what)


def _add_sub_inputs(module: Any, shape: list[int], rng: np.random.Generator) -> tuple[Any, Any, list[Any]]:
    a, b = rng.random(shape, dtype=np.float32), rng.random(shape, dtype=np.float32)
    inputs = [module.InferInput("INPUT0", shape, "FP32"), module.InferInput("INPUT1", shape, "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    return a, b, inputs


def _check_add_sub(tally: Tally, label: str, result: Any, a: Any, b: Any) -> None:
    out0 = result.as_numpy("OUTPUT0").reshape(-1)
    out1 = result.as_numpy("OUTPUT1").reshape(-1)
    if np.allclose(out0, (a + b).reshape(-1)) and np.allclose(out1, (a - b).reshape(-1)):
        tally.ok(label)
    else:
        tally.problem(f"{label}: wrong answer")


def http_worker(url: str, model: str, count: int, seed: int, tally: Tally) -> None:
    client, rng = httpclient.InferenceServerClient(url), np.random.default_rng(seed)
    shape = [16] if model == "add_sub" else [1, 16]
    for _ in range(count):
        a, b, inputs = _add_sub_inputs(httpclient, shape, rng)
        try:
            _check_add_sub(tally, f"http {model}", client.infer(model, inputs), a, b)
        except InferenceServerException as exc:
            if model == RELOADED and "has no available versions" in str(exc):
                tally.ok("unloaded")
            else:
                tally.problem(f"http {model}: {exc}")
    client.close()


def bls_worker(url: str, count: int, seed: int, tally: Tally) -> None:
    client, rng = grpcclient.InferenceServerClient(url), np.random.default_rng(seed)
    for index in range(count):
        a, b, inputs = _add_sub_inputs(grpcclient, [16], rng)
        target = grpcclient.InferInput("MODEL", [1], "BYTES")
        target.set_data_from_numpy(np.array([("add_sub", "add_sub_onnx")[index % 2].encode()], dtype=np.object_))
        try:
            _check_add_sub(tally, "grpc bls_router", client.infer("bls_router", [*inputs, target]), a, b)
        except InferenceServerException as exc:
            tally.problem(f"grpc bls_router: {exc}")
    client.close()


def stream_worker(url: str, count: int, seed: int, tally: Tally) -> None:
    client, rng = grpcclient.InferenceServerClient(url), random.Random(seed)
    answers: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for _ in range(count):
        words = [f"w{i}" for i in range(rng.randint(1, 12))]
        text = grpcclient.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([" ".join(words).encode()], dtype=np.object_))
        client.async_stream_infer("token_streamer", [text], enable_empty_final_response=True)
        tokens = []
        while True:
            result, error = answers.get(timeout=60)
            if error is not None:
                tally.problem(f"stream: {error}")
                break
            response = result.get_response()
            if response.parameters["triton_final_response"].bool_param:
                break
            tokens.append(result.as_numpy("text_output")[0].decode())
        if "".join(tokens) == " ".join(words):
            tally.ok("stream")
        else:
            tally.problem(f"stream: {tokens!r} for {words!r}")
    client.stop_stream()
    client.close()


def sequence_worker(url: str, count: int, first_id: int, tally: Tally) -> None:
    client, rng = grpcclient.InferenceServerClient(url), random.Random(first_id)
    for sequence_id in range(first_id, first_id + count):
        total, steps = 0, rng.randint(1, 6)
        for step in range(steps):
            value = rng.randint(-5, 5)
            total += value
            tensor = grpcclient.InferInput("INPUT", [1, 1], "INT32")
            tensor.set_data_from_numpy(np.array([[value]], dtype=np.int32))
            result = client.infer(
                "accumulator",
                [tensor],
                sequence_id=sequence_id,
                sequence_start=step == 0,
                sequence_end=step == steps - 1,
            )
            if int(result.as_numpy("TOTAL").reshape(-1)[0]) != total:
                tally.problem(f"sequence {sequence_id}: step {step} lost the running total")
                break
        else:
            tally.ok("sequence")
    client.close()


def reload_worker(url: str, count: int, tally: Tally) -> None:
    client = httpclient.InferenceServerClient(url)
    for _ in range(count):
        client.unload_model(RELOADED)
        client.load_model(RELOADED)
        tally.ok("reload")
    client.close()


def rude_worker(port: int, count: int, tally: Tally) -> None:
    ones = b",".join([b"1.0"] * 16)
    half_json = b'{"inputs":[{"name":"INPUT0","shape":[16],"datatype":"FP32","data":[' + ones + b"]}"
    whole = half_json[:-1] + b'},{"name":"INPUT1","shape":[16],"datatype":"FP32","data":[' + ones + b"]}]}"
    head = b"POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    for index in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            if index % 3 == 0:  # half the body announced, then gone
                sock.sendall(head % 5000 + half_json[:40])
            elif index % 3 == 1:  # malformed JSON: Triton 2.51 answers 500 with the parser's message
                sock.sendall(head % len(half_json) + half_json)
                answer = sock.recv(4096)
                if answer.startswith(b"HTTP/1.1 500 ") and b"failed to parse the request JSON buffer" in answer:
                    tally.ok("malformed")
                else:
                    tally.problem(f"malformed JSON answered {answer[:80]!r}")
            else:  # a whole request, and gone before the answer
                sock.sendall(head % len(whole) + whole)
        tally.ok("rude")


def test_mixed_traffic_is_all_answered_and_the_server_stops_cleanly(examples_repository: Path, tmp_path: Path) -> None:
    server = start_server(
        [_repository(examples_repository, tmp_path)], "--model-control-mode=explicit", "--load-model=*"
    )
    tally = Tally()
    work: list[Callable[[], None]] = [
        lambda: http_worker(server.url, "add_sub", 300, 1, tally),
        lambda: http_worker(server.url, "add_sub", 300, 2, tally),
        lambda: http_worker(server.url, RELOADED, 300, 3, tally),
        lambda: http_worker(server.url, RELOADED, 300, 4, tally),
        lambda: http_worker(server.url, "add_sub_onnx", 200, 5, tally),
        lambda: bls_worker(server.grpc_url, 200, 6, tally),
        lambda: bls_worker(server.grpc_url, 200, 7, tally),
        lambda: stream_worker(server.grpc_url, 60, 8, tally),
        lambda: stream_worker(server.grpc_url, 60, 9, tally),
        lambda: sequence_worker(server.grpc_url, 60, 1000, tally),
        lambda: sequence_worker(server.grpc_url, 60, 2000, tally),
        lambda: reload_worker(server.url, 6, tally),
        lambda: rude_worker(server.port, 150, tally),
    ]
    failures: list[BaseException] = []

    def run(job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in work]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(240)
        assert not [thread for thread in threads if thread.is_alive()], "a client is still waiting for an answer"
        assert not failures, failures
        assert not tally.problems, tally.problems[:10]
        assert httpclient.InferenceServerClient(server.url).is_server_ready()
    finally:
        code = server.stop()
    counts = tally.counts
    assert (counts["http add_sub"], counts["http add_sub_onnx"], counts["grpc bls_router"]) == (600, 200, 400)
    assert counts[f"http {RELOADED}"] + counts["unloaded"] == 600
    assert counts[f"http {RELOADED}"] > 0
    assert (counts["stream"], counts["sequence"], counts["reload"], counts["rude"]) == (120, 120, 6, 150)
    assert code == 0
    assert "Traceback" not in server.output(), server.output()[-3000:]
