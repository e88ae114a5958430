"""How well the decoder gives back a photo at alpha 0 (decoder(encoder(x)) against x).

    python scripts/reconstruction.py ../shared/data/eval/content [--decoder weights/decoder.pth]

Prints the mean absolute error (0..1 scale) and PSNR over the folder's images, each at its own size
(long side capped at --max-size). A decoder that inverts the encoder well scores a high PSNR; the
style it can paint on top is judged by eye and by the evaluation of a later issue.
"""

from __future__ import annotations

import argparse
import math

from tqdm import tqdm

from stylize import Stylizer
from stylize.images import limit_long, list_images, load_image
from stylize.weights import DEFAULT_DECODER


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--decoder", default=str(DEFAULT_DECODER))
    p.add_argument("--max-size", type=int, default=512)
    args = p.parse_args()
    stylizer = Stylizer.from_pretrained(decoder=args.decoder)
    maes, psnrs = [], []
    for path in tqdm(list_images(args.folder, recursive=True), desc="reconstruct"):
        x = limit_long(load_image(path), args.max_size)
        y = stylizer.stylize(x, stylizer.style_stats(x), alpha=0.0)
        maes.append((y - x).abs().mean().item())
        psnrs.append(-10 * math.log10(max((y - x).pow(2).mean().item(), 1e-10)))
    print(f"{len(maes)} images: mean abs error {sum(maes) / len(maes):.4f}, PSNR {sum(psnrs) / len(psnrs):.2f} dB")


if __name__ == "__main__":
    main()
