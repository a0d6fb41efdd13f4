"""bls_router: Business Logic Scripting. Picks, per request, the model that computes the answer
("add_sub" in Python or "add_sub_onnx" in ONNX Runtime, named by the MODEL input) and calls it
inside the server with ``pb_utils.InferenceRequest(...).exec()``: no network hop.

Written against triton_python_backend_utils only, so it runs unchanged on NVIDIA Triton.
"""

import triton_python_backend_utils as pb_utils

ALLOWED = {"add_sub", "add_sub_onnx"}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            model = pb_utils.get_input_tensor_by_name(request, "MODEL").as_numpy().reshape(-1)[0]
            model = model.decode() if isinstance(model, bytes) else str(model)
            if model not in ALLOWED:
                error = pb_utils.TritonError(f"unknown model '{model}', expected one of {sorted(ALLOWED)}")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            in_0 = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            in_1 = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            if model == "add_sub_onnx":  # that model batches: give it a batch of one
                in_0, in_1 = in_0.reshape(1, -1), in_1.reshape(1, -1)
            answer = pb_utils.InferenceRequest(
                model_name=model,
                requested_output_names=["OUTPUT0", "OUTPUT1"],
                inputs=[pb_utils.Tensor("INPUT0", in_0), pb_utils.Tensor("INPUT1", in_1)],
            ).exec()
            if answer.has_error():
                responses.append(pb_utils.InferenceResponse(error=answer.error()))
                continue
            outputs = [
                pb_utils.Tensor(name, pb_utils.get_output_tensor_by_name(answer, name).as_numpy().reshape(-1))
                for name in ("OUTPUT0", "OUTPUT1")
            ]
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
