"""`stylize-adain` (`python infer.py` in a checkout): repaint photos in the style of paintings."""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from pathlib import Path

# the command line is parsed and checked before torch is loaded (seconds): stylize.options is light
from stylize import __version__
from stylize.options import (
    ALPHA_EXTS,
    COLOR_MODES,
    DEFAULT_DECODER,
    DEFAULT_ENCODER,
    MAX_PIXELS,
    STYLE_SIZE,
    VIDEO_EXTS,
    WRITE_EXTS,
    is_video,
    normalise_weights,
)

EXAMPLES = """examples:
  stylize-adain --content photo.jpg --style painting.jpg                 # writes outputs/photo_stylized_painting.jpg
  stylize-adain --content photo.jpg --style painting.jpg --alpha 0.6 --output out.png
  stylize-adain --content photos/ --style paintings/ --output results/   # every photo x painting
  stylize-adain --content photos/ --style paintings/ --recursive --json > report.json
  stylize-adain --content photo.jpg --style a.jpg,b.jpg --style-weights 2,1   # a mix: 2/3 a, 1/3 b
  stylize-adain --content photo.jpg --style a.jpg,b.jpg --mask person.png     # a on the white, b elsewhere
  stylize-adain --content photo.jpg --style painting.jpg --preserve-color luminance
  stylize-adain --content photo.jpg --style painting.jpg --refine 20       # firmer strokes, ~1 min more on a CPU
  stylize-adain --content clip.mp4 --style painting.jpg                  # writes outputs/clip_stylized_painting.mp4

Batches: each style is encoded once per run. Files that are not images are skipped and
listed; existing outputs are kept (so a rerun resumes where a stopped one ended) unless
--overwrite is given; every output is written to a temporary file and renamed, so an
interrupted run never leaves half an image. Unreadable inputs are reported at the end with
the reason. Exit code: 0 when every pair was written, 1 when some failed, 2 for a usage
error (bad option, missing input, unwritable output folder, unusable weights).

Under torchrun (torchrun --nproc-per-node N -m stylize.cli --content photos/ ...) the sorted
content x style pairs are split between the processes, each writes its own share, and
rank 0 prints one summary for the whole run."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stylize-adain",
        description="Repaint photos in the style of paintings with AdaIN (Huang & Belongie 2017).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to paint")
    what.add_argument(
        "--content",
        type=Path,
        required=True,
        help=f"a photo, a folder of them, or a video ({', '.join(sorted(VIDEO_EXTS))})",
    )
    what.add_argument(
        "--style",
        required=True,
        help="a painting, a folder of them, or several paintings separated by commas, mixed "
        "(--style-weights) or each in its own region (--mask)",
    )
    what.add_argument(
        "--output",
        type=Path,
        help="output file for one pair, output folder otherwise (default: outputs/); "
        "folder outputs are named CONTENT_stylized_STYLE.EXT",
    )
    what.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="style strength from 0 (the content back) to 1 (full style) (default: 1)",
    )
    images = p.add_argument_group(
        "sizes and formats", "photos keep their size up to --max-size; the painting's size sets the strokes' scale"
    )
    images.add_argument(
        "--content-size",
        type=int,
        default=0,
        help="resize contents so the short side is N px; 0 keeps the size (default: 0)",
    )
    images.add_argument(
        "--max-size",
        type=int,
        default=1024,
        help="shrink contents whose long side exceeds N px, to bound time and memory; 0 for no limit (default: 1024)",
    )
    images.add_argument(
        "--style-size",
        type=int,
        default=STYLE_SIZE,
        help="resize styles so the short side is N px; 0 keeps the size. The size sets the "
        "scale of brush strokes in the result: larger paints larger strokes (default: %(default)s)",
    )
    images.add_argument("--crop", action="store_true", help="centre-crop contents and styles to squares")
    images.add_argument(
        "--transparency",
        choices=("white", "keep"),
        default="white",
        help="images with an alpha channel: composite on white (default), or keep: stylize on white and "
        "give the output the input's alpha (needs png, webp or tiff output)",
    )
    images.add_argument(
        "--max-megapixels",
        type=float,
        default=MAX_PIXELS / 1e6,
        help="refuse images over N megapixels before decoding them (they would need too much memory); "
        f"0 for no limit (default: {MAX_PIXELS / 1e6:g})",
    )
    controls = p.add_argument_group(
        "creative controls", "mix paintings, place them with masks, keep the photo's colours, refine"
    )
    controls.add_argument(
        "--style-weights",
        help="weights of comma-separated styles, e.g. 2,1; zero or positive, normalised to sum to 1 (default: equal)",
    )
    controls.add_argument(
        "--mask",
        help="mask images, comma-separated, white = the region of the style in the same place in --style; "
        "one fewer mask than styles lets the last style fill the rest, otherwise unmasked areas keep the content",
    )
    controls.add_argument(
        "--preserve-color",
        choices=COLOR_MODES,
        help="keep the content's colours: coral recolours the style to them first; luminance "
        "stylizes only the brightness and keeps the content's chroma",
    )
    controls.add_argument(
        "--refine",
        type=int,
        default=0,
        metavar="STEPS",
        help="after the decoder, STEPS steps of the paper's loss, plus an SSIM term that holds the photo's "
        "shapes, on the picture itself (beyond the paper): firmer strokes and more of the painting's palette, "
        "about 2-3 s per step at 512 px on a 2-core CPU (docs/usage.md); "
        "20 is a good start, 0 is off (default: 0)",
    )
    folders = p.add_argument_group(
        "folders", "every photo x every painting; existing outputs are skipped, so a rerun resumes"
    )
    folders.add_argument(
        "--recursive",
        action="store_true",
        help="also take the photos in --content's subfolders; the output keeps the same subfolders",
    )
    folders.add_argument("--ext", default="jpg", help="output format for folder runs: jpg, png, webp... (default: jpg)")
    folders.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    folders.add_argument(
        "--json", action="store_true", help="print the report as JSON on stdout (problems still go to stderr)"
    )
    video = p.add_argument_group("video")
    video.add_argument(
        "--audio", choices=("keep", "drop"), default="keep", help="video: copy the audio or drop it (default: keep)"
    )
    video.add_argument(
        "--smoothing",
        type=float,
        default=0.8,
        help="video: 0 stylizes every frame on its own; up to 1 steadies the output where the input is still, "
        "and smooths content statistics over frames, against flicker (default: 0.8)",
    )
    video.add_argument("--batch-size", type=int, default=8, help="video: frames per batch (default: 8)")
    devices = p.add_argument_group("devices and weights")
    devices.add_argument(
        "--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1... (default: auto)"
    )
    devices.add_argument("--encoder", default=str(DEFAULT_ENCODER), help="encoder weights file or URL#sha256=HEX")
    devices.add_argument(
        "--decoder",
        default=str(DEFAULT_DECODER),
        help="decoder weights file (or a training checkpoint) or URL#sha256=HEX",
    )
    devices.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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


def single_pair(args: argparse.Namespace) -> bool:
    return args.content.is_file() and args.styles[0].is_file()


def output_folder(args: argparse.Namespace) -> Path | None:
    """Where outputs go; None when --output names the file of a single pair."""
    if single_pair(args) and args.output is not None and not args.output.is_dir():
        return None
    return args.output or Path("outputs")


def main(argv: list[str] | None = None) -> None:
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 must not crash a report
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    args = parse_args(argv)
    # SIGTERM takes Ctrl-C's path, so the output being written is removed, not left half done.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from stylize.batch import Report  # the work's modules load torch: only now
    from stylize.distributed import gather, process_group
    from stylize.jobs import run
    from stylize.weights import WeightsError

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
