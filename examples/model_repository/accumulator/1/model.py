"""accumulator: the running total of a sequence's INPUT values, kept per correlation ID.

START resets the total; END forgets it. Written against triton_python_backend_utils only, so it
runs unchanged on NVIDIA Triton.
"""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.totals = {}

    def execute(self, requests):
        responses = []
        for request in requests:
            sequence = request.correlation_id()
            value = int(pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy().reshape(-1)[0])
            if pb_utils.get_input_tensor_by_name(request, "START").as_numpy().reshape(-1)[0]:
                self.totals[sequence] = 0
            total = self.totals.get(sequence, 0) + value
            if pb_utils.get_input_tensor_by_name(request, "END").as_numpy().reshape(-1)[0]:
                self.totals.pop(sequence, None)
            else:
                self.totals[sequence] = total
            # TOTAL is INT32: it wraps around as int32 arithmetic does (perf_analyzer sends random values).
            wrapped = np.array([[total]], np.int64).astype(np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOTAL", wrapped)]))
        return responses
