"""The header caches of the HTTP codec give exactly what the uncached codec gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airtower.core.response import InferenceResponse
from airtower.core.tensor import Tensor
from airtower.errors import InvalidArgumentError
from airtower.frontends.http.codec import (
    InferRequestDecoder,
    InferResponseEncoder,
    decode_infer_request,
    encode_infer_response,
)

HEADER = json.dumps(
    {
        "id": "r1",
        "parameters": {"binary_data_output": True, "custom": 3},
        "inputs": [
            {"name": "A", "shape": [2, 2], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
            {"name": "S", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 11}},
        ],
        "outputs": [{"name": "OUT", "parameters": {"binary_data": True}}],
    }
).encode()


def payload(seed: int, word: bytes = b"abc") -> memoryview:
    floats = np.arange(4, dtype=np.float32) + seed
    strings = len(word).to_bytes(4, "little") + word + (0).to_bytes(4, "little")
    return memoryview(floats.tobytes() + strings)


def test_request_decoder_replays_cached_header_with_new_tensors() -> None:
    decoder = InferRequestDecoder()
    for seed in range(3):
        cached, cached_flag = decoder.decode("m", "", HEADER, payload(seed))
        fresh, fresh_flag = decode_infer_request("m", "", HEADER, payload(seed))
        assert cached_flag is fresh_flag is True
        assert (cached.id, cached.parameters, cached.outputs) == (fresh.id, fresh.parameters, fresh.outputs)
        assert cached.inputs.keys() == fresh.inputs.keys()
        for name, tensor in cached.inputs.items():
            assert tensor.shape == fresh.inputs[name].shape
            np.testing.assert_array_equal(tensor.data, fresh.inputs[name].data)
        cached.parameters["mutated"] = 1  # requests never share mutable state
    assert decoder.decode("m", "", HEADER, payload(0))[0].parameters == {"custom": 3}


def test_request_decoder_keeps_repeating_headers_and_not_a_sequence_s_first_or_last() -> None:
    decoder = InferRequestDecoder(capacity=2)

    def header(sequence_id: int, **flags: bool) -> bytes:
        parameters: dict[str, object] = {"sequence_id": sequence_id, "binary_data_output": True, **flags}
        inputs = [{"name": "A", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]
        return json.dumps({"parameters": parameters, "inputs": inputs}).encode()

    data = memoryview(np.arange(4, dtype=np.float32).tobytes())
    for sequence_id in (1, 2):
        first, _ = decoder.decode("m", "", header(sequence_id, sequence_start=True), data)
        middle, _ = decoder.decode("m", "", header(sequence_id), data)
        last, _ = decoder.decode("m", "", header(sequence_id, sequence_end=True), data)
        assert (first.flags, middle.flags, last.flags) == (1, 0, 2)
        assert first.correlation_id == middle.correlation_id == last.correlation_id == sequence_id
    assert [key[2] for key in decoder._templates] == [header(1), header(2)]
    decoder.decode("m", "", header(3), data)  # full: the oldest goes
    assert [key[2] for key in decoder._templates] == [header(2), header(3)]
    replayed, _ = decoder.decode("m", "", header(3), data)
    assert replayed.correlation_id == 3
    np.testing.assert_array_equal(replayed.inputs["A"].data, np.arange(4, dtype=np.float32))


def test_request_decoder_reports_size_errors_like_the_full_path() -> None:
    decoder = InferRequestDecoder()
    decoder.decode("m", "", HEADER, payload(0))
    with pytest.raises(InvalidArgumentError, match="expecting 4 additional bytes"):
        decoder.decode("m", "", HEADER, payload(0)[:-4])
    corrupt = bytearray(payload(0))
    corrupt[16:20] = (8).to_bytes(4, "little")  # same total size, but the string claims 8 of 7 bytes
    request, _ = decoder.decode("m", "", HEADER, memoryview(bytes(corrupt)))  # left for the validator, in order
    assert request.input_errors is not None
    assert "expected 2 string elements for inference input 'S'" in request.input_errors["S"].message


def test_response_encoder_caches_header_but_not_data() -> None:
    decoder, encoder = InferRequestDecoder(), InferResponseEncoder()
    request, flag = decoder.decode("m", "", HEADER, payload(0))
    for seed in range(3):
        data = np.full((2, 2), seed, np.float32)
        response = InferenceResponse("m", "1", "r1", [Tensor("OUT", "FP32", (2, 2), data)])
        header, buffers = encoder.encode(response, request, flag)
        assert (header, [bytes(b) for b in buffers]) == (
            encode_infer_response(response, request, flag)[0],
            [data.tobytes()],
        )
