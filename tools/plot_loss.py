#!/usr/bin/python3
"""Plot the loss log of tools/train.py (loss.csv) to a PNG.

    tools/plot_loss.py build/train/starry_night/loss.csv [-o loss.png] [--smooth 20]

Top: the weighted total and its terms (content, style per scale, total
variation) on a log scale, against iterations; bottom: the learning rate
and seconds per iteration. Several CSVs may be given to compare runs (their
totals are overlaid). Default output: the first CSV with .png instead of
.csv.
"""
import argparse
import csv
import sys
from pathlib import Path

import numpy as np


def read_log(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError("%s: no rows" % path)
    cols = {}
    for k in rows[0]:
        try:
            cols[k] = np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows])
        except ValueError:
            continue
    if "iteration" not in cols or "loss" not in cols:
        raise ValueError("%s: not a train.py loss log (no iteration/loss columns)" % path)
    return cols


def smooth(y, n):
    """Moving average over n rows (shorter at the start)."""
    if n <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(np.nan_to_num(y), 0, 0.0))
    out = np.empty_like(y)
    for i in range(len(y)):
        lo = max(0, i + 1 - n)
        out[i] = (c[i + 1] - c[lo]) / (i + 1 - lo)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("csv", nargs="+", help="loss.csv file(s) written by tools/train.py")
    ap.add_argument("-o", "--output", help="PNG to write (default: first CSV as .png)")
    ap.add_argument("--smooth", type=int, default=10,
                    help="moving average over this many log rows (default: 10; 1 = raw)")
    ap.add_argument("--title", help="plot title (default: the CSV's folder name)")
    a = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        logs = [(Path(p), read_log(p)) for p in a.csv]
    except (OSError, ValueError) as e:
        print("plot_loss: %s" % e, file=sys.stderr)
        return 1
    out = Path(a.output) if a.output else logs[0][0].with_suffix(".png")
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax3 = ax2.twinx()
    ax3.set_ylabel("s / iteration (dotted)")
    for i, (path, c) in enumerate(logs):
        it = c["iteration"]
        label = path.parent.name or path.stem
        if len(logs) == 1:
            ax.plot(it, smooth(c["loss"], a.smooth), label="total (weighted)", lw=2, color="k")
            for key in ["content", "style"] + sorted(k for k in c if k.startswith("style_x")) \
                    + ["tv"]:
                if key in c and np.nanmax(np.abs(c[key])) > 0:
                    ax.plot(it, smooth(c[key], a.smooth), label=key,
                            lw=1.5 if key in ("content", "style") else 1,
                            ls="-" if key in ("content", "style") else "--")
        else:
            ax.plot(it, smooth(c["loss"], a.smooth), label="%s total" % label)
        if "lr" in c:
            ax2.plot(it, c["lr"], color="C%d" % i, label="lr" if i == 0 else None)
        if "s_per_iter" in c:
            ax3.plot(it, c["s_per_iter"], color="gray" if len(logs) == 1 else "C%d" % i, ls=":",
                     alpha=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("loss (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(a.title or ", ".join(p.parent.name or p.name for p, _ in logs))
    ax2.set_ylabel("learning rate")
    ax2.set_xlabel("iteration")
    ax2.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
