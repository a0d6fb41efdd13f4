"""System shared memory (Triton's extension), HTTP and gRPC: register regions made with tritonclient's
own shared-memory utilities, read inputs from them and write outputs into them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from tests.integration.perf_analyzer import run_perf_analyzer
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SIZE = 16 * 4  # one FP32 [16] tensor


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("shm")
    shutil.copytree(ROOT / "examples" / "model_repository" / "add_sub", repository / "add_sub")
    process = start_server([repository])
    yield process
    assert process.stop() == 0, process.output()


@pytest.fixture
def regions() -> Iterator[dict[str, Any]]:
    """Input and output regions, unique to this process; destroyed afterwards."""
    tag = f"airtower_test_{os.getpid()}"
    handles = {
        "input": shm.create_shared_memory_region("input", f"/{tag}_in", 2 * SIZE),
        "output": shm.create_shared_memory_region("output", f"/{tag}_out", 2 * SIZE),
    }
    yield {"tag": tag, **handles}
    for handle in handles.values():
        shm.destroy_shared_memory_region(handle)


def _check_outputs(handle: Any, a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [16], offset=0), a + b)
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [16], offset=SIZE), a - b)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_inputs_and_outputs_through_system_shared_memory(
    server: ServerProcess, regions: dict[str, Any], protocol: str
) -> None:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.url if protocol == "http" else server.grpc_url
    a = np.arange(16, dtype=np.float32)
    b = np.full(16, 3, dtype=np.float32)
    shm.set_shared_memory_region(regions["input"], [a, b])
    tag = regions["tag"]
    with module.InferenceServerClient(url) as client:
        client.unregister_system_shared_memory()
        client.register_system_shared_memory("input_region", f"/{tag}_in", 2 * SIZE)
        client.register_system_shared_memory("output_region", f"/{tag}_out", 2 * SIZE)
        status = client.get_system_shared_memory_status()
        if protocol == "http":
            assert sorted(region["name"] for region in status) == ["input_region", "output_region"]
            assert {r["name"]: (r["key"], r["offset"], r["byte_size"]) for r in status}["input_region"] == (
                f"/{tag}_in", 0, 2 * SIZE
            )  # fmt: skip
        else:
            assert sorted(status.regions) == ["input_region", "output_region"]
        inputs = [module.InferInput("INPUT0", [16], "FP32"), module.InferInput("INPUT1", [16], "FP32")]
        inputs[0].set_shared_memory("input_region", SIZE)
        inputs[1].set_shared_memory("input_region", SIZE, offset=SIZE)
        outputs = [module.InferRequestedOutput("OUTPUT0"), module.InferRequestedOutput("OUTPUT1")]
        outputs[0].set_shared_memory("output_region", SIZE)
        outputs[1].set_shared_memory("output_region", SIZE, offset=SIZE)
        result = client.infer("add_sub", inputs, outputs=outputs)
        _check_outputs(regions["output"], a, b)
        output = result.get_output("OUTPUT0")
        if protocol == "http":  # as Triton: only the name, datatype and shape of an output in shared memory
            assert output == {"name": "OUTPUT0", "datatype": "FP32", "shape": [16]}
        else:
            assert not output.parameters
        # Mixed: one input inline, one from shared memory; outputs in the response.
        mixed = [module.InferInput("INPUT0", [16], "FP32"), module.InferInput("INPUT1", [16], "FP32")]
        mixed[0].set_data_from_numpy(a)
        mixed[1].set_shared_memory("input_region", SIZE, offset=SIZE)
        np.testing.assert_array_equal(client.infer("add_sub", mixed).as_numpy("OUTPUT1"), a - b)
        # Errors, after which the server still serves.
        bad = [module.InferInput("INPUT0", [16], "FP32"), module.InferInput("INPUT1", [16], "FP32")]
        bad[0].set_shared_memory("nowhere", SIZE)
        bad[1].set_shared_memory("input_region", SIZE)
        bad = [module.InferInput("INPUT0", [16], "FP32"), module.InferInput("INPUT1", [16], "FP32")]
        bad[0].set_shared_memory("nowhere", SIZE)
        bad[1].set_shared_memory("input_region", SIZE)
        with pytest.raises(InferenceServerException, match="Unable to find shared memory region: 'nowhere'") as info:
            client.infer("add_sub", bad)
        assert info.value.status() == ("404" if protocol == "http" else "StatusCode.NOT_FOUND")
        small = [module.InferRequestedOutput("OUTPUT0")]
        small[0].set_shared_memory("output_region", 8)
        with pytest.raises(InferenceServerException, match="should be at least 64 bytes") as info:
            client.infer("add_sub", inputs, outputs=small)
        assert info.value.status() == ("500" if protocol == "http" else "StatusCode.INTERNAL")
        past = [module.InferInput("INPUT0", [16], "FP32"), module.InferInput("INPUT1", [16], "FP32")]
        past[0].set_shared_memory("input_region", SIZE, offset=2 * SIZE - 4)
        past[1].set_shared_memory("input_region", SIZE)
        with pytest.raises(InferenceServerException) as info:  # Triton 2.51's words
            client.infer("add_sub", past)
        assert info.value.message() == "Invalid offset + byte size for shared memory region: 'input_region'"
        with pytest.raises(InferenceServerException, match="already in manager"):
            client.register_system_shared_memory("input_region", f"/{tag}_in", SIZE)
        with pytest.raises(InferenceServerException, match="Unable to open shared memory region"):
            client.register_system_shared_memory("missing", f"/{tag}_missing", SIZE)
        client.unregister_system_shared_memory("input_region")
        names = [r["name"] for r in client.get_system_shared_memory_status()] if protocol == "http" else list(
            client.get_system_shared_memory_status().regions
        )  # fmt: skip
        assert names == ["output_region"]
        client.unregister_system_shared_memory()
        assert client.is_model_ready("add_sub")


def test_server_metadata_lists_system_shared_memory(server: ServerProcess) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        assert "system_shared_memory" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_analyzer_with_system_shared_memory(server: ServerProcess, protocol: str) -> None:
    url = server.url if protocol == "http" else server.grpc_url
    run_perf_analyzer("add_sub", url, protocol, "--shared-memory", "system")
    with httpclient.InferenceServerClient(server.url) as client:
        assert client.get_system_shared_memory_status() == []  # perf_analyzer unregistered its regions
