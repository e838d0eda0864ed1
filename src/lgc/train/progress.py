"""What trainnet shows while it trains: MATLAB's verbose table, a tqdm progress bar, and the
training-progress figure written to a PNG file (matplotlib, Agg backend)."""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

import numpy as np

# --- the verbose table ---------------------------------------------------------------------------

_COLUMNS = [("Epoch", "", 7), ("Iteration", "", 11), ("Time Elapsed", "(hh:mm:ss)", 14),
            ("Mini-batch", "Accuracy", 12), ("Validation", "Accuracy", 12),
            ("Mini-batch", "Loss", 12), ("Validation", "Loss", 12),
            ("Base Learning", "Rate", 15)]


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _rate(v: float) -> str:
    return f"{v:.4f}" if v >= 1e-3 or v == 0 else f"{v:.4e}"


class VerboseTable:
    """MATLAB's training table. The validation columns appear only with validation data, the
    accuracy columns only for classification; blank cells where nothing was computed."""

    def __init__(self, validation: bool, classification: bool, write=None):
        keep = []
        for title, sub, w in _COLUMNS:
            if title == "Validation" and not validation:
                continue
            if sub == "Accuracy" and not classification:
                continue
            keep.append((title, sub, w))
        self.columns = keep
        self.write = write or (lambda line: print(line, file=sys.stdout))

    def _row(self, cells) -> str:
        return "|" + "|".join(f" {c:>{w}} " for c, (_, _, w) in zip(cells, self.columns)) + "|"

    def header(self) -> None:
        rule = "|" + "=" * (sum(w + 3 for _, _, w in self.columns) - 1) + "|"
        centred = ["|" + "|".join(f"{t:^{w + 2}}" for t, _, w in self.columns) + "|",
                   "|" + "|".join(f"{s:^{w + 2}}" for _, s, w in self.columns) + "|"]
        for line in (rule, *centred, rule):
            self.write(line)

    def row(self, epoch: int, iteration: int, elapsed: float, r: dict) -> None:
        def num(v, pct=False):
            if v is None or not np.isfinite(v):
                return ""
            return f"{v:.2f}%" if pct else f"{v:.4f}"
        values = {"Epoch": str(epoch), "Iteration": str(iteration), "Time Elapsed": _hms(elapsed),
                  ("Mini-batch", "Accuracy"): num(r["TrainingAccuracy"], True),
                  ("Validation", "Accuracy"): num(r["ValidationAccuracy"], True),
                  ("Mini-batch", "Loss"): num(r["TrainingLoss"]),
                  ("Validation", "Loss"): num(r["ValidationLoss"]),
                  "Base Learning": _rate(r["LearnRate"])}
        self.write(self._row([values.get((t, s), values.get(t, "")) for t, s, _ in
                              self.columns]))

    def footer(self, reason: str) -> None:
        self.write("|" + "=" * (sum(w + 3 for _, _, w in self.columns) - 1) + "|")
        self.write(f"Training finished: {reason}.")


class ProgressBar:
    """A tqdm bar over all iterations, on stderr; the table is written through it so the two
    do not tear each other."""

    def __init__(self, total: int, initial: int = 0):
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, initial=initial, unit="it", desc="trainnet", leave=True,
                        dynamic_ncols=True, file=sys.stderr)

    def write(self, line: str) -> None:
        self._tqdm.write(line, file=sys.stdout)

    def update(self, loss: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --- the training-progress figure -----------------------------------------------------------------


def smooth(values, factor: float = 0.6) -> np.ndarray:
    """Exponential moving average with bias correction, skipping NaN entries (as the smoothed
    curves of MATLAB's training plot)."""
    out = np.full(len(values), np.nan)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            avg = factor * avg + (1 - factor) * v
            weight = factor * weight + (1 - factor)
        if weight:
            out[i] = avg / weight
    return out


def default_plot_path(checkpoint_path: str) -> str:
    """CheckpointPath/training-progress.png, or a per-process file in the temp folder."""
    if checkpoint_path:
        return os.path.join(checkpoint_path, "training-progress.png")
    return os.path.join(tempfile.gettempdir(), f"lgc-training-progress-{os.getpid()}.png")


class TrainingPlot:
    """Writes the training-progress PNG: (top) accuracy, (bottom) loss per iteration, raw and
    smoothed, validation points, shaded bands for alternate epochs. `refresh` redraws at most
    every `interval` seconds unless forced (epoch ends, the end of training)."""

    def __init__(self, path: str, classification: bool, interval: float = 5.0):
        self.path, self.classification, self.interval = path, classification, interval
        self.last = -math.inf
        self.writes = 0
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)

    def refresh(self, history: dict, force: bool = False, title: str = "") -> bool:
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return False
        self.last = now
        self._draw(history, title)
        self.writes += 1
        return True

    def _draw(self, h: dict, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure  # no pyplot: no global figure state, thread-safe

        it = np.asarray(h["Iteration"], float)
        epoch = np.asarray(h["Epoch"], int)
        panels = [("Accuracy (%)", "TrainingAccuracy", "ValidationAccuracy")] \
            if self.classification else []
        panels.append(("Loss", "TrainingLoss", "ValidationLoss"))
        fig = Figure(figsize=(9, 3.2 * len(panels)), dpi=80)
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (label, train, val) in zip(axes, panels):
            raw = np.asarray(h[train], float)
            for e in np.unique(epoch)[1::2]:  # alternate epochs shaded
                sel = it[epoch == e]
                ax.axvspan(sel.min() - 0.5, sel.max() + 0.5, color="0.93", lw=0)
            ax.plot(it, raw, color="tab:blue", alpha=0.3, lw=1, label="training")
            ax.plot(it, smooth(raw), color="tab:blue", lw=1.8, label="training (smoothed)")
            v = np.asarray(h[val], float)
            ok = np.isfinite(v)
            if ok.any():
                ax.plot(it[ok], v[ok], "o--", color="black", ms=4, lw=1, label="validation")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=8)
        axes[-1].set_xlabel("Iteration")
        fig.suptitle(title or "Training progress")
        fig.tight_layout()
        # write then rename: a viewer never sees half a PNG
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".training-progress.", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format="png")
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
