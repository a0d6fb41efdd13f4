"""Models on CUDA GPUs: KIND_GPU and KIND_AUTO instance groups, Python models computing with torch on
their device and answering with GPU tensors, and ONNX Runtime KIND_GPU instances.

Runs only where the CUDA driver shows a supported GPU and torch can use it: CI has no GPU, so these
are checked on a GPU machine (docs/compatibility.md says how and when they last ran).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from airtower.core.cuda import supported_gpus
from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server
from tests.models import build_identity


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


GPUS = supported_gpus()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not GPUS or not _torch_cuda(), reason="needs a CUDA GPU and torch built with CUDA"),
]

# Computes 2x+1 on its instance's device and answers with the GPU tensors themselves (DLPack).
TORCH_MODEL = """
import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.kind = args["model_instance_kind"]
        self.device_id = int(args["model_instance_device_id"])
        self.device = torch.device(f"cuda:{self.device_id}" if self.kind == "GPU" else "cpu")

    def execute(self, requests):
        responses = []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, "IN")
            x = torch.utils.dlpack.from_dlpack(tensor.to_dlpack()).to(self.device)  # the capsule, as most models do
            if not torch.equal(torch.from_dlpack(tensor).to(self.device), x):  # and the __dlpack__ protocol
                raise pb_utils.TritonModelException("the two DLPack imports differ")
            y = x * 2 + 1
            where = np.array([f"{self.kind} {self.device_id} {y.device}".encode()], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor.from_dlpack("OUT", torch.utils.dlpack.to_dlpack(y)),
                pb_utils.Tensor.from_dlpack("OUT_BF16", y.to(torch.bfloat16)),
                pb_utils.Tensor("WHERE", where),
            ]))
        return responses
"""


def write_torch_model(repository: Path, name: str, instance_group: str) -> None:
    config = f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 0
        input [ {{ name: "IN" data_type: TYPE_FP32 dims: [ 4 ] }} ]
        output [
          {{ name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] }},
          {{ name: "OUT_BF16" data_type: TYPE_BF16 dims: [ 4 ] }},
          {{ name: "WHERE" data_type: TYPE_STRING dims: [ 1 ] }}
        ]
        {instance_group}
        """
    write_python_model(repository / name, config, TORCH_MODEL)


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    repository = tmp_path_factory.mktemp("gpu")
    write_torch_model(repository, "torch_gpu", "instance_group [ { kind: KIND_GPU count: 2 } ]")
    write_torch_model(repository, "torch_auto", "")
    write_torch_model(repository, "torch_cpu", "instance_group [ { kind: KIND_CPU } ]")
    build_identity(
        repository,
        "onnx_gpu",
        config='platform: "onnxruntime_onnx" max_batch_size: 8 instance_group [ { kind: KIND_GPU } ]',
    )
    process = start_server([repository], "--exit-on-error=false")
    yield process
    assert process.stop() == 0, process.output()


def _infer(server: ServerProcess, model: str) -> tuple[np.ndarray, np.ndarray, str]:
    client = httpclient.InferenceServerClient(server.url)
    x = np.array([0.5, -1.0, 2.0, 3.25], dtype=np.float32)
    tensor = httpclient.InferInput("IN", [4], "FP32")
    tensor.set_data_from_numpy(x)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in ("OUT", "OUT_BF16", "WHERE")]
    result = client.infer(model, [tensor], outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUT"), x * 2 + 1)
    where = result.as_numpy("WHERE")
    assert where is not None
    return result.as_numpy("OUT"), result.as_numpy("OUT_BF16"), where[0].decode()


def test_kind_gpu_instances_compute_on_their_gpu_and_answer_with_gpu_tensors(gpu_server: ServerProcess) -> None:
    out, out_bf16, where = _infer(gpu_server, "torch_gpu")
    assert where == f"GPU {GPUS[0]} cuda:{GPUS[0]}"
    # 2x+1 of these inputs is exact in bfloat16: the bits came back from the GPU unchanged.
    np.testing.assert_array_equal(out_bf16.astype(np.float32), out)
    config = httpclient.InferenceServerClient(gpu_server.url).get_model_config("torch_gpu")
    [group] = config["instance_group"]
    assert (group["kind"], group["count"], group["gpus"]) == ("KIND_GPU", 2, list(GPUS))


def test_kind_auto_becomes_gpu_and_kind_cpu_stays_on_the_cpu(gpu_server: ServerProcess) -> None:
    assert _infer(gpu_server, "torch_auto")[2] == f"GPU {GPUS[0]} cuda:{GPUS[0]}"
    assert _infer(gpu_server, "torch_cpu")[2] == "CPU 0 cpu"
    client = httpclient.InferenceServerClient(gpu_server.url)
    assert client.get_model_config("torch_auto")["instance_group"][0]["kind"] == "KIND_GPU"


def test_onnxruntime_kind_gpu_runs_on_cuda_or_says_what_is_missing(gpu_server: ServerProcess) -> None:
    import onnxruntime

    client = httpclient.InferenceServerClient(gpu_server.url)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = httpclient.InferInput("INPUT0", [2, 4], "FP32")
        tensor.set_data_from_numpy(x)
        np.testing.assert_array_equal(client.infer("onnx_gpu", [tensor]).as_numpy("OUTPUT0"), x)
        return
    assert not client.is_model_ready("onnx_gpu")
    [entry] = [m for m in client.get_model_repository_index() if m["name"] == "onnx_gpu"]
    assert "KIND_GPU but onnxruntime has no CUDA execution provider" in entry["reason"]
    with pytest.raises(InferenceServerException, match="onnx_gpu"):
        client.infer("onnx_gpu", [httpclient.InferInput("INPUT0", [1, 4], "FP32")])
