"""Creative controls as small functions on tensors: style mixing, colour preservation, masks.

Images are (3, H, W) in [0, 1]; features are relu4_1 maps (N, C, h, w); style statistics are
(mean, std) pairs shaped (1, C, 1, 1), as `models.mean_std` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from stylize.models import Stats, adain, mean_std
from stylize.options import normalise_weights

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 / YIQ luminance weights


def mix_stats(stats: Sequence[Stats], weights: Sequence[float] | None = None) -> Stats:
    """Interpolate styles in feature space. AdaIN's output is linear in the style's mean and std,
    so mixing the statistics gives exactly the weighted sum of the per-style AdaIN outputs
    (the reference implementations' interpolation), at the cost of one AdaIN."""
    ws = normalise_weights(weights if weights is not None else [1.0] * len(stats), len(stats))
    mean = sum(w * m for w, (m, _) in zip(ws, stats))
    std = sum(w * s for w, (_, s) in zip(ws, stats))
    return mean, std


# --- colour preservation -----------------------------------------------------------------


def coral(source: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Give `source` the colour mean and covariance of `target` (CORAL, Sun et al. 2016), as the
    reference AdaIN does to the style image before stylizing with `preserve_color`."""
    s, t = source.reshape(3, -1).double(), target.reshape(3, -1).double()
    s_mean, t_mean = s.mean(1, keepdim=True), t.mean(1, keepdim=True)
    eye = eps * torch.eye(3, dtype=s.dtype)
    s_cov, t_cov = torch.cov(s) + eye, torch.cov(t) + eye
    out = _sqrtm(t_cov) @ torch.linalg.inv(_sqrtm(s_cov)) @ (s - s_mean) + t_mean
    return out.reshape(source.shape).to(source.dtype).clamp_(0, 1)


def _sqrtm(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T


def luminance(img: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) RGB -> (…, 1, H, W) luminance."""
    w = torch.tensor(LUMA, dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(-3, keepdim=True)


def gray_matched(style: torch.Tensor, content_luma: torch.Tensor) -> torch.Tensor:
    """The style's luminance with the content luminance's mean and std, as a 3-channel image
    (Gatys et al. 2016, "Preserving color in neural artistic style transfer")."""
    y = luminance(style)
    y = (y - y.mean()) / (y.std() + 1e-5) * content_luma.std() + content_luma.mean()
    return y.clamp(0, 1).expand(3, -1, -1)


def keep_chroma(content: torch.Tensor, stylized_gray: torch.Tensor) -> torch.Tensor:
    """The content's chroma with the stylized luminance. Changing only Y in YIQ adds the same
    amount to R, G and B, so the conversion reduces to adding the luminance difference."""
    return (content + luminance(stylized_gray) - luminance(content)).clamp_(0, 1)


# --- spatial control ---------------------------------------------------------------------


def region_weights(masks: torch.Tensor, grid: tuple[int, int], styles: int) -> torch.Tensor:
    """Per-style weights on the feature grid, (styles, 1, h, w), from masks (K, H, W) in [0, 1]
    (white = the region). K == styles, or styles - 1 and the last style takes what the masks
    leave. Masks are resized with antialiasing and feathered by a small blur, so regions meet
    in a soft ramp rather than a seam; where masks overlap they share, where none covers (with
    K == styles) the weights sum below one and the content's own features fill the rest."""
    if masks.dim() != 3 or masks.shape[0] not in (styles, styles - 1) or masks.shape[0] == 0:
        raise ValueError(f"{masks.shape[0] if masks.dim() == 3 else '?'} masks for {styles} styles: "
                         f"give one mask per style, or one fewer (the last style fills the rest)")  # fmt: skip
    m = F.interpolate(masks[:, None].float(), size=grid, mode="bilinear", antialias=True, align_corners=False)
    m = _blur(m.clamp(0, 1))
    m = m / m.sum(0, keepdim=True).clamp(min=1)
    if masks.shape[0] == styles - 1:
        m = torch.cat([m, (1 - m.sum(0, keepdim=True)).clamp(min=0)])
    return m


def _blur(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, h, w), reflection padded (a full mask stays full)."""
    r = 2
    k = torch.exp(-((torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2) / 2)
    k = k / k.sum()
    if min(x.shape[-2:]) <= r:  # too small to reflect-pad: leave as is
        return x
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def masked_adain(
    feats: torch.Tensor, stats: Sequence[Stats], weights: torch.Tensor, alpha: float = 1.0, cap: float | None = None
) -> torch.Tensor:
    """AdaIN per region, as the authors' Torch tool: each style normalises the content features
    by the statistics of its own region (weighted by the soft mask), and the regions' targets
    are blended by the weights (styles, 1, h, w); uncovered areas keep the content features.
    `cap` as in `adain`."""
    f = feats.float()
    target = f * (1 - weights.sum(0)).clamp(min=0)
    for w, (s_mean, s_std) in zip(weights, stats):
        if w.sum() <= 0:  # the mask covers nothing: this style does not appear
            continue
        target = target + w * adain(f, s_mean, s_std, content_stats=_weighted_mean_std(f, w), cap=cap)
    return (alpha * target + (1 - alpha) * f).to(feats.dtype)


def _weighted_mean_std(f: torch.Tensor, w: torch.Tensor, eps: float = 1e-5) -> Stats:
    if bool((w == w.flatten()[0]).all()):  # uniform weights: the plain statistics, bit for bit
        return mean_std(f, eps)
    total = w.sum()
    mean = (f * w).sum((2, 3), keepdim=True) / total
    var = ((f - mean) ** 2 * w).sum((2, 3), keepdim=True) / total
    return mean, (var + eps).sqrt()
