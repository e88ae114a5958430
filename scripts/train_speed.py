"""Training throughput of finished runs, from their log.csv: images per second between the first
and the last logged step (the first interval, with its start-up, is left out).

    python scripts/train_speed.py runs/a runs/b --batch 4 8

Runs of older versions log no `images` column: --batch gives each run's batch size for those.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def rate(run: Path, batch: int | None) -> tuple[float, int]:
    rows = list(csv.DictReader(open(run / "log.csv", newline="")))
    if len(rows) < 2:
        raise SystemExit(f"{run}: needs at least two logged steps")
    first, last = rows[0], rows[-1]
    images = (
        int(last["images"]) - int(first["images"])
        if "images" in first
        else (int(last["step"]) - int(first["step"])) * batch
    )
    return images / (float(last["seconds"]) - float(first["seconds"])), images


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--batch", type=int, nargs="*", default=[], help="batch size per run, for logs without images")
    args = p.parse_args()
    batches = args.batch + [None] * (len(args.runs) - len(args.batch))
    for run, batch in zip(args.runs, batches):
        per_second, images = rate(run, batch)
        print(f"{run}: {per_second:.2f} images/s over {images} images")


if __name__ == "__main__":
    main()
