from __future__ import annotations

import numpy as np

from airtower.core.classification import classify


def test_classify_returns_top_n_with_labels_per_batch_entry() -> None:
    data = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], np.float32)
    out = classify(data, 2, ["cat", "dog", "eel"], batched=True)
    assert out.shape == (2, 2)
    assert out[0].tolist() == [b"0.700000:1:dog", b"0.200000:2:eel"]
    assert out[1].tolist() == [b"0.500000:0:cat", b"0.250000:1:dog"]


def test_classify_without_labels_and_without_batching() -> None:
    out = classify(np.array([3, 9, 1], np.int32), 5, [], batched=False)
    assert out.tolist() == [b"9:1", b"3:0", b"1:2"]
