"""Charts of the report, drawn with matplotlib (Agg backend) and returned as PNG bytes for embedding."""
from __future__ import annotations

import io
import math

import numpy as np

_STATE_COLOURS = {"speak": "#d62728", "listen": "#1f77b4", "idle": "#7f7f7f", "mixed": "#9467bd",
                  "discard": "#8c564b", "unlabelled": "#bcbd22"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig, dpi: int = 90, tight: bool = True) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    return buf.getvalue()


def funnel_chart(stages: list[tuple[str, int, float]]) -> bytes:
    """Horizontal bars of hours per funnel step, annotated with counts and share of input hours."""
    plt = _plt()
    labels = [s[0] for s in stages]
    hrs = [s[2] for s in stages]
    base = hrs[0] if hrs and hrs[0] else None
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(stages) + 1.0))
    y = np.arange(len(stages))[::-1]
    ax.barh(y, hrs, color="#2a9d8f")
    ax.set_yticks(y, labels)
    ax.set_xlabel("hours")
    top = max(hrs) if hrs and max(hrs) > 0 else 1.0
    for yi, (label, count, h) in zip(y, stages):
        share = f", {100 * h / base:.1f}% of input" if base else ""
        ax.text(h + top * 0.01, yi, f"{count} ({h:.4g} h{share})", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.6)
    ax.set_title("Funnel: what each step kept")
    return _png(fig)


def rejects_chart(rows: list[tuple[str, int, float]]) -> bytes:
    """Rejected items per stage/level:reason: hours (bars) with counts annotated."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(rows) + 1.2))
    y = np.arange(len(rows))[::-1]
    hrs = [r[2] for r in rows]
    ax.barh(y, hrs, color="#e76f51")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("hours rejected")
    top = max(hrs) if hrs and max(hrs) > 0 else 1.0
    for yi, (_, count, h) in zip(y, rows):
        ax.text(h + top * 0.01, yi, f"{count} items, {h:.4g} h", va="center", fontsize=8)
    ax.set_xlim(0, top * 1.5)
    ax.set_title("Rejected per reason")
    return _png(fig)


def _hist_ax(ax, values: np.ndarray, title: str, xlabel: str, bins: int = 30, lines: dict[str, float] | None = None,
             overlay: dict[str, np.ndarray] | None = None, integer: bool = False, fontsize: int = 10) -> None:
    groups = overlay if overlay else {"": values}
    present = [g for g in groups.values() if len(g)]
    allv = np.concatenate(present) if present else np.zeros(0)
    if integer and len(allv):
        lo, hi = int(np.floor(allv.min())), int(np.ceil(allv.max()))
        edges = np.arange(lo - 0.5, hi + 1.5, max(1, math.ceil((hi - lo + 1) / 40)))
    else:
        edges = bins
        if len(allv) and allv.min() == allv.max():
            edges = np.linspace(allv.min() - 0.5, allv.max() + 0.5, 6)
    for name, g in groups.items():
        if len(g):
            ax.hist(g, bins=edges, alpha=0.65 if overlay else 0.9, label=name or None, color=_STATE_COLOURS.get(name))
    for name, x in (lines or {}).items():
        ax.axvline(x, color="black", linestyle="--", linewidth=1)
        ax.text(x, ax.get_ylim()[1] * 0.95, f" {name}={x:g}", fontsize=fontsize - 3, va="top")
    if overlay:
        ax.legend(fontsize=fontsize - 3)
    ax.set_title(title, fontsize=fontsize)
    ax.set_xlabel(xlabel, fontsize=fontsize - 2)
    ax.set_ylabel("count", fontsize=fontsize - 2)
    ax.tick_params(labelsize=fontsize - 3)


def histogram(values: np.ndarray, title: str, xlabel: str, bins: int = 30, lines: dict[str, float] | None = None,
              overlay: dict[str, np.ndarray] | None = None, integer: bool = False) -> bytes:
    """Histogram of values (or of several overlaid groups), with optional labelled threshold lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    _hist_ax(ax, values, title, xlabel, bins, lines, overlay, integer)
    return _png(fig)


def small_multiples(panels: list[dict], title: str, ncols: int = 4) -> bytes:
    """One figure of histograms, one panel per dict(title, values, overlay=None, lines=None): a map
    column's keys side by side, drawn and encoded once."""
    plt = _plt()
    n = max(1, len(panels))
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.5 * nrows + 0.4), squeeze=False)
    for ax, p in zip(axes.flat, panels):
        _hist_ax(ax, p["values"], p["title"], "", bins=20, lines=p.get("lines"), overlay=p.get("overlay"), fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    # fixed margins: tight layout would draw the (large) figure twice more
    top = 1 - 0.45 / (2.5 * nrows + 0.4)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=min(0.93, top - 0.03), wspace=0.3, hspace=0.55)
    return _png(fig, dpi=72, tight=False)


def bars(counts: dict[str, float], title: str, ylabel: str, colours: bool = False) -> bytes:
    plt = _plt()
    keys = list(counts)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(keys) + 2), 3.0))
    col = [_STATE_COLOURS.get(k, "#457b9d") for k in keys] if colours else "#457b9d"
    ax.bar(range(len(keys)), [counts[k] for k in keys], color=col)
    ax.set_xticks(range(len(keys)), keys, rotation=30 if len(keys) > 5 else 0, ha="right" if len(keys) > 5 else "center", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)


def scatter(x: np.ndarray, y: np.ndarray, title: str, xlabel: str, ylabel: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.0))
    ax.scatter(x, y, s=12, alpha=0.6, color="#264653")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)
