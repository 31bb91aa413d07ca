"""PNG plots beside REPORT.md (matplotlib, rendered headless with the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gradparity.harness.runner import ORACLE, CaseOutcome

FLOOR = 0.01  # eps shown for exact agreement on the log scale


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def heatmap(outcomes: Sequence[CaseOutcome], framework: str, path: Path) -> Path | None:
    """Case x parameter: log10 of the gradient error of ``framework`` vs numpy, in eps."""
    rows = [o for o in outcomes if framework in o.results and "numpy" in o.results]
    if not rows:
        return None
    parameters = sorted({d.parameter for o in rows for d in o.differences
                         if d.quantity == "gradient"}, key=lambda n: (int(n[1:]), n[0] == "b"))
    grid = np.full((len(rows), len(parameters)), np.nan)
    for i, outcome in enumerate(rows):
        for d in outcome.differences:
            if d.quantity == "gradient" and (d.framework, d.baseline) == (framework, "numpy"):
                grid[i, parameters.index(d.parameter)] = np.log10(max(d.normwise_eps, FLOOR))
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(2 + 0.7 * len(parameters), 1 + 0.28 * len(rows)))
    image = axes.imshow(grid, aspect="auto", cmap="viridis", vmin=np.log10(FLOOR),
                        vmax=max(2.0, float(np.nanmax(grid))))
    axes.set_xticks(range(len(parameters)), parameters)
    axes.set_yticks(range(len(rows)), [o.case.id for o in rows], fontsize=6)
    axes.set_xlabel("parameter (gradient)")
    axes.set_ylabel("case")
    axes.set_title(f"Gradient error, {framework} vs numpy (log10 of eps)")
    bar = figure.colorbar(image, ax=axes)
    bar.set_label(f"log10(normwise error / eps); {FLOOR} eps = exact")
    figure.tight_layout()
    _save(figure, path)
    return path


def divergence(outcomes: Sequence[CaseOutcome], path: Path) -> Path | None:
    """Per-step parameter error, free-running and teacher-forced, for the longest runs."""
    longest = max((o.case.steps for o in outcomes if o.trajectories), default=0)
    chosen = [o for o in outcomes if o.trajectories and o.case.steps == longest]
    if not chosen:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 4.5))
    # the worst case at each step, per framework and dtype: at most a handful of lines
    series: dict[tuple[str, str], list[np.ndarray]] = {}
    for outcome in chosen:
        for name, errors in outcome.trajectories.items():
            key = (name, outcome.case.dtype)
            series.setdefault(key, []).append(np.array([errors.free_running,
                                                        errors.teacher_forced]))
    steps = np.arange(1, longest + 1)
    for (name, dtype), runs in sorted(series.items()):
        worst = np.max(np.stack(runs), axis=0)
        (line,) = axes.plot(steps, np.maximum(worst[0], FLOOR),
                            label=f"{name}, {dtype}, free-running")
        # one step's error flickers between 0 and 1 ulp: show the worst step so far
        axes.plot(steps, np.maximum(np.maximum.accumulate(worst[1]), FLOOR), linestyle="--",
                  color=line.get_color(),
                  label=f"{name}, {dtype}, teacher-forced (worst step so far)")
    axes.set_yscale("log")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("parameter error vs numpy (eps)")
    axes.set_title(f"Parameter error per step, worst of {len(chosen)} cases with "
                   f"{longest} steps")
    axes.legend(fontsize=7)
    figure.tight_layout()
    _save(figure, path)
    return path


def distribution(outcomes: Sequence[CaseOutcome], path: Path) -> Path | None:
    """Histogram of every pairwise and oracle check's error, one series per dtype."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4))
    bins = np.linspace(np.log10(FLOOR), 3, 41)
    plotted = False
    for dtype in ("float32", "float64"):
        values = [np.log10(max(d.normwise_eps, FLOOR)) for o in outcomes for d in o.checks
                  if d.dtype == dtype and (d.baseline in o.results or d.baseline == ORACLE)
                  and np.isfinite(d.normwise_eps)]
        if values:
            axes.hist(values, bins=bins, alpha=0.6, label=f"{dtype} ({len(values)} checks)")
            plotted = True
    if not plotted:
        plt.close(figure)
        return None
    axes.set_xlabel("log10(normwise error / eps)")
    axes.set_ylabel("checks")
    axes.set_title("Distribution of errors per dtype")
    axes.legend()
    figure.tight_layout()
    _save(figure, path)
    return path


def _save(figure, path: Path) -> None:
    """Write the PNG atomically (temporary file, then rename), then free the figure."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
        _pyplot().close(figure)


def write_plots(outcomes: Sequence[CaseOutcome], frameworks: Sequence[str],
                out_dir: Path) -> list[Path]:
    """Every plot that has data; the paths are relative-linkable from REPORT.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [heatmap(outcomes, name, out_dir / f"heatmap_{name}.png")
               for name in frameworks if name != "numpy"]
    written += [divergence(outcomes, out_dir / "divergence.png"),
                distribution(outcomes, out_dir / "distribution.png")]
    return [path for path in written if path is not None]
