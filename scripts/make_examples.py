"""Make the bundled example images in examples/ (run once; the results are committed).

Contents are scikit-image sample photos (public domain / CC0, see examples/CREDITS.md),
read from the scikit-image wheel. Styles are made here: brush strokes and a mosaic drawn
with a fixed seed, and scikit-image's CC0 gravel texture tinted with a palette.

    pip download --no-deps scikit-image==0.26.0 && python scripts/make_examples.py scikit_image-*.whl
"""

from __future__ import annotations

import io
import math
import random
import sys
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageOps

OUT = Path(__file__).resolve().parent.parent / "examples"
PHOTOS = {"chelsea.png": "chelsea.jpg", "coffee.png": "coffee.jpg", "astronaut.png": "astronaut.jpg",
          "rocket.jpg": "rocket.jpg"}  # fmt: skip


def strokes(size: int = 512, seed: int = 1) -> Image.Image:
    """Short thick strokes in a warm/cool palette, swirling around the centre."""
    rng = random.Random(seed)
    palette = [(236, 178, 46), (214, 84, 38), (38, 70, 140), (24, 40, 84), (250, 226, 140), (120, 160, 200)]
    img = Image.new("RGB", (size, size), (30, 50, 100))
    draw = ImageDraw.Draw(img)
    for _ in range(2600):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        angle = math.atan2(y - size / 2, x - size / 2) + math.pi / 2 + rng.gauss(0, 0.3)
        length = rng.uniform(10, 30)
        dx, dy = math.cos(angle) * length, math.sin(angle) * length
        color = rng.choice(palette)
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=color, width=rng.randint(4, 9))
    return img.filter(ImageFilter.SMOOTH)


def mosaic(size: int = 512, seed: int = 2) -> Image.Image:
    """Irregular bright tiles with dark grout, like stained glass."""
    rng = random.Random(seed)
    palette = [(200, 30, 40), (240, 190, 30), (30, 110, 180), (40, 150, 80), (240, 240, 230), (120, 40, 140)]
    img = Image.new("RGB", (size, size), (20, 20, 20))
    draw = ImageDraw.Draw(img)
    step = 32
    for gy in range(-1, size // step + 1):
        for gx in range(-1, size // step + 1):
            cx, cy = gx * step + rng.uniform(0, step), gy * step + rng.uniform(0, step)
            r = rng.uniform(14, 24)
            pts = [(cx + r * math.cos(a) * rng.uniform(0.7, 1.1), cy + r * math.sin(a) * rng.uniform(0.7, 1.1))
                   for a in [k * 2 * math.pi / 6 + rng.uniform(-0.3, 0.3) for k in range(6)]]  # fmt: skip
            draw.polygon(pts, fill=rng.choice(palette), outline=(20, 20, 20), width=3)
    return img


def tinted(gray: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.autocontrast(gray.convert("L")), (40, 20, 60), (250, 200, 120), (200, 80, 90))


def main(wheel: str) -> None:
    (OUT / "content").mkdir(parents=True, exist_ok=True)
    (OUT / "style").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for src, dst in PHOTOS.items():
            img = Image.open(io.BytesIO(z.read(f"skimage/data/{src}"))).convert("RGB")
            img.thumbnail((512, 512))
            img.save(OUT / "content" / dst, quality=90)
        gravel = Image.open(io.BytesIO(z.read("skimage/data/gravel.png")))
    strokes().save(OUT / "style" / "strokes.jpg", quality=90)
    mosaic().save(OUT / "style" / "mosaic.jpg", quality=90)
    tinted(gravel).save(OUT / "style" / "gravel_tinted.jpg", quality=90)


if __name__ == "__main__":
    main(sys.argv[1])
