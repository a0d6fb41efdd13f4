"""string_python: upper-cases every element of a BYTES (TYPE_STRING) tensor.

Uses only the triton_python_backend_utils API, so it runs unchanged on airtower and on NVIDIA Triton.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            upper = np.array([bytes(value).upper() for value in values.reshape(-1)], dtype=np.object_)
            output = pb_utils.Tensor("OUTPUT0", upper.reshape(values.shape))
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses
