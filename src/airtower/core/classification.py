"""The classification extension: top-N "value:index[:label]" strings from an output tensor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt


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
