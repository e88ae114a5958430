"""`python infer.py` / `stylize`: repaint photos in the style of paintings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from stylize.distributed import Dist, device_for, gather, process_group, shard
from stylize.images import IMAGE_EXTS, ImageError, limit_long, list_images, load_image, resize_short, save_image
from stylize.stylizer import StyleStats, Stylizer
from stylize.weights import DEFAULT_DECODER, DEFAULT_ENCODER, WeightsError

EXAMPLES = """examples:
  python infer.py --content photo.jpg --style painting.jpg                 # writes outputs/photo_stylized_painting.jpg
  python infer.py --content photo.jpg --style painting.jpg --alpha 0.6 --output out.png
  python infer.py --content photos/ --style paintings/ --output results/   # every photo x painting

Each style is encoded once per run. Existing outputs are kept (and reported as skipped)
unless --overwrite is given. Unreadable inputs are reported at the end; the exit code is
0 when every pair was written, 1 when some failed, 2 for a usage error.

Under torchrun (torchrun --nproc-per-node N infer.py --content photos/ ...) the sorted
content x style pairs are split between the processes, each writes its own share, and
rank 0 prints one summary for the whole run."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stylize",
        description="Repaint photos in the style of paintings with AdaIN (Huang & Belongie 2017).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--content", type=Path, required=True, help="a photo, or a folder of them")
    p.add_argument("--style", type=Path, required=True, help="a painting, or a folder of them")
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="style strength from 0 (the content back) to 1 (full style) (default: 1)",
    )
    p.add_argument(
        "--output",
        type=Path,
        help="output file for one pair, output folder otherwise (default: outputs/); "
        "folder outputs are named CONTENT_stylized_STYLE.EXT",
    )
    p.add_argument(
        "--content-size",
        type=int,
        default=0,
        help="resize contents so the short side is N px; 0 keeps the size (default: 0)",
    )
    p.add_argument(
        "--max-size",
        type=int,
        default=1024,
        help="shrink contents whose long side exceeds N px, to bound time and memory; 0 for no limit (default: 1024)",
    )
    p.add_argument(
        "--style-size",
        type=int,
        default=512,
        help="resize styles so the short side is N px; 0 keeps the size. The size sets the "
        "scale of brush strokes in the result (default: 512)",
    )
    p.add_argument("--crop", action="store_true", help="centre-crop contents and styles to squares")
    p.add_argument("--ext", default="jpg", help="output format for folder runs: jpg, png, webp... (default: jpg)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1... (default: auto)")
    p.add_argument("--encoder", default=str(DEFAULT_ENCODER), help="encoder weights file or URL#sha256=HEX")
    p.add_argument(
        "--decoder",
        default=str(DEFAULT_DECODER),
        help="decoder weights file (or a training checkpoint) or URL#sha256=HEX",
    )
    args = p.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if "." + args.ext.lower().lstrip(".") not in IMAGE_EXTS:
        p.error(f"--ext {args.ext!r}: choose one of {', '.join(sorted(e[1:] for e in IMAGE_EXTS))}")
    for name in ("content", "style"):
        path = getattr(args, name)
        if not path.exists():
            p.error(f"--{name} {path}: no such file or folder")
        if path.is_dir() and not list_images(path):
            p.error(f"--{name} {path}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    return args


def inputs(path: Path) -> list[Path]:
    return list_images(path) if path.is_dir() else [path]


def prepare(img: torch.Tensor, size: int, max_size: int, crop: bool) -> torch.Tensor:
    img = resize_short(img, size)
    if crop:
        side = min(img.shape[-2:])
        top, left = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        img = img[:, top : top + side, left : left + side]
    return limit_long(img, max_size)


def output_path(args: argparse.Namespace, content: Path, style: Path) -> Path:
    name = f"{content.stem}_stylized_{style.stem}.{args.ext.lstrip('.')}"
    single = args.content.is_file() and args.style.is_file()
    if single and args.output is not None:
        return args.output
    return (args.output or Path("outputs")) / name


def run(args: argparse.Namespace, d: Dist | None = None) -> int:
    d = d or Dist()  # one process unless torchrun says otherwise
    stylizer = Stylizer.from_pretrained(args.encoder, args.decoder, device_for(args.device, d))
    contents, style_files = inputs(args.content), inputs(args.style)
    # Under torchrun each process does its own contiguous share of the sorted pairs.
    mine = set(shard([(c, s) for c in contents for s in style_files], d))
    failed: list[str] = []
    styles: list[tuple[Path, StyleStats]] = []
    needed = {s for _, s in mine}
    for path in (s for s in style_files if s in needed):  # each style is encoded once per run (and process)
        try:
            styles.append((path, stylizer.style_stats(prepare(load_image(path), args.style_size, 0, args.crop))))
        except ImageError as e:
            failed.append(str(e))
    written = skipped = 0
    total = sum((c, s) in mine for c in contents for s, _ in styles)
    bar = tqdm(total=total, desc="stylize", unit="img", disable=total < 2 or not d.is_main)
    for cpath in contents:
        todo = [(s, st, output_path(args, cpath, s)) for s, st in styles if (cpath, s) in mine]
        ready = [(s, st, out) for s, st, out in todo if args.overwrite or not out.exists()]
        skipped += len(todo) - len(ready)
        bar.update(len(todo) - len(ready))
        if not ready:
            continue
        try:
            content = prepare(load_image(cpath), args.content_size, args.max_size, args.crop)
        except ImageError as e:
            failed.append(str(e))
            bar.update(len(ready))
            continue
        for _, stats, out in ready:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                save_image(stylizer.stylize(content, stats, args.alpha), out)
                written += 1
            except (ImageError, OSError) as e:
                failed.append(f"{out}: cannot write ({e})")
            bar.update(1)
    bar.close()
    written, skipped, failed = merge(gather((written, skipped, failed), d))
    if d.is_main:
        print(f"{written} written, {skipped} skipped (already there; --overwrite to redo), {len(failed)} failed")
        for reason in failed:
            print(f"  failed: {reason}", file=sys.stderr)
    # Rank 0 alone reports the failures in its exit code: torchrun stops the other processes as
    # soon as one fails, which could cut rank 0 off before it prints the summary.
    return 1 if failed and d.is_main else 0


def merge(results: list[tuple[int, int, list[str]]]) -> tuple[int, int, list[str]]:
    """One summary from the processes' (written, skipped, failures), in rank order. An input
    that failed on several processes (a style, or a content whose pairs were split) counts once."""
    failed = dict.fromkeys(reason for _, _, reasons in results for reason in reasons)
    return sum(r[0] for r in results), sum(r[1] for r in results), list(failed)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        with process_group("gloo") as d:  # under torchrun; gloo carries the summary from CPU or GPU
            code = run(args, d)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept, rerun to do the rest", file=sys.stderr)
        code = 130
    raise SystemExit(code)
