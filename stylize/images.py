"""Image files in and out: listing, decoding to tensors, resizing, atomic writes, grids.

Pillow decodes every file: it knows the odd modes (palette, CMYK, 16-bit, transparency), JPEG, PNG,
GIF, WebP, BMP and TIFF, and says why a file is broken; it reads the header first, for the pixel
limit. torchvision is not imported here: its import takes 1.5-2 s of every command's start (it
imports torch._dynamo), where its JPEG decoder saved about 1 ms per 512 px photo (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from stylize.files import atomic_write
from stylize.options import ALPHA_EXTS, IMAGE_EXTS, MAX_PIXELS

MIN_SIDE = 16  # below this the encoder's 1/8-size features are one or two pixels


class ImageError(Exception):
    """An image that cannot be used; the message names the file and the reason."""


class TooLargeError(ImageError):
    """An image over the pixel limit, refused before it is decoded. `hint` says what to do: by
    default the command line's option (the page's server says its own)."""

    def __init__(
        self,
        name: str | Path,
        size: tuple[int, int],
        limit: float,
        hint: str = "--max-megapixels raises it, 0 lifts it",
    ) -> None:
        self.size, self.limit = size, limit  # (width, height); megapixels
        mp = round(size[0] * size[1] / 1e6, 1)
        super().__init__(f"{name}: image is {size[0]}x{size[1]} ({mp:g} MP), over the limit of {limit:g} MP ({hint})")


def list_images(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Image files in `folder` by extension, sorted (hidden files left out)."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in Path(folder).glob(pattern)
        if p.suffix.lower() in IMAGE_EXTS and p.is_file() and not p.name.startswith(".")
    )  # fmt: skip


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float RGB tensor (3, H, W) in [0, 1]."""
    return to_float(_uint8(img.convert("RGB")))


def _uint8(img: Image.Image) -> torch.Tensor:
    """An 8-bit PIL image (RGB or one channel) -> uint8 tensor (C, H, W)."""
    return torch.from_numpy(np.array(img)).view(img.height, img.width, -1).permute(2, 0, 1)


def to_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 image tensor -> float32 in [0, 1]."""
    return img.float().div_(255)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """Float tensor (3, H, W), or (4, H, W) for RGBA; values are clamped to [0, 1]."""
    data = t.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu()
    return Image.fromarray(data.numpy())


def load_image(
    path: str | Path, keep_alpha: bool = False, max_pixels: int = MAX_PIXELS, max_side: int = 0
) -> torch.Tensor:
    """Decode an image file to an RGB tensor (3, H, W) in [0, 1], upright per its EXIF.

    Transparent areas are composited on white; with `keep_alpha` an image that has
    transparency comes back as (4, H, W), its alpha as the fourth channel. Grayscale,
    palette, CMYK and 16-bit images become RGB; an animated GIF gives its first frame.
    Images over `max_pixels` (0: no limit) are refused before they are decoded. With `max_side`, a
    larger image comes back with its long side shrunk to it, shrunk before it is a float tensor
    (`_decode_shrunk`): a server that answers at 1024 px need not hold a 100 MP photo in float.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
        with _pixel_limit_off(), Image.open(io.BytesIO(data)) as img:  # reads the header only
            w, h = img.size
            if max_pixels and w * h > max_pixels:
                raise TooLargeError(path, (w, h), max_pixels / 1e6)
            if max_side and max(w, h) > max_side:
                tensor = _decode_shrunk(img, max_side, keep_alpha)
            else:
                with contextlib.suppress(Exception):  # a damaged EXIF block: keep the pixels as stored
                    img = ImageOps.exif_transpose(img)
                tensor = _to_tensor(img, keep_alpha)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path}: {'cannot read image: not a known image format' if data else 'empty file (0 bytes)'}"
        ) from None
    except Exception as e:  # PIL raises many kinds for broken files
        raise ImageError(f"{path}: cannot read image, truncated or corrupt ({type(e).__name__}: {e})") from None
    if min(tensor.shape[1:]) < MIN_SIDE:
        h, w = tensor.shape[1:]
        raise ImageError(f"{path}: image is {w}x{h}, smaller than the minimum side of {MIN_SIDE} px")
    return tensor


@contextlib.contextmanager
def _pixel_limit_off() -> Iterator[None]:
    """Switch off Pillow's own decompression-bomb limit: load_image applies `max_pixels` instead."""
    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _decode_shrunk(img: Image.Image, max_side: int, keep_alpha: bool) -> torch.Tensor:
    """An image larger than `max_side`, with its long side shrunk to it: a JPEG already while it is
    decoded (Pillow's draft mode scales by 1/2, 1/4 or 1/8, never below the size asked), any image
    in 8 bits and before it is turned upright (no full-size copy), then made a float tensor (modes
    of more bits at full size, then shrunk)."""
    w, h = img.size
    s = max_side / max(w, h)
    if img.format == "JPEG":
        img.draft(None, (math.ceil(w * s), math.ceil(h * s)))
    if img.mode in ("RGB", "RGBA", "L", "LA", "P"):
        img = img.convert("RGBA") if img.mode == "P" else img  # a palette resizes only by nearest pixels
        exif = img.getexif()
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BILINEAR,
                         reducing_gap=3.0)  # fmt: skip
        img.getexif().update(exif)  # the orientation goes with the pixels
    with contextlib.suppress(Exception):  # a damaged EXIF block: keep the pixels as stored
        img = ImageOps.exif_transpose(img)
    return limit_long(_to_tensor(img, keep_alpha), max_side)


def _to_tensor(img: Image.Image, keep_alpha: bool) -> torch.Tensor:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # 16-bit or float gray: convert("RGB") clips
        scale = 1.0 if img.mode == "F" else 65535.0
        gray = torch.from_numpy(np.asarray(img, dtype=np.float32) / scale).clamp_(0, 1)
        return gray.expand(3, *gray.shape).contiguous()
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        rgb = pil_to_tensor(Image.alpha_composite(white, rgba))  # transparent areas become white
        if keep_alpha:
            alpha = to_float(_uint8(rgba.getchannel("A")))
            return torch.cat([rgb, alpha])
        return rgb
    return pil_to_tensor(img)


def load_mask(path: str | Path) -> torch.Tensor:
    """A mask image as (H, W) in [0, 1]: white (1) marks the region, grey is partial."""
    return load_image(path).mean(0)


def resize_short(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize (C, H, W) so the short side is `size` (0 keeps it), antialiased."""
    h, w = img.shape[-2:]
    if size <= 0 or min(h, w) == size:
        return img
    s = size / min(h, w)
    return resize(img, (max(1, round(h * s)), max(1, round(w * s))))


def limit_long(img: torch.Tensor, max_side: int) -> torch.Tensor:
    """Shrink (C, H, W) so the long side is at most `max_side` (0: no limit)."""
    h, w = img.shape[-2:]
    if max_side <= 0 or max(h, w) <= max_side:
        return img
    s = max_side / max(h, w)
    return resize(img, (max(1, round(h * s)), max(1, round(w * s))))


def resize(img: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased, to (height, width) `hw` (sizes from a side round, above)."""
    out = F.interpolate(img[None].float(), size=hw, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp_(0, 1)


def center_crop(img: torch.Tensor, size: int) -> torch.Tensor:
    """The central `size` x `size` square of an image at least that large."""
    h, w = img.shape[-2:]
    top, left = round((h - size) / 2), round((w - size) / 2)
    return img[..., top : top + size, left : left + size]


def save_image(img: torch.Tensor | Image.Image, path: str | Path, quality: int = 95) -> None:
    """Write atomically: a temporary file beside `path`, then a rename."""
    path = Path(path)
    pil = img if isinstance(img, Image.Image) else tensor_to_pil(img)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"{path}: unknown image extension {path.suffix!r}")
    if pil.mode == "RGBA" and path.suffix.lower() not in ALPHA_EXTS:
        raise ImageError(f"{path}: {fmt} cannot hold transparency; use png, webp or tiff")
    with atomic_write(path) as f:
        pil.save(f, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))


def make_grid(rows: list[list[torch.Tensor]], size: int, pad: int = 4) -> Image.Image:
    """Tile images (each resized to `size` x `size` by short side + centre crop) into a sheet
    on white, `pad` px apart and from the edges; a short row is filled out with white."""
    ncol = max(len(r) for r in rows)
    tiles = []
    for row in rows:
        tiles += [center_crop(resize_short(img.float().cpu(), size), size) for img in row]
        tiles += [torch.ones(3, size, size)] * (ncol - len(row))
    sheet = torch.ones(3, pad + len(rows) * (size + pad), pad + ncol * (size + pad))
    for k, tile in enumerate(tiles):
        top, left = pad + (k // ncol) * (size + pad), pad + (k % ncol) * (size + pad)
        sheet[:, top : top + size, left : left + size] = tile
    return tensor_to_pil(sheet)
