"""`python infer.py` / `stylize-adain`: repaint photos in the style of paintings."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import itertools
import math
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from stylize import __version__
from stylize.batch import Inputs, Report, find_inputs
from stylize.controls import COLOR_MODES, normalise_weights
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
    load_mask,
    resize_short,
    save_image,
)
from stylize.overlap import WriteBehind, read_ahead
from stylize.stylizer import STYLE_SIZE, Style, Stylizer
from stylize.video import VIDEO_EXTS, VideoError, is_video, stylize_video
from stylize.weights import DEFAULT_DECODER, DEFAULT_ENCODER, WeightsError

EXAMPLES = """examples:
  python infer.py --content photo.jpg --style painting.jpg                 # writes outputs/photo_stylized_painting.jpg
  python infer.py --content photo.jpg --style painting.jpg --alpha 0.6 --output out.png
  python infer.py --content photos/ --style paintings/ --output results/   # every photo x painting
  python infer.py --content photos/ --style paintings/ --recursive --json > report.json
  python infer.py --content photo.jpg --style a.jpg,b.jpg --style-weights 2,1   # a mix: 2/3 a, 1/3 b
  python infer.py --content photo.jpg --style a.jpg,b.jpg --mask person.png     # a on the white, b elsewhere
  python infer.py --content photo.jpg --style painting.jpg --preserve-color luminance
  python infer.py --content photo.jpg --style painting.jpg --refine 20       # firmer strokes, ~1 min more on a CPU
  python infer.py --content clip.mp4 --style painting.jpg                  # writes outputs/clip_stylized_painting.mp4

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
        prog="stylize-adain",
        description="Repaint photos in the style of paintings with AdaIN (Huang & Belongie 2017).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--content",
        type=Path,
        required=True,
        help=f"a photo, a folder of them, or a video ({', '.join(sorted(VIDEO_EXTS))})",
    )
    p.add_argument(
        "--style",
        required=True,
        help="a painting, a folder of them, or several paintings separated by commas, mixed "
        "(--style-weights) or each in its own region (--mask)",
    )
    p.add_argument(
        "--style-weights",
        help="weights of comma-separated styles, e.g. 2,1; zero or positive, normalised to sum to 1 (default: equal)",
    )
    p.add_argument(
        "--mask",
        help="mask images, comma-separated, white = the region of the style in the same place in --style; "
        "one fewer mask than styles lets the last style fill the rest, otherwise unmasked areas keep the content",
    )
    p.add_argument(
        "--preserve-color",
        choices=COLOR_MODES,
        help="keep the content's colours: coral recolours the style to them first; luminance "
        "stylizes only the brightness and keeps the content's chroma",
    )
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
        default=STYLE_SIZE,
        help="resize styles so the short side is N px; 0 keeps the size. The size sets the "
        "scale of brush strokes in the result: larger paints larger strokes (default: %(default)s)",
    )
    p.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="after the decoder, STEPS steps of the paper's loss, plus an SSIM term that holds the photo's "
        "shapes, on the picture itself (beyond the paper): firmer strokes and more of the painting's palette, "
        "about 2-3 s per step at 512 px on a 2-core CPU (docs/usage.md); "
        "20 is a good start, 0 is off (default: 0)",
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
    p.add_argument(
        "--audio", choices=("keep", "drop"), default="keep", help="video: copy the audio or drop it (default: keep)"
    )
    p.add_argument(
        "--smoothing",
        type=float,
        default=0.8,
        help="video: 0 stylizes every frame on its own; up to 1 steadies the output where the input is still, "
        "and smooths content statistics over frames, against flicker (default: 0.8)",
    )
    p.add_argument("--batch-size", type=int, default=8, help="video: frames per batch (default: 8)")
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
    for name in ("content_size", "max_size", "style_size", "max_megapixels", "refine"):
        if not getattr(args, name) >= 0:
            p.error(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    limit = args.max_megapixels * 1e6  # a short side of N px makes at least N x N px: refused before any work
    for name in ("content_size", "style_size"):
        if limit and getattr(args, name) ** 2 > limit:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: a picture of at least that squared is over "
                    f"--max-megapixels {args.max_megapixels:g}; choose up to {math.isqrt(int(limit))}")  # fmt: skip
    if "." + args.ext.lower().lstrip(".") not in WRITE_EXTS:
        p.error(f"--ext {args.ext!r}: choose one of {', '.join(sorted(e[1:] for e in WRITE_EXTS))}")
    args.styles, args.masks = path_list(args.style), path_list(args.mask)
    for name, path in [
        ("content", args.content),
        *(("style", s) for s in args.styles),
        *(("mask", m) for m in args.masks),
    ]:
        if not path.exists():
            p.error(f"--{name} {path}: no such file or folder")
    check_controls(p, args)
    if is_video(args.content):
        return args
    if output_folder(args) is None and args.output.suffix.lower() not in WRITE_EXTS:
        p.error(f"--output {args.output}: unknown image extension; use one of {', '.join(sorted(WRITE_EXTS))}")
    out_ext = "." + args.ext.lower().lstrip(".") if output_folder(args) else args.output.suffix.lower()
    if args.transparency == "keep" and out_ext not in ALPHA_EXTS:
        p.error(f"--transparency keep needs an output format with alpha ({', '.join(sorted(ALPHA_EXTS))})")
    return args


class UsageError(Exception):
    """A problem with the command line found after parsing it (exit code 2)."""


def path_list(value: str | None) -> list[Path]:
    """`a.jpg,b.jpg` -> two paths; a path that exists is taken whole, even with a comma in it."""
    if value is None:
        return []
    return [Path(value)] if Path(value).exists() else [Path(v) for v in value.split(",") if v]


def check_controls(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    n = len(args.styles)
    if n > 1 and any(s.is_dir() for s in args.styles):
        p.error("--style: mix or place files, not folders")
    if args.masks and any(m.is_dir() for m in args.masks):
        p.error("--mask: give mask files, not folders")
    if args.masks and args.style_weights:
        p.error("--style-weights mixes styles over the whole image and --mask gives each its own region: use one")
    if args.masks and len(args.masks) not in (n, n - 1):
        p.error(
            f"--mask: {len(args.masks)} masks for {n} styles; "
            "give one per style, or one fewer (the last style fills the rest)"
        )
    if args.style_weights:
        try:
            args.weights = normalise_weights([float(w) for w in args.style_weights.split(",")], n)
        except ValueError as e:
            p.error(f"--style-weights {args.style_weights}: {e}")
    else:
        args.weights = None
    if is_video(args.content) and (args.masks or args.preserve_color or args.refine):
        p.error("--mask, --preserve-color and --refine work on images, not yet on video")
    if args.masks and args.refine:
        p.error("--refine works over the whole image: it does not take --mask")
    single = args.styles[0].is_file()
    if is_video(args.content) and single and args.output and args.output.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        p.error(f"--output {args.output}: video is written as H.264 to a .mp4, .mov or .mkv file")
    if not 0.0 <= args.smoothing < 1.0:
        p.error(f"--smoothing must be at least 0 and below 1, got {args.smoothing}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {args.batch_size}")


def prepare(img: torch.Tensor, size: int, max_size: int, crop: bool) -> torch.Tensor:
    img = resize_short(img, size)
    if crop:
        side = min(img.shape[-2:])
        top, left = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        img = img[:, top : top + side, left : left + side]
    return limit_long(img, max_size)


def single_pair(args: argparse.Namespace) -> bool:
    return args.content.is_file() and args.styles[0].is_file()


def output_folder(args: argparse.Namespace) -> Path | None:
    """Where outputs go; None when --output names the file of a single pair."""
    if single_pair(args) and args.output is not None and not args.output.is_dir():
        return None
    return args.output or Path("outputs")


def output_path(args: argparse.Namespace, content_name: Path, style_name: Path, ext: str = "") -> Path:
    folder = output_folder(args)
    if folder is None:
        return args.output
    ext = ext or args.ext.lstrip(".")
    return folder / content_name.parent / f"{content_name.name}_stylized_{style_name.name}.{ext}"


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
    styles = find_inputs(args.styles[0])
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


def style_jobs(args: argparse.Namespace, styles: Inputs) -> dict[tuple[Path, ...], Path]:
    """Each style to paint with -> its output name: every file of a style folder, or one mix
    (or set of masked regions) of the comma-separated styles, named a+b."""
    if len(args.styles) == 1:
        return {(path,): name for path, name in styles.names.items()}
    return {tuple(args.styles): Path("+".join(s.stem for s in args.styles))}


def run(args: argparse.Namespace, report: Report, d: Dist | None = None, stylizer: Stylizer | None = None) -> None:
    """Stylize what `args` asks, recording the outcome in `report`; `stylizer` (default: loaded
    from --encoder/--decoder) lets a caller such as the benchmark reuse loaded networks."""
    d = d or Dist()  # one process unless torchrun says otherwise
    contents, styles = find_all(args, report, d)
    jobs = style_jobs(args, styles)
    if args.weights and d.is_main:  # on stderr: stdout stays the report (--json)
        mix = ", ".join(f"{p.name} {w:.3g}" for p, w in zip(args.styles, args.weights))
        print(f"style weights normalised to {mix}", file=sys.stderr)
    if is_video(args.content):
        return run_video(args, jobs, report)
    todo = []  # (content, styles, output), grouped by content
    # Under torchrun each process does its own contiguous share of the sorted pairs.
    for content, style in shard([(c, s) for c in contents.images for s in jobs], d):
        out = output_path(args, contents.names[content], jobs[style])
        if out.exists() and not args.overwrite:
            report.existing.append(out)
        else:
            todo.append((content, style, out))
    if not todo:
        return
    masks = []
    for path in args.masks:
        try:
            masks.append(load_mask(path))
        except ImageError as e:
            report.fail(path, e)
            return
    check_writable(output_folder(args) or args.output.parent)
    for folder in {out.parent for _, _, out in todo if out.parent.is_dir()}:
        remove_stale_temps(folder)  # left by a run killed with SIGKILL
    stylizer = stylizer or Stylizer.from_pretrained(args.encoder, args.decoder, device_for(args.device, d))
    if stylizer.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # sizes repeat in a folder: pick the fastest kernels once
    styles_of = style_loader(args, stylizer, report)
    controls = {
        "weights": args.weights,
        "masks": masks or None,
        "preserve_color": args.preserve_color,
        "refine": args.refine,
    }
    groups = [(cpath, list(group)) for cpath, group in itertools.groupby(todo, key=lambda t: t[0])]
    writer: WriteBehind[tuple[Path, Path, Path]] = WriteBehind(IO_WORKERS)
    bar = tqdm(total=len(todo), desc="stylize", unit="img", disable=len(todo) < 2 or not d.is_main)
    try:
        for (cpath, group), content in read_ahead(groups, lambda g: read_content(args, g[0], stylizer), IO_WORKERS):
            if isinstance(content, ImageError):
                report.fail(cpath, content)
                bar.update(len(group))
                continue
            if isinstance(content, Exception):
                raise content
            if not paint(stylizer, styles_of, controls, args.alpha, cpath, content, group, writer, report, bar):
                return
    finally:
        settle(writer.close(), report)
        bar.close()


# Threads reading contents ahead and writing outputs behind the networks: JPEG coding on a
# GPU machine takes longer than the networks, so up to one per core.
IO_WORKERS = min(8, os.cpu_count() or 1)


def read_content(args: argparse.Namespace, path: Path, stylizer: Stylizer) -> torch.Tensor:
    img = load_image(path, keep_alpha=args.transparency == "keep", max_pixels=int(args.max_megapixels * 1e6))
    img = prepare(img, args.content_size, args.max_size, args.crop)
    return img.pin_memory() if stylizer.device.type == "cuda" else img  # lets the copy to the GPU overlap


def paint(
    stylizer: Stylizer,
    styles_of: Callable[[tuple[Path, ...]], Style | list[Style] | None],
    controls: dict,
    alpha: float,
    cpath: Path,
    content: torch.Tensor,
    group: list[tuple[Path, tuple[Path, ...], Path]],
    writer: WriteBehind,
    report: Report,
    bar: tqdm,
) -> bool:
    """One content in each of its styles, encoded once; False when the batch must stop."""
    try:
        source = content[:3] if controls["preserve_color"] else stylizer.encode(content[:3])
        for _, spath, out in group:
            bar.update(1)
            if (style := styles_of(spath)) is None:
                continue
            rgb = stylizer.stylize(source, style, alpha, **controls)
            tag = (cpath, Path("+".join(map(str, spath))), out)
            if not settle(
                writer.submit(tag, functools.partial(save, torch.cat([rgb.cpu(), content[3:]]), out)), report
            ):
                return False
    except (torch.OutOfMemoryError, MemoryError):
        h, w = content.shape[1:]
        report.fail(cpath, f"out of memory at {w}x{h} px (a smaller --max-size needs less)")
    return True


def style_loader(args: argparse.Namespace, stylizer: Stylizer, report: Report):
    """A function from a style job to what Stylizer.stylize takes (None if a file failed).
    Each style file is read and encoded once per run; it is kept as an image instead when
    colours are matched to each content (--preserve-color) or its statistics at every tap are
    needed (--refine)."""
    max_pixels = int(args.max_megapixels * 1e6)
    encoded: dict[Path, Style | None] = {}

    def one(path: Path) -> Style | None:
        if path not in encoded:
            try:
                img = prepare(load_image(path, max_pixels=max_pixels), args.style_size, 0, args.crop)
                encoded[path] = img if args.preserve_color or args.refine else stylizer.style_stats(img)
            except ImageError as e:
                report.fail(path, e)
                encoded[path] = None
        return encoded[path]

    def styles_of(job: tuple[Path, ...]) -> Style | list[Style] | None:
        found = [one(p) for p in job]
        if any(s is None for s in found):
            return None  # a mix with a style missing is not what was asked
        return found[0] if len(found) == 1 else found

    return styles_of


DISK_FULL = "no space left on device (nothing partial was left)"


def save(img: torch.Tensor, out: Path) -> str | None:
    """Save atomically (in a worker thread); None, or why it failed."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_image(img, out)
        return None
    except ImageError as e:
        return str(e)
    except OSError as e:
        return DISK_FULL if e.errno in (errno.ENOSPC, errno.EDQUOT) else f"cannot write ({e.strerror or e})"


def settle(results: list[tuple[tuple[Path, Path, Path], str | None]], report: Report) -> bool:
    """Record finished writes; False when the batch must stop (the disk is full)."""
    for (cpath, spath, out), why in results:
        if why is None:
            report.written.append((cpath, spath, out))
            continue
        report.fail(out, why)
        if why == DISK_FULL:
            report.stopped = "the disk is full; free some space and rerun to do the rest"
    return not report.stopped


def run_video(args: argparse.Namespace, jobs: dict[tuple[Path, ...], Path], report: Report) -> None:
    """One stylized video per style, with fixed style statistics (mixes too)."""
    todo = []
    for job, name in jobs.items():
        out = output_path(args, Path(args.content.stem), name, ext="mp4")
        if out.exists() and not args.overwrite:
            report.existing.append(out)
        else:
            todo.append((job, out))
    if not todo:
        return
    stylizer = Stylizer.from_pretrained(args.encoder, args.decoder, args.device)
    styles_of = style_loader(args, stylizer, report)
    for job, out in todo:
        if (style := styles_of(job)) is None:
            continue
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            stats = stylizer.mix(style, args.weights) if isinstance(style, list) else style
            video = stylize_video(
                stylizer,
                args.content,
                out,
                stats,
                args.alpha,
                smoothing=args.smoothing,
                batch_size=args.batch_size,
                keep_audio=args.audio == "keep",
                transform=lambda img: prepare(img, args.content_size, args.max_size, False),
            )
        except (VideoError, OSError) as e:
            report.fail(out, e)
            continue
        report.written.append((args.content, Path("+".join(map(str, job))), out))
        print(
            f"{out}: {video.frames} frames at {video.fps:.3g} fps, audio {video.audio}; flicker (mean "
            f"frame-to-frame change) {video.output_flicker:.4f}, input {video.input_flicker:.4f}",
            file=sys.stderr,
        )


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


if __name__ == "__main__":
    main()
