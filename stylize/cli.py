"""`python infer.py` / `stylize`: repaint photos in the style of paintings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from stylize.controls import COLOR_MODES, normalise_weights
from stylize.images import (
    IMAGE_EXTS,
    ImageError,
    limit_long,
    list_images,
    load_image,
    load_mask,
    resize_short,
    save_image,
)
from stylize.stylizer import Style, Stylizer
from stylize.video import VIDEO_EXTS, VideoError, is_video, stylize_video
from stylize.weights import DEFAULT_DECODER, DEFAULT_ENCODER, WeightsError

EXAMPLES = """examples:
  python infer.py --content photo.jpg --style painting.jpg                 # writes outputs/photo_stylized_painting.jpg
  python infer.py --content photo.jpg --style painting.jpg --alpha 0.6 --output out.png
  python infer.py --content photos/ --style paintings/ --output results/   # every photo x painting
  python infer.py --content photo.jpg --style a.jpg,b.jpg --style-weights 2,1   # a mix: 2/3 a, 1/3 b
  python infer.py --content photo.jpg --style a.jpg,b.jpg --mask person.png     # a on the white, b elsewhere
  python infer.py --content photo.jpg --style painting.jpg --preserve-color luminance
  python infer.py --content clip.mp4 --style painting.jpg                  # writes outputs/clip_stylized_painting.mp4

Each style is encoded once per run. Existing outputs are kept (and reported as skipped)
unless --overwrite is given. Unreadable inputs are reported at the end; the exit code is
0 when every pair was written, 1 when some failed, 2 for a usage error."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="stylize",
        description="Repaint photos in the style of paintings with AdaIN (Huang & Belongie 2017).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        default=512,
        help="resize styles so the short side is N px; 0 keeps the size. The size sets the "
        "scale of brush strokes in the result (default: 512)",
    )
    p.add_argument("--crop", action="store_true", help="centre-crop contents and styles to squares")
    p.add_argument("--ext", default="jpg", help="output format for folder runs: jpg, png, webp... (default: jpg)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
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
    if "." + args.ext.lower().lstrip(".") not in IMAGE_EXTS:
        p.error(f"--ext {args.ext!r}: choose one of {', '.join(sorted(e[1:] for e in IMAGE_EXTS))}")
    args.styles, args.masks = path_list(args.style), path_list(args.mask)
    for name, path in [
        ("content", args.content),
        *(("style", s) for s in args.styles),
        *(("mask", m) for m in args.masks),
    ]:
        if not path.exists():
            p.error(f"--{name} {path}: no such file or folder")
        if path.is_dir() and not list_images(path):
            p.error(f"--{name} {path}: folder holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    check_controls(p, args)
    return args


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
    if is_video(args.content) and (args.masks or args.preserve_color):
        p.error("--mask and --preserve-color work on images, not yet on video")
    single = args.styles[0].is_file()
    if is_video(args.content) and single and args.output and args.output.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        p.error(f"--output {args.output}: video is written as H.264 to a .mp4, .mov or .mkv file")
    if not 0.0 <= args.smoothing < 1.0:
        p.error(f"--smoothing must be at least 0 and below 1, got {args.smoothing}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1, got {args.batch_size}")


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
    ext = "mp4" if is_video(content) else args.ext.lstrip(".")
    name = f"{content.stem}_stylized_{style.stem}.{ext}"
    single = args.content.is_file() and args.styles[0].is_file()
    if single and args.output is not None:
        return args.output
    return (args.output or Path("outputs")) / name


def load_styles(
    args: argparse.Namespace, stylizer: Stylizer, failed: list[str]
) -> list[tuple[Path, Style | list[Style]]]:
    """(name, style) pairs: one per file of a style folder, or one mix of comma-separated styles.
    Each style is encoded once per run (kept as an image when colours are matched per content)."""
    styles: list[tuple[Path, Style]] = []
    for path in args.styles if len(args.styles) > 1 else inputs(args.styles[0]):
        try:
            img = prepare(load_image(path), args.style_size, 0, args.crop)
            styles.append((path, img if args.preserve_color else stylizer.style_stats(img)))
        except ImageError as e:
            failed.append(str(e))
    if len(args.styles) == 1:
        return styles
    if args.weights:
        print(
            "style weights normalised to " + ", ".join(f"{p.name} {w:.3g}" for p, w in zip(args.styles, args.weights))
        )
    whole = len(styles) == len(args.styles)  # a mix with a style missing is not what was asked
    return [(Path("+".join(p.stem for p in args.styles)), [s for _, s in styles])] if whole else []


def run(args: argparse.Namespace) -> int:
    stylizer = Stylizer.from_pretrained(args.encoder, args.decoder, args.device)
    failed: list[str] = []
    styles = load_styles(args, stylizer, failed)
    try:
        masks = [load_mask(m) for m in args.masks] or None
    except ImageError as e:
        masks, styles = None, []
        failed.append(str(e))
    controls = {"weights": args.weights, "masks": masks, "preserve_color": args.preserve_color}
    if is_video(args.content):
        return run_video(args, stylizer, styles, failed)
    contents = inputs(args.content)
    written = skipped = 0
    bar = tqdm(total=len(contents) * len(styles), desc="stylize", unit="img", disable=len(contents) * len(styles) < 2)
    for cpath in contents:
        todo = [(s, st, output_path(args, cpath, s)) for s, st in styles]
        todo = [(s, st, out) for s, st, out in todo if args.overwrite or not out.exists()]
        skipped += len(styles) - len(todo)
        bar.update(len(styles) - len(todo))
        if not todo:
            continue
        try:
            content = prepare(load_image(cpath), args.content_size, args.max_size, args.crop)
        except ImageError as e:
            failed.append(str(e))
            bar.update(len(todo))
            continue
        for _, stats, out in todo:
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                save_image(stylizer.stylize(content, stats, args.alpha, **controls), out)
                written += 1
            except (ImageError, OSError) as e:
                failed.append(f"{out}: cannot write ({e})")
            bar.update(1)
    bar.close()
    return summary(written, skipped, failed)


def summary(written: int, skipped: int, failed: list[str]) -> int:
    print(f"{written} written, {skipped} skipped (already there; --overwrite to redo), {len(failed)} failed")
    for reason in failed:
        print(f"  failed: {reason}", file=sys.stderr)
    return 1 if failed else 0


def run_video(args: argparse.Namespace, stylizer: Stylizer, styles: list, failed: list[str]) -> int:
    """One stylized video per style, with fixed style statistics (mixes too)."""
    written = skipped = 0
    for name, style in styles:
        out = output_path(args, args.content, name)
        if out.exists() and not args.overwrite:
            skipped += 1
            continue
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            stats = stylizer.mix(style, args.weights) if isinstance(style, list) else style
            report = stylize_video(
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
            failed.append(f"{out}: {e}")
            continue
        written += 1
        print(
            f"{out}: {report.frames} frames at {report.fps:.3g} fps, audio {report.audio}; flicker (mean "
            f"frame-to-frame change) {report.output_flicker:.4f}, input {report.input_flicker:.4f}"
        )
    return summary(written, skipped, failed)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        code = run(args)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept, rerun to do the rest", file=sys.stderr)
        code = 130
    raise SystemExit(code)
