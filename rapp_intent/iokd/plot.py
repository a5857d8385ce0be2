"""Fig. 7 as a PNG (a matplotlib figure drawn off-screen, without pyplot's global state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure


def fig7_plot(data: dict[str, Any], path: Path) -> Path:
    """Fig. 7 as a PNG: MSE against labelled samples, with and without augmentation."""
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2, sharey=False)
    sets = [k[: -len("_mse")] for k in data["points"][0] if k.endswith("_mse")]
    for ax, set_name in zip(axes, sets + [None] * (2 - len(sets)), strict=False):
        if set_name is None:
            ax.axis("off")
            continue
        for aug, style in ((False, "o--"), (True, "s-")):
            pts = [p for p in data["points"] if p["augmented"] == aug]
            ax.plot(
                [p["labelled"] for p in pts],
                [p[f"{set_name}_mse"] for p in pts],
                style,
                label="with augmentation" if aug else "labelled only",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("labelled training samples")
        ax.set_ylabel("MSE")
        ax.set_title(f"minilm IoKD, {set_name}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
