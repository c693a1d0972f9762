"""One matplotlib style for every figure of the book.

Importing this module applies the style (``import pifs.plotting``). Figures use
axis labels with symbols and units, a colour-blind-safe cycle, and a DPI that
renders crisply in the HTML book.
"""
from __future__ import annotations

import matplotlib as mpl

__all__ = ["STYLE", "apply", "SCHEDULE_COLOURS"]

#: Okabe–Ito colour-blind-safe palette.
_CYCLE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]

#: Fixed colours for the paper's schedules, so every figure of the book agrees.
SCHEDULE_COLOURS = {
    "linear": "#0072B2",
    "cosine (s=0)": "#D55E00",
    "cosine (s=0.008)": "#009E73",
    "DDIM-50": "#CC79A7",
}

STYLE = {
    "figure.figsize": (7.0, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=_CYCLE),
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def apply() -> None:
    """Apply :data:`STYLE` to matplotlib's global rcParams."""
    mpl.rcParams.update(STYLE)


apply()
