"""The logging extension: settings read and changed over HTTP and gRPC, applied to the next request."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.integration.fixture_models import write_python_model
from tests.integration.server_process import ServerProcess, start_server

pytestmark = pytest.mark.integration

# Logs "info-<id>" then "warn-<id>" through pb_utils.Logger on every request.
TALKER = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            pb_utils.Logger.log_info(f"info-{request.request_id()}")
            pb_utils.Logger.log_warn(f"warn-{request.request_id()}")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros(1, np.int32))]) for _ in requests]
"""

DEFAULTS = {
    "log_file": "",
    "log_info": True,
    "log_warning": True,
    "log_error": True,
    "log_verbose_level": 0,
    "log_format": "default",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_python_model(
        tmp_path / "talker",
        """\
        name: "talker"
        backend: "python"
        max_batch_size: 0
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """,
        TALKER,
    )
    process = start_server([tmp_path])
    yield process
    assert process.stop() == 0, process.output()


def post(server: ServerProcess, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://{server.url}/v2/logging", json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def talk(server: ServerProcess, request_id: str) -> None:
    with httpclient.InferenceServerClient(server.url) as client:
        tensor = httpclient.InferInput("IN", [1], "INT32")
        tensor.set_data_from_numpy(np.zeros(1, np.int32))
        client.infer("talker", [tensor], request_id=request_id)
    deadline = time.monotonic() + 30
    while f"warn-{request_id}" not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"warn-{request_id}" in server.output()


def test_settings_over_http_as_triton(server: ServerProcess) -> None:
    with urllib.request.urlopen(f"http://{server.url}/v2/logging", timeout=30) as response:
        assert json.loads(response.read()) == DEFAULTS
    assert post(server, {"log_verbose_level": 2, "log_info": False}) == (
        200,
        {**DEFAULTS, "log_verbose_level": 2, "log_info": False},
    )
    assert post(server, {"log_verbose_level": "x"}) == (
        500,
        {"error": "attempt to access JSON non-unsigned-integer as unsigned-integer"},
    )
    assert post(server, {"log_format": "bad"}) == (503, {"error": "invalid argument for --log_format, got: bad"})
    assert post(server, {"log_file": "/tmp/x.log"}) == (
        501,
        {"error": "log file location can not be updated through network protocol"},
    )
    assert post(server, {"nope": 1})[0] == 200
    assert post(server, {"log_info": None, "log_verbose_level": 2**32 + 1}) == (  # null: unchanged; 32 bits kept
        200,
        {**DEFAULTS, "log_verbose_level": 1, "log_info": False},
    )


def test_a_change_applies_to_the_next_request(server: ServerProcess) -> None:
    talk(server, "r1")
    assert "info-r1" in server.output()
    post(server, {"log_info": False})
    talk(server, "r2")
    assert "info-r2" not in server.output()  # logged before warn-r2, which is there
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        with pytest.raises(InferenceServerException, match="expect boolean for 'log_info'"):
            client.update_log_settings({"log_info": None})  # sent as a parameter with no value
        client.update_log_settings({"log_info": True})
        settings = client.get_log_settings(as_json=True)["settings"]
    assert settings["log_info"] == {"bool_param": True}
    assert settings["log_verbose_level"] == {"uint32_param": 0}
    talk(server, "r3")
    assert "info-r3" in server.output()


# Logs through a library's logger and pb_utils.Logger; IN = 1 first sets up the root logger as a
# model may (logging.basicConfig), which in Triton's stub takes effect since nothing else did.
LIBRARY_TALKER = """
import logging

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            if int(pb_utils.get_input_tensor_by_name(request, "IN").as_numpy()[0]) == 1:
                logging.basicConfig(format="MODEL| %(name)s %(message)s", level=logging.INFO)
            name = request.request_id()
            logging.getLogger("somelib").info(f"lib-info-{name}")
            logging.getLogger("somelib").warning(f"lib-warn-{name}")
            pb_utils.Logger.log_warn(f"own-warn-{name}")
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUT", np.zeros(1, np.int32))]) for _ in requests]
"""


def test_a_models_libraries_log_as_in_tritons_stub(tmp_path: Path) -> None:
    write_python_model(
        tmp_path / "library_talker",
        """\
        name: "library_talker"
        backend: "python"
        max_batch_size: 0
        input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
        output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]
        """,
        LIBRARY_TALKER,
    )
    server = start_server([tmp_path], "--log-verbose=1")
    try:

        def talk_to(request_id: str, value: int) -> str:
            with httpclient.InferenceServerClient(server.url) as client:
                tensor = httpclient.InferInput("IN", [1], "INT32")
                tensor.set_data_from_numpy(np.array([value], np.int32))
                client.infer("library_talker", [tensor], request_id=request_id)
            deadline = time.monotonic() + 30
            while f"own-warn-{request_id}" not in server.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            return server.output()

        output = talk_to("r1", 0)
        # Python's defaults, as in the stub: a library's warning reaches stderr as its bare message,
        # its INFO record is dropped even with --log-verbose (which is airtower's own verbosity).
        assert "\nlib-warn-r1\n" in output
        assert "lib-info-r1" not in output
        output = talk_to("r2", 1)
        assert "MODEL| somelib lib-info-r2" in output  # the model's basicConfig took effect
        assert "MODEL| somelib lib-warn-r2" in output
        own = [line for line in output.splitlines() if "own-warn-r2" in line]
        assert len(own) == 1  # not repeated through the model's handler
        assert "airtower.python_model] own-warn-r2" in own[0]  # in airtower's format
    finally:
        assert server.stop() == 0, server.output()
