"""Make the README's pictures from the bundled examples: docs/sheet.jpg (rows of content | style |
result) and docs/alpha.jpg (content | style | alpha 0, 0.25, 0.5, 0.75, 1).

    python scripts/make_sheet.py [--decoder weights/decoder.pth]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stylize import Stylizer
from stylize.images import load_image, make_grid, resize_short, save_image
from stylize.options import DEFAULT_DECODER, STYLE_SIZE

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [("chelsea", "strokes"), ("coffee", "mosaic"), ("astronaut", "gravel_tinted"), ("rocket", "strokes")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--decoder", default=str(DEFAULT_DECODER))
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    p.add_argument("--size", type=int, default=256, help="tile size in the sheet")
    args = p.parse_args()
    stylizer = Stylizer.from_pretrained(decoder=args.decoder)
    rows = []
    for content_name, style_name in PAIRS:
        content = resize_short(load_image(ROOT / "examples" / "content" / f"{content_name}.jpg"), 384)
        style = load_image(ROOT / "examples" / "style" / f"{style_name}.jpg")
        out = stylizer.stylize(content, resize_short(style, STYLE_SIZE))
        rows.append([content, style, out])
    args.out.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(rows, args.size), args.out / "sheet.jpg", quality=90)
    content, style, _ = rows[0]
    stats = stylizer.style_stats(resize_short(style, STYLE_SIZE))
    alphas = [stylizer.stylize(content, stats, a) for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    save_image(make_grid([[content, style, *alphas]], args.size), args.out / "alpha.jpg", quality=90)
    print(f"wrote {args.out / 'sheet.jpg'} and {args.out / 'alpha.jpg'}")


if __name__ == "__main__":
    main()
