"""`python infer.py` / `stylize`: repaint photos in the style of paintings."""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import signal
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

from stylize.batch import Inputs, Report, find_inputs
from stylize.distributed import Dist, device_for, gather, process_group, shard
from stylize.files import remove_stale_temps
from stylize.images import (
    ALPHA_EXTS,
    IMAGE_EXTS,
    MAX_PIXELS,
    WRITE_EXTS,
    ImageError,
    limit_long,
    load_image,
    resize_short,
    save_image,
)
from stylize.stylizer import StyleStats, Stylizer
from stylize.weights import DEFAULT_DECODER, DEFAULT_ENCODER, WeightsError

EXAMPLES = """examples:
  python infer.py --content photo.jpg --style painting.jpg                 # writes outputs/photo_stylized_painting.jpg
  python infer.py --content photo.jpg --style painting.jpg --alpha 0.6 --output out.png
  python infer.py --content photos/ --style paintings/ --output results/   # every photo x painting
  python infer.py --content photos/ --style paintings/ --recursive --json > report.json

Batches: each style is encoded once per run. Files that are not images are skipped and
listed; existing outputs are kept (so a rerun resumes where a stopped one ended) unless
--overwrite is given; every output is written to a temporary file and renamed, so an
interrupted run never leaves half an image. Unreadable inputs are reported at the end with
the reason. Exit code: 0 when every pair was written, 1 when some failed, 2 for a usage
error (bad option, missing input, unwritable output folder, unusable weights).

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
    p.add_argument(
        "--recursive",
        action="store_true",
        help="also take the photos in --content's subfolders; the output keeps the same subfolders",
    )
    p.add_argument(
        "--transparency",
        choices=("white", "keep"),
        default="white",
        help="images with an alpha channel: composite on white (default), or keep: stylize on white and "
        "give the output the input's alpha (needs png, webp or tiff output)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=MAX_PIXELS / 1e6,
        help="refuse images over N megapixels before decoding them (they would need too much memory); "
        f"0 for no limit (default: {MAX_PIXELS / 1e6:g})",
    )
    p.add_argument(
        "--json", action="store_true", help="print the report as JSON on stdout (problems still go to stderr)"
    )
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
    for name in ("content_size", "max_size", "style_size", "max_megapixels"):
        if not getattr(args, name) >= 0:
            p.error(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    if "." + args.ext.lower().lstrip(".") not in WRITE_EXTS:
        p.error(f"--ext {args.ext!r}: choose one of {', '.join(sorted(e[1:] for e in WRITE_EXTS))}")
    for name in ("content", "style"):
        if not getattr(args, name).exists():
            p.error(f"--{name} {getattr(args, name)}: no such file or folder")
    if output_folder(args) is None and args.output.suffix.lower() not in WRITE_EXTS:
        p.error(f"--output {args.output}: unknown image extension; use one of {', '.join(sorted(WRITE_EXTS))}")
    out_ext = "." + args.ext.lower().lstrip(".") if output_folder(args) else args.output.suffix.lower()
    if args.transparency == "keep" and out_ext not in ALPHA_EXTS:
        p.error(f"--transparency keep needs an output format with alpha ({', '.join(sorted(ALPHA_EXTS))})")
    return args


class UsageError(Exception):
    """A problem with the command line found after parsing it (exit code 2)."""


def prepare(img: torch.Tensor, size: int, max_size: int, crop: bool) -> torch.Tensor:
    img = resize_short(img, size)
    if crop:
        side = min(img.shape[-2:])
        top, left = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        img = img[:, top : top + side, left : left + side]
    return limit_long(img, max_size)


def single_pair(args: argparse.Namespace) -> bool:
    return args.content.is_file() and args.style.is_file()


def output_folder(args: argparse.Namespace) -> Path | None:
    """Where outputs go; None when --output names the file of a single pair."""
    if single_pair(args) and args.output is not None and not args.output.is_dir():
        return None
    return args.output or Path("outputs")


def output_path(args: argparse.Namespace, content_name: Path, style_name: Path) -> Path:
    folder = output_folder(args)
    if folder is None:
        return args.output
    return folder / content_name.parent / f"{content_name.name}_stylized_{style_name.name}.{args.ext.lstrip('.')}"


def check_writable(folder: Path) -> None:
    """Fail early, before any work, when the output folder cannot be made or written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UsageError(f"--output {folder}: cannot write there ({e.strerror or e})") from None


def find_all(args: argparse.Namespace, report: Report, d: Dist) -> tuple[Inputs, Inputs]:
    contents = find_inputs(args.content, args.recursive, exclude=output_folder(args))
    styles = find_inputs(args.style)
    for name, found in (("content", contents), ("style", styles)):
        if not found.images:
            exts = ", ".join(sorted(IMAGE_EXTS))
            why = (
                f"cannot list it ({found.unlistable[0][1]})" if found.unlistable else f"folder holds no images ({exts})"
            )
            raise UsageError(f"--{name} {found.root}: {why}")
        if d.is_main:  # reported once, not by every process
            report.not_images += found.not_images
            for folder, reason in found.unlistable:
                report.fail(folder, f"cannot list folder ({reason})")
    return contents, styles


def run(args: argparse.Namespace, report: Report, d: Dist | None = None) -> None:
    d = d or Dist()  # one process unless torchrun says otherwise
    contents, styles = find_all(args, report, d)
    todo = []  # (content, style, output), grouped by content
    # Under torchrun each process does its own contiguous share of the sorted pairs.
    for content, style in shard([(c, s) for c in contents.images for s in styles.images], d):
        out = output_path(args, contents.names[content], styles.names[style])
        if out.exists() and not args.overwrite:
            report.existing.append(out)
        else:
            todo.append((content, style, out))
    if not todo:
        return
    check_writable(output_folder(args) or args.output.parent)
    for folder in {out.parent for _, _, out in todo if out.parent.is_dir()}:
        remove_stale_temps(folder)  # left by a run killed with SIGKILL
    stylizer = Stylizer.from_pretrained(args.encoder, args.decoder, device_for(args.device, d))
    max_pixels = int(args.max_megapixels * 1e6)
    encoded: dict[Path, StyleStats | None] = {}  # each style is encoded once per run; None: failed

    def style_stats(path: Path) -> StyleStats | None:
        if path not in encoded:
            try:
                img = load_image(path, max_pixels=max_pixels)
                encoded[path] = stylizer.style_stats(prepare(img, args.style_size, 0, args.crop))
            except ImageError as e:
                report.fail(path, e)
                encoded[path] = None
        return encoded[path]

    with tqdm(total=len(todo), desc="stylize", unit="img", disable=len(todo) < 2 or not d.is_main) as bar:
        for cpath, group in itertools.groupby(todo, key=lambda t: t[0]):
            group = list(group)
            try:
                img = load_image(cpath, keep_alpha=args.transparency == "keep", max_pixels=max_pixels)
                content = prepare(img, args.content_size, args.max_size, args.crop)
            except ImageError as e:
                report.fail(cpath, e)
                bar.update(len(group))
                continue
            for _, spath, out in group:
                bar.update(1)
                if (stats := style_stats(spath)) is None:
                    continue
                try:
                    rgb = stylizer.stylize(content[:3], stats, args.alpha)
                except (torch.OutOfMemoryError, MemoryError):
                    h, w = content.shape[1:]
                    report.fail(cpath, f"out of memory at {w}x{h} px (a smaller --max-size needs less)")
                    continue
                if not write(torch.cat([rgb, content[3:]]), out, report):
                    return
                report.written.append((cpath, spath, out))


def write(img: torch.Tensor, out: Path, report: Report) -> bool:
    """Save atomically, recording a failure; False when the batch must stop (disk full)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(img, out)
        return True
    except ImageError as e:
        report.fail(out, e)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            report.fail(out, "no space left on device (nothing partial was left)")
            report.stopped = "the disk is full; free some space and rerun to do the rest"
            return False
        report.fail(out, f"cannot write ({e.strerror or e})")
    return True


def main(argv: list[str] | None = None) -> None:
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 must not crash a report
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    args = parse_args(argv)
    # SIGTERM takes Ctrl-C's path, so the output being written is removed, not left half done.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    report = Report()
    try:
        with process_group("gloo") as d:  # under torchrun; gloo carries the summary from CPU or GPU
            run(args, report, d)
            report = Report.merge(gather(report, d))
        # Rank 0 alone reports failures in its exit code and prints: torchrun stops the other
        # processes as soon as one fails, which could cut rank 0 off before the summary.
        if not d.is_main:
            raise SystemExit(0)
        code = report.exit_code
    except (UsageError, WeightsError) as e:
        print(f"stylize: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        report.stopped = "interrupted; finished outputs are kept, rerun to do the rest"
        code = 130
    print(report.to_json() if args.json else report.summary())
    if report.problems():
        print(report.problems(), file=sys.stderr)
    raise SystemExit(code)
