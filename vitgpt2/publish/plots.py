"""Pictures for the model card: loss curves and a grid of images with predicted and reference captions.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so that nothing touches
pyplot's global state or the user's interactive backend, and plotting works on headless training machines.
"""

import math
import textwrap
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

GRID_COLUMNS = 4
CELL_INCHES = 3.2
TEXT_INCHES = 1.0  # room under each image for the wrapped captions
WRAP_WIDTH = 38


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def loss_points(log_history: list[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
    return [step for step, _ in points], [value for _, value in points]


# evaluation scores drawn next to the loss, when the run evaluated during training
SCORE_CURVES = (("eval_bleu", "BLEU-4"), ("eval_cider", "CIDEr-D"))


def save_loss_curves(log_history: list[dict], path: str) -> str:
    """Training `loss` and `eval_loss` against the step, from `trainer.state.log_history`, and beside them the
    evaluation scores (BLEU-4, CIDEr-D) when there are any; returns `path`."""
    scores = {label: loss_points(log_history, key) for key, label in SCORE_CURVES}
    scores = {label: points for label, points in scores.items() if points[0]}
    figure = new_figure(11.5 if scores else 6.4, 4.0)
    panels = figure.subplots(1, 2 if scores else 1, squeeze=False)[0]
    axes = panels[0]
    for key, label in (("loss", "training loss"), ("eval_loss", "evaluation loss")):
        steps, values = loss_points(log_history, key)
        if steps:
            axes.plot(steps, values, marker="o", markersize=3, label=label)
    if axes.lines:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no loss was logged", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlabel="step", ylabel="loss", title="Loss")
    if scores:
        for label, (steps, values) in scores.items():
            panels[1].plot(steps, values, marker="o", markersize=4, label=label)
        panels[1].legend()
        panels[1].set(xlabel="step", ylabel="score (0-100)", title="Held-out scores")
    for panel in panels:
        panel.xaxis.set_major_locator(MaxNLocator(integer=True))
        panel.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def caption_text(record: dict) -> str:
    references = record.get("references") or []
    reference = references[0] if isinstance(references, (list, tuple)) and references else references
    lines = [f"predicted: {record.get('prediction', '')}"]
    if reference:
        lines.append(f"reference: {reference}")
    return "\n".join(textwrap.fill(line, WRAP_WIDTH) for line in lines)


def save_caption_grid(records: list[dict], load_image: Callable, path: str, max_images: int = 12) -> str:
    """Draws up to `max_images` records (image from `load_image(record)`, predicted and first reference caption)
    in a grid and saves it to `path`; returns `path`."""
    records = list(records)[:max_images]
    if not records:
        raise ValueError("save_caption_grid needs at least one record to draw")
    columns = min(GRID_COLUMNS, len(records))
    rows = math.ceil(len(records) / columns)
    figure = new_figure(columns * CELL_INCHES, rows * (CELL_INCHES + TEXT_INCHES))
    grid = figure.subplots(rows, columns, squeeze=False).ravel()
    for axes, record in zip(grid, records):
        axes.imshow(np.asarray(load_image(record).convert("RGB")))
        axes.set_title(str(record.get("file_name") or record.get("image_id", "")), fontsize=8)
        axes.text(0.0, -0.03, caption_text(record), transform=axes.transAxes, ha="left", va="top", fontsize=8)
    for axes in grid:
        axes.axis("off")
    figure.subplots_adjust(left=0.02, right=0.98, top=0.97, bottom=0.02, hspace=TEXT_INCHES / CELL_INCHES + 0.15)
    figure.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.2)  # keeps the last row's captions
    return path
