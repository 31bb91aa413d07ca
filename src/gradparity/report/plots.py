"""PNG plots beside REPORT.md (matplotlib, rendered headless with the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradparity.harness.runner import ORACLE, CaseOutcome
from gradparity.spec.case import Case

FLOOR = 0.01  # eps shown for exact agreement on the log scale
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


PANEL_ROWS = 100
"""At most this many cases per heatmap panel: the ones with the largest errors (the
panel's title says how many of how many); every case is in checks.csv."""
ROW_INCHES, COLUMN_INCHES = 0.13, 0.32  # one cell; labels at 6-7 pt never overlap
LABEL_CHARACTERS, CHARACTER_INCHES = 44, 0.055  # row labels: longer ones are shortened
TITLE_INCHES, COLUMN_LABEL_INCHES = 0.35, 1.1  # above and below the cells
BOTTOM_INCHES = 0.3  # below the last row of panels
TARGET_ASPECT = 1.3  # height / width the panel packing aims for


@dataclass(frozen=True)
class Panel:
    """One block of the heatmap: the cases of one network in one dtype."""

    title: str
    family: str  # the network: panels of one network sit side by side (one per dtype)
    rows: list[str]  # short case labels
    columns: list[str]  # parameter names
    values: np.ndarray  # log10(error in eps), NaN where a case has no such parameter

    @property
    def label_inches(self) -> float:
        return CHARACTER_INCHES * max(map(len, self.rows)) + 0.15

    @property
    def size(self) -> tuple[float, float]:
        """(width, height) in inches."""
        return (self.label_inches + COLUMN_INCHES * len(self.columns) + 0.3,
                TITLE_INCHES + COLUMN_LABEL_INCHES + ROW_INCHES * len(self.rows))


def _short(case_id: str, family: str, dtype: str) -> str:
    """The case id without what the panel's title says; long ones shortened in the middle."""
    label = case_id.removeprefix(family).replace(f"_{dtype}", "").strip("_") or family
    if len(label) > LABEL_CHARACTERS:
        half = (LABEL_CHARACTERS - 1) // 2
        label = label[:half] + "~" + label[-half:]
    return label


def heatmap_panels(rows: Sequence[tuple[Case, dict[str, float]]]) -> list[Panel]:
    """``rows``: (case, {parameter: error in eps}) per case. One panel per network and
    dtype, columns in the network's parameter order, at most PANEL_ROWS rows each."""
    groups: dict[tuple[str, str], list[tuple[Case, dict[str, float]]]] = {}
    for case, errors in rows:
        groups.setdefault((case.network_family, case.dtype), []).append((case, errors))
    panels = []
    for (family, dtype), members in groups.items():
        columns = list(dict.fromkeys(name for _, errors in members for name in errors))
        shown = members
        if len(members) > PANEL_ROWS:  # the largest errors, in matrix order
            worst = sorted(range(len(members)), key=lambda i: -max(
                members[i][1].values(), default=0.0))[:PANEL_ROWS]
            shown = [members[i] for i in sorted(worst)]
        values = np.full((len(shown), len(columns)), np.nan)
        for i, (_, errors) in enumerate(shown):
            for name, eps in errors.items():
                values[i, columns.index(name)] = np.log10(max(eps, FLOOR))
        count = (f"{len(members)} cases" if len(shown) == len(members)
                 else f"the {len(shown)} largest of {len(members)} cases")
        panels.append(Panel(f"{family}, {dtype} ({count})", family,
                            [_short(case.id, family, dtype) for case, _ in shown],
                            columns, values))
    return panels


def _partition(heights: list[float], count: int) -> list[int]:
    """Where to cut the ordered ``heights`` into ``count`` contiguous groups so that the
    tallest group is as short as possible (returns the start index of each group)."""
    n = len(heights)
    prefix = np.concatenate([[0.0], np.cumsum(heights)])
    # best[k][i]: the least tallest-group height for the first i panels in k groups
    best = np.full((count + 1, n + 1), np.inf)
    cut = np.zeros((count + 1, n + 1), dtype=int)
    best[0][0] = 0.0
    for k in range(1, count + 1):
        for i in range(1, n + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i]:
                    best[k][i], cut[k][i] = value, j
    starts, i = [], n
    for k in range(count, 0, -1):
        starts.append(int(cut[k][i]))
        i = cut[k][i]
    return starts[::-1]


def _packed(panels: list[Panel]) -> tuple[list[list[list[Panel]]], float, float]:
    """Each network's panels side by side (one per dtype), the networks in columns (in
    order, filled top down, as even as the order allows): the number of columns whose
    figure is closest to TARGET_ASPECT. Returns the columns of rows of panels, the width
    and the height in inches."""
    units: dict[str, list[Panel]] = {}
    for panel in panels:
        units.setdefault(panel.family, []).append(panel)
    rows = list(units.values())
    heights = [max(p.size[1] for p in row) for row in rows]
    best = None
    for count in range(1, len(rows) + 1):
        starts = _partition(heights, count)
        columns = [rows[a:b] for a, b in zip(starts, [*starts[1:], len(rows)], strict=True)
                   if b > a]
        width = sum(max(sum(p.size[0] for p in row) for row in column) for column in columns)
        tall = max(sum(max(p.size[1] for p in row) for row in column)
                   for column in columns) + 1.0 + BOTTOM_INCHES  # the colour bar
        score = abs(np.log(tall / width / TARGET_ASPECT))
        if best is None or score < best[0]:
            best = (score, columns, width, tall)
    return best[1], best[2], best[3]


def heatmap(outcomes: Sequence[CaseOutcome], framework: str, path: Path) -> Path | None:
    """Case x parameter cells: log10 of the gradient error of ``framework`` vs numpy, in
    eps; one panel per network and dtype (see :func:`heatmap_panels`)."""
    rows = []
    for outcome in outcomes:
        if framework not in outcome.results or "numpy" not in outcome.results:
            continue
        errors = {d.parameter: d.normwise_eps for d in outcome.differences
                  if d.quantity == "gradient" and (d.framework, d.baseline) == (framework,
                                                                                  "numpy")}
        if errors:
            rows.append((outcome.case, errors))
    if not rows:
        return None
    return draw_heatmap(heatmap_panels(rows), f"Gradient error, {framework} vs numpy", path)


def draw_heatmap(panels: list[Panel], title: str, path: Path) -> Path:
    """The panels as one PNG, cells drawn without interpolation, one shared colour bar."""
    plt = _pyplot()
    columns, width, height = _packed(panels)
    figure = plt.figure(figsize=(width, height))
    top = max(2.0, max((float(np.nanmax(p.values)) for p in panels
                        if np.isfinite(p.values).any()), default=2.0))
    colours = plt.get_cmap("viridis").with_extremes(bad="#dddddd")  # no such parameter
    image, left = None, 0.0
    for column in columns:
        y = height - 1.0  # below the colour bar
        for row in column:
            x = left
            for panel in row:
                w, h = panel.size
                axes = figure.add_axes(((x + panel.label_inches) / width,
                                        (y - h + COLUMN_LABEL_INCHES) / height,
                                        (w - panel.label_inches - 0.3) / width,
                                        (h - TITLE_INCHES - COLUMN_LABEL_INCHES) / height))
                image = axes.imshow(panel.values, aspect="auto", interpolation="nearest",
                                    cmap=colours, vmin=np.log10(FLOOR), vmax=top)
                axes.set_xticks(range(len(panel.columns)), panel.columns, rotation=90,
                                fontsize=7)
                axes.set_yticks(range(len(panel.rows)), panel.rows, fontsize=6)
                axes.set_title(panel.title, fontsize=8, loc="left")
                x += w
            y -= max(p.size[1] for p in row)
        left += max(sum(p.size[0] for p in row) for row in column)
    bar_axes = figure.add_axes((0.25, 1 - 0.45 / height, 0.5, 0.15 / height))
    bar = figure.colorbar(image, cax=bar_axes, orientation="horizontal")
    bar.set_label(f"{title}: log10(normwise error / eps); {np.log10(FLOOR):g} = exact "
                  "agreement, grey = no such parameter", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    _save(figure, path, tight=False)
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
    axes.set_xlabel(f"log10(normwise error / eps); exact agreement (0 eps) is drawn at "
                    f"{np.log10(FLOOR):g}")
    axes.set_ylabel("checks")
    axes.set_title("Distribution of errors per dtype")
    axes.legend()
    figure.tight_layout()
    _save(figure, path)
    return path


def _save(figure, path: Path, tight: bool = True) -> None:
    """Write the PNG atomically (temporary file, then rename), then free the figure."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        figure.savefig(temporary, dpi=DPI, bbox_inches="tight" if tight else None,
                       format="png")
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
