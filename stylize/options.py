"""What the commands accept, shared by the command line, the page and the package: formats, the
shipped weights' paths, the defaults, and the checks of style weights. Nothing here imports torch,
so `stylize-adain --help` and every usage error answer before it is loaded."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from stylize.files import shipped

WRITE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
IMAGE_EXTS = WRITE_EXTS | {".gif"}  # read: GIFs give their first frame; not written (256 colours)
ALPHA_EXTS = {".png", ".webp", ".tif", ".tiff"}  # formats that keep an alpha channel
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"}
MAX_PIXELS = 100_000_000  # a 100 MP image is 1.2 GB as a float tensor; decoding stops before that
COLOR_MODES = ("coral", "luminance")
# The painting's short side by default (command line, page, evaluation): it sets the stroke scale.
# The evaluation's independent judge (the style-embedding distance) scored 256 best of 192-512, at
# 512 and at 1024 px photos alike (commit af34703).
STYLE_SIZE = 256

WEIGHTS_DIR = shipped("weights", "assets")  # in a wheel: stylize/assets
DEFAULT_ENCODER = WEIGHTS_DIR / "vgg19_relu4_1.pth"
DEFAULT_DECODER = WEIGHTS_DIR / "decoder.pth"
EXAMPLES_DIR = shipped("examples", "examples")  # the bundled example images; in a wheel: stylize/examples


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def normalise_weights(weights: Sequence[float], count: int) -> list[float]:
    """Check style weights and scale them to sum to one. Zero is allowed (that style is left
    out); negative, non-finite or all-zero weights are errors."""
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} style weights for {count} styles: give one weight per style")
    for w in weights:
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"style weights must be zero or positive, got {w:g}")
    total = sum(weights)
    if total <= 0:
        raise ValueError("style weights are all zero: at least one must be positive")
    return [w / total for w in weights]
