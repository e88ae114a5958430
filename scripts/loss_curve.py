"""Plot a training run's losses against images seen: the picture of a long CPU run in the README.

    python scripts/loss_curve.py runs/cpu/log.csv [more/log.csv ...] --out docs/loss_curve.png

Several logs (the pieces of one long run, resumed in different run folders) are drawn as one curve.
Needs matplotlib (the `eval` extra).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

# log columns of the AdaIN stage drawn on the left, unweighted, where a run has them
PHOTO_TERMS = (
    ("identity", "identity loss (L1, alpha 0)"),
    ("laplacian", "Laplacian loss (MSE of edges)"),
    ("ssim", "SSIM loss (1 - SSIM, luminance)"),
)


def read(paths: list[Path]) -> list[dict[str, str]]:
    rows = [r for p in paths for r in csv.DictReader(open(p, newline=""))]
    return sorted({int(r["step"]): r for r in rows}.values(), key=lambda r: int(r["step"]))


def smooth(values: list[float], k: int) -> list[float]:
    """Running mean over the last k logged values (a batch of 8 is a noisy estimate)."""
    return [sum(values[max(0, i - k + 1) : i + 1]) / len(values[max(0, i - k + 1) : i + 1]) for i in range(len(values))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", type=Path, nargs="+")
    p.add_argument("--out", type=Path, default=Path("docs/loss_curve.png"))
    p.add_argument("--batch", type=int, default=8, help="batch size, for logs without an images column")
    p.add_argument("--smooth", type=int, default=8, help="running mean over N logged rows (default: 8)")
    args = p.parse_args()
    rows = read(args.logs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)

    def images(part: list[dict[str, str]]) -> list[float]:
        return [int(r.get("images") or int(r["step"]) * args.batch) / 1000 for r in part]

    # left: the losses that hold the photo: the warm start's L1 of the photo decoded from its own
    # features, the same L1 in the AdaIN stage (the identity loss, alpha 0), the Laplacian loss
    # (the photo's edges) and the SSIM loss (its local structure) where the stage has them
    recon = [r for r in rows if r.get("stage", "adain") == "reconstruct"]
    adain = [r for r in rows if r.get("stage", "adain") == "adain"]
    parts = [(recon, "content", "warm start (L1)")]
    parts += [([r for r in adain if float(r.get(key) or 0) > 0], key, label) for key, label in PHOTO_TERMS]
    for part, key, label in parts:
        if part:
            axes[0].plot(images(part), smooth([float(r[key]) for r in part], args.smooth), label=label)
    axes[0].set_title("Losses that hold the photo")
    # right: the AdaIN stage's content and style losses
    for key in ("content", "style"):
        axes[1].plot(images(adain), smooth([float(r[key]) for r in adain], args.smooth), label=f"{key} loss")
    axes[1].set_title("AdaIN loss (style x 1, not x lambda)")
    for ax in axes:
        ax.set_xlabel("images seen (thousands)")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_visible(bool(ax.lines))
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}: {len(rows)} logged steps")


if __name__ == "__main__":
    main()
