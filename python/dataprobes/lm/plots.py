"""Plots a person would rather look at than read (matplotlib, PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .evaluate import GenerationReport
from .train import TrainResult, smoothed

#: Colour of the typical band in :func:`plot_generation_nll`.
BAND_COLOR = "0.8"

#: Colours of the decoding settings, in order (matplotlib's tab10 without its grey).
_SETTING_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9")


def setting_color(i: int) -> str:
    """The colour of the ``i``-th decoding setting's histogram (never the band's grey)."""
    return _SETTING_COLORS[i % len(_SETTING_COLORS)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curve(result: TrainResult, path: str | Path, title: str = "") -> Path:
    """Left: training and held-out NLL/token against the entropy-rate floor.
    Right: the held-out exact excess loss KL(truth ‖ model), log scale."""
    plt = _pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    tl = smoothed(result.train_loss)
    ax.plot(np.arange(len(tl)) + (len(result.train_loss) - len(tl)), tl, lw=1, alpha=0.6, label="train loss (smoothed)")
    ax.plot(result.eval_steps, result.eval_nll, "o-", label="held-out NLL")
    ax.axhline(result.entropy_rate, color="k", ls="--", label=f"entropy rate {result.entropy_rate:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.set_title(title or "Learning curve against the entropy-rate floor")
    ax.legend()
    ax.grid(alpha=0.3)
    ax2.semilogy(result.eval_steps, np.maximum(result.eval_kl, 1e-12), "o-", color="C3")
    ax2.set_xlabel("step")
    ax2.set_ylabel("KL(truth ‖ model), nats / token")
    ax2.set_title("Exact excess loss (held out)")
    ax2.grid(alpha=0.3, which="both")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_generation_nll(reports: Sequence[GenerationReport], path: str | Path, title: str = "") -> Path:
    """Histogram of the true NLL/token of generations per decoding setting,
    with the typical band shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    allv = np.concatenate([r.true_nll[np.isfinite(r.true_nll)] for r in reports])
    bins = np.linspace(allv.min(), allv.max(), 60) if allv.size else 10
    for i, r in enumerate(reports):
        vals = r.true_nll[np.isfinite(r.true_nll)]
        ax.hist(vals, bins=bins, alpha=0.5, color=setting_color(i), label=f"{r.label} (mean {r.mean_nll:.3f})")
    h, eps = reports[0].entropy_rate, reports[0].eps
    # the band is grey: no histogram colour (C0, C1, ...) is grey, so no setting looks like the band
    ax.axvspan(h - eps, h + eps, color=BAND_COLOR, alpha=0.4, label=f"typical band {h:.3f} ± {eps:.3f}")
    ax.axvline(h, color="k", ls="--", lw=1)
    ax.set_xlabel("NLL / token under the true process (nats)")
    ax.set_ylabel("generations")
    ax.set_title(title or "Typicality of generations")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
