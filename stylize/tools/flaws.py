"""Two flaws a person sees in a stylized picture, as numbers (`python -m stylize.tools.evaluate`).

- Blotches: where the photo is smooth (a sky, a glowing horizon), dark ovals and smears that the
  painting's own texture does not explain. Over the pixels where the photo's local contrast is low,
  the mean of how far the picture's local contrast exceeds the painting's typical (median) local
  contrast, plus how far the picture goes darker than the painting's darkest percentile.
- Mesh: a fine grid at the decoder's upsampling periods (2, 4 and 8 px) over flat areas. At the
  frequencies of that lattice (multiples of 1/8 cycle per pixel), how far the picture's spectrum
  stands above its neighbourhood, in decades, beyond what the photo's and the painting's spectra show.

Both are in the picture's luminance, scale-free per pair, 0 for a picture without the flaw, and
lower is better.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylize.controls import luminance

WINDOW = 9  # px: the neighbourhood of local contrast
SMOOTH = 0.02  # the photo's local std (luminance in [0, 1]) below which it counts as smooth
DARK_QUANTILE = 0.01  # the painting's darkest percentile
PERIOD = 8  # the decoder upsamples three times: its lattice repeats every 8 px
NEIGHBOURS = 2  # bins each side of a lattice frequency whose median is its background


def local_std(luma: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """The std of luminance (H, W) in a window around each pixel, (H, W)."""
    x = luma[None, None]
    pad = window // 2
    mean = F.avg_pool2d(F.pad(x, (pad,) * 4, mode="replicate"), window, stride=1)
    sq = F.avg_pool2d(F.pad(x * x, (pad,) * 4, mode="replicate"), window, stride=1)
    return (sq - mean * mean).clamp_min(0).sqrt()[0, 0]


def blotch(out: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor) -> float:
    """Contrast and darkness in the picture `out` where the photo is smooth, beyond the painting's
    (images (3, H, W) in [0, 1]; `out` has the photo's size)."""
    smooth = local_std(luminance(photo)[0]) < SMOOTH
    if not smooth.any():
        return 0.0
    luma, paint = luminance(out)[0], luminance(painting)[0]
    contrast = (local_std(luma) - local_std(paint).median()).clamp_min(0)
    darkness = (torch.quantile(paint.flatten(), DARK_QUANTILE) - luma).clamp_min(0)
    return (contrast + darkness)[smooth].mean().item()


def lattice_peaks(img: torch.Tensor) -> float:
    """How far the luminance spectrum stands above its neighbourhood at the lattice frequencies
    (k/8 cycle per pixel along each axis, not 0 on both), in decades, averaged. Measured on the
    image cut to multiples of 8 px from its top left corner, where the decoder's lattice starts."""
    luma = luminance(img)[0]
    h, w = (s - s % PERIOD for s in luma.shape)
    if h < 4 * PERIOD or w < 4 * PERIOD:
        return 0.0
    x = luma[:h, :w] - luma[:h, :w].mean()
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None, :]
    power = torch.fft.fft2(x * window).abs().pow(2) + 1e-12
    near = torch.arange(-NEIGHBOURS, NEIGHBOURS + 1)
    peaks = []
    for ky in range(0, h // 2 + 1, h // PERIOD):  # the other half of the plane mirrors this one
        for kx in range(0, w, w // PERIOD):
            if ky == kx == 0:
                continue
            block = power[(ky + near) % h][:, (kx + near) % w].flatten()
            centre = block[len(block) // 2]
            background = torch.cat([block[: len(block) // 2], block[len(block) // 2 + 1 :]]).median()
            peaks.append(torch.log10(centre / background))
    return torch.stack(peaks).mean().item()


def mesh(out: torch.Tensor, photo: torch.Tensor, painting: torch.Tensor) -> float:
    """The picture's lattice peaks beyond the photo's and the painting's (0 when no higher)."""
    return max(0.0, lattice_peaks(out) - max(lattice_peaks(photo), lattice_peaks(painting)))
