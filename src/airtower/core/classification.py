"""The classification extension: top-N "value:index[:label]" strings from an output tensor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from airtower.core.tensor import Tensor
from airtower.errors import InternalError, TritonError

if TYPE_CHECKING:
    from tritonclient.grpc.model_config_pb2 import ModelConfig


def classify(
    data: npt.NDArray[Any], class_count: int, labels: Sequence[str], *, batched: bool
) -> npt.NDArray[np.object_]:
    """Top ``class_count`` classes of ``data`` as Triton's BYTES strings.

    For a batched model each batch entry is classified on its own (result shape
    ``[batch, N]``), otherwise the whole tensor is (shape ``[N]``). Values are printed like
    C++'s ``std::to_string`` (six decimals), as Triton does.
    """
    rows = data.reshape(data.shape[0], -1) if batched else data.reshape(1, -1)
    count = min(class_count, rows.shape[1])
    out = np.empty((rows.shape[0], count), dtype=np.object_)
    is_float = data.dtype.kind == "f"
    for r, row in enumerate(rows):
        # stable sort on the negated values keeps the lower index first among equal values
        order = np.argsort(-row.astype(np.float64), kind="stable")[:count]
        for c, index in enumerate(order):
            value = row[index]
            shown = f"{float(value):f}" if is_float else str(int(value))
            text = f"{shown}:{int(index)}"
            if 0 <= index < len(labels):
                text += f":{labels[index]}"
            out[r, c] = text.encode()
    return out if batched else out.reshape(count)


def read_labels(path: str) -> list[str]:
    """Lines of a labels file (``label_filename``), one class per line."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\r\n") for line in handle]


def output_labels(config: ModelConfig, model_dir: str | Path) -> dict[str, list[str]]:
    """The labels of each output of ``config`` that names a ``label_filename`` (in ``model_dir``).

    Raises:
        TritonError: INTERNAL, a labels file that cannot be read.
    """
    labels: dict[str, list[str]] = {}
    for output in config.output:
        if output.label_filename:
            path = Path(model_dir) / output.label_filename
            try:
                labels[output.name] = read_labels(str(path))
            except OSError as exc:
                raise TritonError.from_code(
                    InternalError.code, f"unable to read labels file '{path}' for model '{config.name}': {exc}"
                ) from exc
    return labels


def classified(tensor: Tensor, class_count: int, labels: Sequence[str], *, batched: bool) -> Tensor:
    """``tensor`` replaced by its top ``class_count`` classes (the classification extension).

    Raises:
        InternalError: a BYTES or BOOL output, which Triton cannot classify.
    """
    if tensor.datatype in ("BYTES", "BOOL"):
        raise InternalError(f"class result not available for output due to unsupported type '{tensor.datatype}'")
    return Tensor.from_numpy(tensor.name, "BYTES", classify(tensor.data, class_count, labels, batched=batched))
