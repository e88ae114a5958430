"""Make the README's pictures of the creative controls, in docs/, from the bundled examples.

    python scripts/make_gallery.py                      # the shipped weights; needs the [video] extra
    python scripts/make_gallery.py --decoder runs/x/decoder.pth

Writes docs/controls_mix.jpg, controls_color.jpg, controls_mask.jpg, controls_refine.jpg and
controls_video.jpg, and
prints the flicker of a generated clip (a slow pan over a photo with camera-like noise),
stylized frame by frame and with the video path's smoothing.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import av
import torch
from PIL import Image, ImageDraw, ImageFilter

from stylize.images import load_image, make_grid, pil_to_tensor, resize_short, tensor_to_pil
from stylize.options import DEFAULT_DECODER, DEFAULT_ENCODER
from stylize.stylizer import Stylizer
from stylize.video import stylize_video

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES, DOCS = ROOT / "examples", ROOT / "docs"
TILE = 192


def example(name: str, size: int = 256) -> torch.Tensor:
    return resize_short(load_image(EXAMPLES / name), size)


def oval_mask(h: int, w: int) -> torch.Tensor:
    """White oval in the middle (the cat's face in chelsea.jpg), soft-edged."""
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).ellipse((w * 0.22, h * 0.08, w * 0.78, h * 0.98), fill=255)
    return pil_to_tensor(img.filter(ImageFilter.GaussianBlur(2)))[0]


def gallery(s: Stylizer) -> None:
    cat, astronaut = example("content/chelsea.jpg"), example("content/astronaut.jpg")
    strokes, mosaic, gravel = (example(f"style/{n}.jpg") for n in ("strokes", "mosaic", "gravel_tinted"))

    mixes = [s.stylize(cat, [strokes, mosaic], weights=[1 - t, t]) for t in (0, 0.25, 0.5, 0.75, 1)]
    make_grid([[strokes, *mixes, mosaic]], TILE).save(DOCS / "controls_mix.jpg", quality=90)

    rows = [[c, st, s.stylize(c, st), *(s.stylize(c, st, preserve_color=m) for m in ("coral", "luminance"))]
            for c, st in ((astronaut, strokes), (cat, gravel))]  # fmt: skip
    make_grid(rows, TILE).save(DOCS / "controls_color.jpg", quality=90)

    mask = oval_mask(*cat.shape[1:])
    placed = s.stylize(cat, [mosaic, strokes], masks=[mask])
    make_grid([[cat, mask.expand(3, -1, -1), mosaic, strokes, placed]], TILE).save(
        DOCS / "controls_mask.jpg", quality=90
    )

    pairs = ((astronaut, mosaic), (cat, gravel))
    rows = [[c, st, *(s.stylize(c, st, refine=n) for n in (0, 10, 20))] for c, st in pairs]
    make_grid(rows, TILE).save(DOCS / "controls_refine.jpg", quality=90)


def pan_clip(path: Path, frames: int = 24, h: int = 144, w: int = 192, fps: int = 12) -> None:
    """A slow pan across astronaut.jpg with light per-frame noise, as a camera's."""
    photo = example("content/astronaut.jpg", 256)
    g = torch.Generator().manual_seed(0)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "12"})
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        for i in range(frames):
            x = i * (photo.shape[2] - w) // (frames - 1)
            img = (photo[:, :h, x : x + w] + 0.02 * torch.randn(3, h, w, generator=g)).clamp(0, 1)
            out.mux(stream.encode(av.VideoFrame.from_image(tensor_to_pil(img))))
        out.mux(stream.encode())


def frames(path: Path, picks: tuple[int, ...]) -> list[torch.Tensor]:
    with av.open(str(path)) as c:
        return [pil_to_tensor(f.to_image()) for i, f in enumerate(c.decode(video=0)) if i in picks]


def video(s: Stylizer) -> None:
    style = s.style_stats(example("style/strokes.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "pan.mp4"
        pan_clip(clip)
        picks, rows = (10, 11, 12), [frames(clip, (10, 11, 12))]
        print("smoothing | output flicker | input flicker  (mean absolute frame-to-frame change, 0..1)")
        for smoothing in (0.0, 0.5, 0.8):
            out = Path(tmp) / f"out{smoothing}.mp4"
            r = stylize_video(s, clip, out, style, smoothing=smoothing, progress=False)
            print(f"{smoothing:9} | {r.output_flicker:14.4f} | {r.input_flicker:.4f}")
            if smoothing in (0.0, 0.8):
                rows.append(frames(out, picks))
    make_grid(rows, TILE).save(DOCS / "controls_video.jpg", quality=90)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default=str(DEFAULT_ENCODER))
    p.add_argument("--decoder", default=str(DEFAULT_DECODER))
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    DOCS.mkdir(exist_ok=True)
    s = Stylizer.from_pretrained(args.encoder, args.decoder, args.device)
    gallery(s)
    video(s)
    print(f"wrote {DOCS}/controls_*.jpg")


if __name__ == "__main__":
    main()
