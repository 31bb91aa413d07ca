"""The heatmap stays readable at any matrix size: cells, panels per network and dtype,
labels that cannot overlap, and a figure whose aspect is never degenerate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradparity.report.plots import (
    DPI,
    PANEL_ROWS,
    ROW_INCHES,
    draw_heatmap,
    heatmap_panels,
)
from gradparity.spec.case import Case
from gradparity.spec.matrix import default_cases

pytest.importorskip("matplotlib", reason="matplotlib not installed: no plots")

MAX_ASPECT = 3.0  # height / width (or width / height) beyond which a plot is a strip


def _errors(case: Case, rng: np.random.Generator) -> dict[str, float]:
    names = (case.network().parameter_shapes() if case.is_sequence
             else {f"{k}{layer}": 0 for layer in range(1, case.num_layers + 1)
                   for k in ("W", "b") if k == "W" or case.option("bias")})
    return {name: float(rng.uniform(0, 40)) for name in names}


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


MATRICES = {
    "default": lambda: default_cases(),
    "520": lambda: [Case(sizes, activation, loss="softmax_cross_entropy", dtype=dtype, seed=seed)
                    for sizes, activation in (((3, 8, 2), "tanh"), ((4, 16, 16, 3), "relu"),
                                              ((8, 32, 4), "gelu"), ((4, 16, 16, 16, 3), "tanh"))
                    for dtype in ("float32", "float64") for seed in range(65)],
    "one case": lambda: [Case((3, 8, 2))],
}


@pytest.mark.parametrize("matrix", list(MATRICES))
def test_heatmap_aspect_and_cells_are_sane(matrix: str, tmp_path: Path) -> None:
    cases = MATRICES[matrix]()
    rng = np.random.default_rng(0)
    panels = heatmap_panels([(case, _errors(case, rng)) for case in cases])
    path = draw_heatmap(panels, "test", tmp_path / "heatmap.png")
    width, height = _png_size(path)
    assert max(width / height, height / width) <= MAX_ASPECT, (width, height)
    # one row per case (up to PANEL_ROWS per panel), every row tall enough for its label
    assert sum(len(p.rows) for p in panels) == sum(min(PANEL_ROWS, n) for n in (
        sum(1 for c in cases if (c.dtype, c.network_family) == key)
        for key in {(c.dtype, c.network_family) for c in cases}))
    assert ROW_INCHES * DPI >= 6 / 72 * DPI * 1.2  # 6 pt labels with 20% leading
    for panel in panels:
        assert panel.values.shape == (len(panel.rows), len(panel.columns))


def test_a_degenerate_heatmap_is_what_the_check_catches(tmp_path: Path) -> None:
    """The old layout (one strip 18 px wide for 160 rows) fails the same aspect check."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2 + 0.7 * 6, 1 + 0.28 * 160))
    axes.imshow(np.zeros((160, 6)), aspect="auto")
    path = tmp_path / "old.png"
    figure.savefig(path, dpi=20)
    plt.close(figure)
    width, height = _png_size(path)
    assert max(width / height, height / width) > MAX_ASPECT
