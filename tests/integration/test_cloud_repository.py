"""s3:// model repositories, served from a real S3-compatible server (moto's) started by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from tests.integration.server_process import run_server_to_exit, start_server

pytestmark = pytest.mark.integration

boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """A moto S3 server on a free loopback port; yields its endpoint and a client."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(endpoint, timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint, boto3.client("s3", endpoint_url=endpoint)
    finally:
        process.terminate()
        process.wait(timeout=30)


def upload(client: Any, bucket: str, prefix: str, model_dir: Path, name: str) -> None:
    for path in model_dir.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            client.upload_file(str(path), bucket, f"{prefix}/{name}/{path.relative_to(model_dir).as_posix()}")


def add_sub_inputs() -> list[httpclient.InferInput]:
    tensors = []
    for name in ("INPUT0", "INPUT1"):
        tensor = httpclient.InferInput(name, [16], "FP32")
        tensor.set_data_from_numpy(np.ones(16, np.float32))
        tensors.append(tensor)
    return tensors


def test_models_are_served_from_s3_and_polled(s3: tuple[str, Any], tmp_path: Path) -> None:
    endpoint, client = s3
    client.create_bucket(Bucket="models")
    upload(client, "models", "repo", ROOT / "examples" / "model_repository" / "add_sub", "add_sub")
    server = start_server([f"s3://{endpoint}/models/repo"], "--model-control-mode=poll", "--repository-poll-secs=1")
    try:
        with httpclient.InferenceServerClient(server.url) as http:
            assert http.infer("add_sub", add_sub_inputs()).as_numpy("OUTPUT0").tolist() == [2.0] * 16
            copy = tmp_path / "add_sub_copy"
            shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", copy)
            config = copy / "config.pbtxt"
            config.write_text(config.read_text().replace('name: "add_sub"', 'name: "add_sub_copy"'))
            upload(client, "models", "repo", copy, "add_sub_copy")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not http.is_model_ready("add_sub_copy"):
                time.sleep(0.2)
            assert http.infer("add_sub_copy", add_sub_inputs()).as_numpy("OUTPUT1").tolist() == [0.0] * 16
    finally:
        assert server.stop() == 0, server.output()


def test_an_empty_or_missing_s3_repository_fails_start_up(s3: tuple[str, Any]) -> None:
    endpoint, client = s3
    client.create_bucket(Bucket="empty")
    code, output = run_server_to_exit([f"s3://{endpoint}/empty/nothing"])
    assert code == 1
    assert f"failed to stat file s3://{endpoint}/empty/nothing" in output
