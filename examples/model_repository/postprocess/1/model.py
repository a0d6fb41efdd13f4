"""postprocess: resnet50's 1000 scores → the five best classes as "<index>:<probability>" strings.

Written against triton_python_backend_utils only, so it runs unchanged on airtower and on NVIDIA Triton.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            scores = pb_utils.get_input_tensor_by_name(request, "SCORES").as_numpy()
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=1, keepdims=True)
            best = np.argsort(-probabilities, axis=1)[:, :5]
            top5 = np.array(
                [[f"{index}:{row[index]:.4f}".encode() for index in indices] for row, indices in zip(probabilities, best)],
                dtype=np.object_,
            )
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOP5", top5)]))
        return responses
