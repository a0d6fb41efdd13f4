"""preprocess: an RGB image (uint8, height x width x 3, any size) → resnet50's input.

Nearest-neighbour resize to 224 x 224, scale to [0, 1], normalise with the ImageNet mean and
standard deviation, and move channels first. Written against triton_python_backend_utils only,
so it runs unchanged on airtower and on NVIDIA Triton.
"""

import numpy as np
import triton_python_backend_utils as pb_utils

SIZE = 224
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def to_tensor(image):
    height, width = image.shape[:2]
    rows = np.arange(SIZE) * height // SIZE
    cols = np.arange(SIZE) * width // SIZE
    resized = image[rows][:, cols].astype(np.float32) / 255.0
    return ((resized - MEAN) / STD).transpose(2, 0, 1)


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            batch = np.stack([to_tensor(image) for image in images]).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TENSOR", batch)]))
        return responses
