"""The training loss, term by term: AdaIN's content and style losses (Huang & Belongie 2017,
eq. 11-13), the terms that hold the photo, and the reconstruction warm start's L1."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from stylize.controls import luminance
from stylize.models import STYLE_TAPS, TAP_CHANNELS, Encoder, mean_std, paint

STATS_SIZE = 2 * sum(TAP_CHANNELS.values())  # a style image's means and stds at every tap, flattened
TERMS = ("content", "style", "style_half", "identity", "laplacian", "ssim")  # in the log's order
IDENTITY_IMAGES = 2  # the content images of each batch that the identity term decodes from their own features
LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
LAPLACIAN_POOL = 4  # the scale the Laplacian loss ties to the photo: edges of 4x4-pixel averages


class Batch(NamedTuple):
    """A step's pairs, encoded: the content images, their relu4_1 features and skip taps' features,
    the style images' `tap_stats`, and those of the style images at half scale (for `style_half`)."""

    content: torch.Tensor
    feats: torch.Tensor
    taps: dict[str, torch.Tensor]
    stats: torch.Tensor | None  # None in the warm start, which needs no style
    half: torch.Tensor | None = None


def terms(encoder: Encoder, decoder: nn.Module, b: Batch, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Every term of `TERMS` for a batch of pairs: the decoder paints each content image in its
    style (`models.paint`, uncapped; `decoder` may be wrapped in DDP); a term whose weight is 0 is
    not computed (0). The identity
    term's content images are painted in their own style (AdaIN onto their own statistics is their
    features) in the same decoder call."""
    zero = torch.zeros((), device=b.feats.device)
    n, k = len(b.content), min(IDENTITY_IMAGES, len(b.content)) if weights["identity"] else 0
    feats, taps, style = b.feats, b.taps, split_stats(b.stats)
    if k:
        own = {t: mean_std(x[:k]) for t, x in {"relu4_1": feats, **taps}.items()}
        style = {t: tuple(torch.cat([s, o]) for s, o in zip(style[t], own[t], strict=True)) for t in own}
        feats, taps = torch.cat([feats, feats[:k]]), {t: torch.cat([x, x[:k]]) for t, x in taps.items()}
    both, target = paint(decoder, feats, taps, style, cap=None)
    out, target = both[:n], target[:n]
    out_taps = encoder(out)
    half = weights["style_half"] and b.half is not None
    return {
        "content": content_loss(out_taps["relu4_1"], target),
        "style": style_loss(out_taps, b.stats),
        "style_half": style_loss(encoder(half_scale(out)), b.half) if half else zero,
        "identity": reconstruction_loss(both[n:], b.content[:k]) if k else zero,
        "laplacian": laplacian_loss(out, b.content) if weights["laplacian"] else zero,
        "ssim": ssim_loss(out, b.content) if weights["ssim"] else zero,
    }


def reconstruction_terms(decoder: nn.Module, b: Batch) -> dict[str, torch.Tensor]:
    """The warm start's loss in the `content` term (the other terms 0): the L1 distance between the
    content images and their own features decoded, with no pass through VGG on the output."""
    zero = torch.zeros((), device=b.feats.device)
    return {t: zero for t in TERMS} | {"content": reconstruction_loss(decoder(b.feats, b.taps), b.content)}


def content_loss(out_relu4_1: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """relu4_1 of the output against the AdaIN target it was decoded from."""
    return F.mse_loss(out_relu4_1.float(), target.float())


def tap_stats(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Channel means and stds of every style tap, flattened to (N, STATS_SIZE): all the
    style loss needs of a style image, small enough to cache for thousands of crops."""
    parts = [t.flatten(1) for tap in STYLE_TAPS for t in mean_std(taps[tap])]
    return torch.cat(parts, 1)


def split_stats(stats: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """`tap_stats` back to {tap: (mean, std)}, each (N, C, 1, 1)."""
    out, i = {}, 0
    for tap in STYLE_TAPS:
        c = TAP_CHANNELS[tap]
        out[tap] = (stats[:, i : i + c, None, None], stats[:, i + c : i + 2 * c, None, None])
        i += 2 * c
    return out


def style_loss(out_taps: dict[str, torch.Tensor], style_stats: torch.Tensor) -> torch.Tensor:
    """Sum over relu1_1..relu4_1 of the MSE between channel means plus that between stds;
    `style_stats` are the style image's, from `tap_stats`."""
    loss = torch.zeros((), device=out_taps["relu4_1"].device)
    for tap, (sm, ss) in split_stats(style_stats.float()).items():
        om, os_ = mean_std(out_taps[tap])
        loss = loss + F.mse_loss(om, sm) + F.mse_loss(os_, ss)
    return loss


def half_scale(image: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) at half their size, antialiased: what the half-scale style term encodes."""
    return F.interpolate(image, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)


def reconstruction_loss(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """L1 between the decoded image and the content image whose features it was given."""
    return F.l1_loss(out.float(), image.float())


def laplacian(image: torch.Tensor, pool: int = LAPLACIAN_POOL) -> torch.Tensor:
    """The discrete Laplacian of each channel of `image` average-pooled by `pool`: its edges at that scale."""
    x = F.avg_pool2d(image.float(), pool)
    k = LAPLACIAN.to(x.device).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def laplacian_loss(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """MSE between the Laplacians of the output and of the content image (Li et al. 2017,
    "Laplacian-steered neural style transfer"): holds its edges at the scale of 4-pixel blocks,
    which the relu4_1 content loss leaves loose (the decoder swirls them), and leaves the finer
    texture free for the style's strokes."""
    return F.mse_loss(laplacian(out), laplacian(image))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of images (N, 1, H, W) in [0, 1]: Gaussian window 11, sigma 1.5 (Wang et al. 2004)."""
    g = torch.exp(-((torch.arange(11, device=a.device) - 5.0) ** 2) / (2 * 1.5**2))
    win = (g[:, None] * g[None, :] / g.sum() ** 2)[None, None]
    a, b = a.float(), b.float()
    mu_a, mu_b = F.conv2d(a, win), F.conv2d(b, win)
    var_a, var_b = F.conv2d(a * a, win) - mu_a**2, F.conv2d(b * b, win) - mu_b**2
    cov = F.conv2d(a * b, win) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def ssim_loss(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """1 - SSIM between the luminances of the output and the content image: holds its local
    structure (contrast and correlation in 11-px windows) and leaves the colours to the style."""
    return 1 - ssim(luminance(out), luminance(image))
