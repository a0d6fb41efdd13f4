"""token_streamer: streams its input back one word at a time, like a language model streaming tokens.

Each word is sent from a worker thread after ``execute`` returned; the last send carries
TRITONSERVER_RESPONSE_COMPLETE_FINAL. A client that cancels stops the stream. Written against
triton_python_backend_utils only, so it runs unchanged on NVIDIA Triton.
"""

import threading

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy().reshape(-1)[0]
            text = text.decode() if isinstance(text, bytes) else str(text)
            sender = request.get_response_sender()
            threading.Thread(target=self.stream, args=(text.split(), sender), daemon=True).start()
        return None

    def stream(self, words, sender):
        for index, word in enumerate(words):
            if sender.is_cancelled():
                break
            token = word if index == 0 else " " + word
            output = pb_utils.Tensor("text_output", np.array([token.encode()], dtype=np.object_))
            sender.send(pb_utils.InferenceResponse([output]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
