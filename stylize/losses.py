"""AdaIN training losses (Huang & Belongie 2017, eq. 11-13) and the reconstruction warm start's."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylize.controls import luminance
from stylize.models import STYLE_TAPS, TAP_CHANNELS, mean_std

STATS_SIZE = 2 * sum(TAP_CHANNELS.values())  # a painting's means and stds at every tap, flattened
PAPER_TAP_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # each style tap's share of the style loss, as in the paper
LAPLACIAN = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
LAPLACIAN_POOL = 4  # the scale the Laplacian loss ties to the photo: edges of 4x4-pixel averages


def content_loss(out_relu4_1: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """relu4_1 of the output against the AdaIN target it was decoded from."""
    return F.mse_loss(out_relu4_1.float(), target.float())


def tap_stats(taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Channel means and stds of every style tap, flattened to (N, STATS_SIZE): all the
    style loss needs of a painting, small enough to cache for thousands of crops."""
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


def style_loss(
    out_taps: dict[str, torch.Tensor], style_stats: torch.Tensor, weights: Sequence[float] = PAPER_TAP_WEIGHTS
) -> torch.Tensor:
    """Sum over relu1_1..relu4_1 of the MSE between channel means plus that between stds, each
    tap's term times its `weights` entry; `style_stats` are the painting's, from `tap_stats`."""
    loss = torch.zeros((), device=out_taps["relu4_1"].device)
    for w, (tap, (sm, ss)) in zip(weights, split_stats(style_stats.float()).items(), strict=True):
        om, os_ = mean_std(out_taps[tap])
        loss = loss + w * (F.mse_loss(om, sm) + F.mse_loss(os_, ss))
    return loss


def reconstruction_loss(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """L1 between the decoded image and the photo whose features it was given: the warm
    start trains the decoder to invert the encoder, with no pass through VGG on the output."""
    return F.l1_loss(out.float(), image.float())


def laplacian(image: torch.Tensor, pool: int = LAPLACIAN_POOL) -> torch.Tensor:
    """The discrete Laplacian of each channel of `image` average-pooled by `pool`: its edges at that scale."""
    x = F.avg_pool2d(image.float(), pool)
    k = LAPLACIAN.to(x.device).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])


def laplacian_loss(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """MSE between the Laplacians of the output and of the photo it was painted from (Li et al.
    2017, "Laplacian-steered neural style transfer"): holds the photo's edges at the scale of
    4-pixel blocks, which the relu4_1 content loss leaves loose (the decoder swirls them), and
    leaves the finer texture free for the painting's strokes."""
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
    """1 - SSIM between the luminances of the output and the photo it was painted from: holds the
    photo's local structure (contrast and correlation in 11-px windows) and leaves the colours to
    the painting. Beside the style loss, on the decoder's pictures, the independent style embedding
    came as close to the painting's as without it while SSIM rose instead of falling
    (EVALUATION.md, "What holds the photo")."""
    return 1 - ssim(luminance(out), luminance(image))
