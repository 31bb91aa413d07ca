"""Write a small digit-like data set for ``gradparity check --data``: 64 rows of 784
pixel intensities in [0, 1] and integer labels 0..9 (each class a blurred random
template plus noise; deterministic).

    python examples/make_digits.py digits.npz
"""

import sys

import numpy as np


def make(rows: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 28, 28)) > 0.8
    labels = rng.integers(0, 10, size=rows)
    images = templates[labels].astype(np.float64) * 0.8 + 0.2 * rng.random((rows, 28, 28))
    return images.reshape(rows, 784), labels.astype(np.int64)


if __name__ == "__main__":
    x, y = make()
    np.savez(sys.argv[1] if len(sys.argv) > 1 else "digits.npz", x=x, y=y)
