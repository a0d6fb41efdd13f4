"""Generate the ONNX model files of the example model repository, deterministically.

Usage: ``.venv/bin/python examples/generate_models.py [--repository DIR] [--force]``

Only ``<model>/1/model.onnx`` files are written (they are gitignored); each model's
``config.pbtxt`` (and labels) is hand-written and committed. Existing files are kept unless
``--force`` is given. Weights come from fixed seeds, so every run writes the same bytes.
Needs only numpy and the ``onnx`` package.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
DEFAULT_REPOSITORY = Path(__file__).resolve().parent / "model_repository"

#: ResNet-50: bottleneck blocks per stage and each stage's inner width (output is 4x).
RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_WIDTHS = (64, 128, 256, 512)
#: Scale of each block's last conv, standing in for a small BatchNorm gamma: keeps the
#: residual sums (and so the logits) in a moderate range with random weights.
RESIDUAL_SCALE = 0.2


def make_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="airtower-examples")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


class _GraphBuilder:
    """Accumulates nodes and seeded initializers for a conv net."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def _weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        array = self.rng.standard_normal(shape, dtype=np.float32)
        array *= np.float32(std)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int = 1, scale: float = 1.0) -> str:
        """Conv with BatchNorm folded into its weights and bias; He-initialised (std sqrt(2/fan_in))."""
        name = self._name("conv")
        std = scale * float(np.sqrt(2.0 / (cin * kernel * kernel)))
        w = self._weight(f"{name}.weight", (cout, cin, kernel, kernel), std)
        b = self._weight(f"{name}.bias", (cout,), 0.01)
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [name],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        name = self._name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [name], **attrs))
        return name

    def bottleneck(self, x: str, cin: int, width: int, stride: int) -> str:
        # ResNet v1: the stride sits on the first 1x1 conv (v1.5 moves it to the 3x3).
        cout = width * 4
        y = self.op("Relu", [self.conv(x, cin, width, 1, stride)])
        y = self.op("Relu", [self.conv(y, width, width, 3)])
        y = self.conv(y, width, cout, 1, scale=RESIDUAL_SCALE)
        shortcut = self.conv(x, cin, cout, 1, stride) if (stride != 1 or cin != cout) else x
        return self.op("Relu", [self.op("Add", [y, shortcut])])


def resnet50_model(seed: int = 0, base_width: int = 64) -> onnx.ModelProto:
    """ResNet-50 v1 for 3x224x224 inputs → 1000 logits, with seeded He-initialised weights.

    ``base_width`` < 64 shrinks every layer proportionally (for fast tests); 64 is ResNet-50.
    """
    g = _GraphBuilder(seed)
    stem = base_width
    x = g.op("Relu", [g.conv("input_0", 3, stem, 7, 2)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = stem
    for stage, (blocks, width) in enumerate(zip(RESNET50_BLOCKS, RESNET50_WIDTHS, strict=True)):
        width = width * base_width // 64
        for block in range(blocks):
            stride = 2 if (stage > 0 and block == 0) else 1
            x = g.bottleneck(x, cin, width, stride)
            cin = width * 4
    x = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    fc_w = g._weight("fc.weight", (1000, cin), float(np.sqrt(1.0 / cin)))
    fc_b = g._weight("fc.bias", (1000,), 0.01)
    g.nodes.append(helper.make_node("Gemm", [x, fc_w, fc_b], ["output_0"], transB=1))
    graph = helper.make_graph(
        g.nodes,
        "resnet50",
        [helper.make_tensor_value_info("input_0", TensorProto.FLOAT, ["batch", 3, 224, 224])],
        [helper.make_tensor_value_info("output_0", TensorProto.FLOAT, ["batch", 1000])],
        initializer=g.initializers,
    )
    return make_model(graph)


def add_sub_model() -> onnx.ModelProto:
    """``OUTPUT0 = INPUT0 + INPUT1`` and ``OUTPUT1 = INPUT0 - INPUT1`` on [batch, 16] FP32."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16]) for n in ("INPUT0", "INPUT1")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 16]) for n in ("OUTPUT0", "OUTPUT1")]
    nodes = [
        helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
        helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
    ]
    return make_model(helper.make_graph(nodes, "add_sub_onnx", inputs, outputs))


def classifier_model(seed: int = 1) -> onnx.ModelProto:
    """4 features → 16 hidden (ReLU) → 5 class probabilities (softmax), on [batch, 4] FP32."""
    rng = np.random.default_rng(seed)
    params = {
        "w1": rng.standard_normal((4, 16), dtype=np.float32),
        "b1": rng.standard_normal(16, dtype=np.float32) * np.float32(0.1),
        "w2": rng.standard_normal((16, 5), dtype=np.float32) * np.float32(0.5),
        "b2": rng.standard_normal(5, dtype=np.float32) * np.float32(0.1),
    }
    nodes = [
        helper.make_node("Gemm", ["INPUT0", "w1", "b1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["activated"]),
        helper.make_node("Gemm", ["activated", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["OUTPUT0"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", 5])],
        initializer=[numpy_helper.from_array(array, name) for name, array in params.items()],
    )
    return make_model(graph)


#: Example model name → builder of its ``1/model.onnx``. Python models need no generation.
MODELS: dict[str, Callable[[], onnx.ModelProto]] = {
    "resnet50": resnet50_model,
    "add_sub_onnx": add_sub_model,
    "classifier": classifier_model,
}


def generate(repository: Path, force: bool = False) -> list[Path]:
    """Write every missing (or, with ``force``, every) model file; returns the files written."""
    written = []
    for name, build in MODELS.items():
        path = repository / name / "1" / "model.onnx"
        if path.exists() and not force:
            print(f"{path}: exists, skipped (--force to regenerate)")
            continue
        start = time.perf_counter()
        model = build()
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        written.append(path)
        size = path.stat().st_size / 1e6
        print(f"{path}: {size:.1f} MB in {time.perf_counter() - start:.1f} s")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=DEFAULT_REPOSITORY, help="model repository to fill")
    parser.add_argument("--force", action="store_true", help="regenerate files that already exist")
    args = parser.parse_args(argv)
    generate(args.repository, force=args.force)


if __name__ == "__main__":
    main()
