"""`training_curves.png`: training loss, in-batch accuracy and validation metrics of a run,
drawn from points kept in memory, never by re-reading `training_log.jsonl`; when it is drawn:
docs/RELIABILITY.md ("a stop signal right after a validation").
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dpr.training.step import update_number
from dpr.utils.io import atomic_write

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
CURVES_SIZE = (1200, 360)  # width × height in pixels
DRAW_INTERVAL_S = 60.0
_DPI = 100


class TrainingCurves:
    """The points of the curves, against optimizer updates (`update_number` of `batches` and
    `accumulation`); a batch logged twice (a run resumed from an earlier checkpoint) counts
    once, its last record. `clock`: monotonic seconds (faked by tests)."""

    def __init__(self, *, batches: int, accumulation: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.batches, self.accumulation = batches, accumulation
        self.clock = clock
        self.train: dict[tuple[int, int], tuple[float, float]] = {}
        self.validation: dict[str, dict[tuple[int, int], float]] = {}
        self.last_drawn = -math.inf

    def add(self, record: Mapping[str, Any]) -> None:
        """Takes the point of one `training_log.jsonl` record (other events are ignored)."""
        key = (record.get("epoch", 0), record.get("iteration", 0))
        if record.get("event") == "train":
            self.train[key] = (record["loss"], record["correct"] / max(record["questions"], 1))
        elif record.get("event") == "validation":
            self.validation.setdefault(record["metric"], {})[key] = record["value"]

    def _update(self, key: tuple[int, int]) -> int:
        return update_number(*key, batches=self.batches, accumulation=self.accumulation)

    def points(self) -> dict[str, Any]:
        """{"train": [(update, loss, accuracy)] in order, "validation": {metric: [(update,
        value)]} in the order the metrics first appeared}."""
        return {
            "train": [(self._update(key), *self.train[key]) for key in sorted(self.train)],
            "validation": {name: [(self._update(key), values[key]) for key in sorted(values)]
                           for name, values in self.validation.items()},
        }

    def maybe_draw(self, folder: str | Path) -> Path | None:
        """Draws when `DRAW_INTERVAL_S` seconds have passed since the last drawing; else None."""
        if self.clock() - self.last_drawn < DRAW_INTERVAL_S:
            return None
        return self.draw(folder)

    def draw(self, folder: str | Path) -> Path:
        """Draws `training_curves.png` in `folder` now (replacing the old one atomically)."""
        path = draw_curves(self.points(), Path(folder) / CURVES_FILE)
        self.last_drawn = self.clock()
        return path


def _smooth(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def draw_curves(curves: Mapping[str, Any], path: Path) -> Path:
    """Draws the points of `TrainingCurves.points` into the PNG `path` (written atomically);
    returns `path`."""
    from matplotlib.figure import Figure  # Agg through Figure.savefig, no pyplot state

    fig = Figure(figsize=(CURVES_SIZE[0] / _DPI, CURVES_SIZE[1] / _DPI), dpi=_DPI)
    loss_ax, acc_ax, val_ax = fig.subplots(1, 3)
    x = [u for u, _, _ in curves["train"]]
    window = max(1, len(x) // 20)
    for ax, column, label in ((loss_ax, 1, "training loss"), (acc_ax, 2, "in-batch accuracy")):
        values = [point[column] for point in curves["train"]]
        ax.plot(x, values, color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(x, _smooth(values, window), color="tab:blue", linewidth=1.6,
                label=f"mean of {window} batch(es)")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
    acc_ax.set_ylim(-0.02, 1.02)
    axes = [val_ax]
    for i, (name, points) in enumerate(curves["validation"].items()):  # log order
        ax = axes[0] if i == 0 else axes[0].twinx()
        color = ("tab:orange", "tab:green", "tab:red")[i % 3]
        ax.plot([u for u, _ in points], [v for _, v in points], marker="o", color=color)
        ax.set_ylabel(name, color=color, fontsize=9)
    val_ax.set_title("validation", fontsize=10)
    for ax in (loss_ax, acc_ax, val_ax):
        ax.set_xlabel("updates", fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=_DPI)
    return path
