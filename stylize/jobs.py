"""The command line's work: stylize files, folders and videos as `stylize.cli` parsed them."""

from __future__ import annotations

import argparse
import errno
import functools
import itertools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from stylize.batch import Inputs, Report, find_inputs
from stylize.cli import UsageError, output_folder
from stylize.distributed import Dist, device_for, shard
from stylize.files import remove_stale_temps
from stylize.images import ImageError, limit_long, load_image, load_mask, resize_short, save_image
from stylize.options import IMAGE_EXTS, is_video
from stylize.overlap import WriteBehind, read_ahead
from stylize.stylizer import Style, Stylizer
from stylize.video import VideoError, stylize_video


def prepare(img: torch.Tensor, size: int, max_size: int, crop: bool) -> torch.Tensor:
    img = resize_short(img, size)
    if crop:
        side = min(img.shape[-2:])
        top, left = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        img = img[:, top : top + side, left : left + side]
    return limit_long(img, max_size)


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
