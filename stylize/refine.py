"""Refinement (beyond the paper): a few steps of the paper's loss on the decoder's picture itself.

The decoder paints any pair in one pass, trained over many pairs: its picture lies near, not at,
the minimum of the training loss for this pair. From that picture, a few Adam steps on the
pixels (the optimisation of Gatys et al., from a good start instead of noise) bring the
painting's statistics much closer: firmer strokes and more of its palette. The paper's loss
alone blurs the photo's shapes as it does so; an SSIM term on the luminance holds them, so the
picture gains the painting and keeps the photo (docs/usage.md, "Refinement"). Each step is a pass
through the encoder and back at the picture's full size: about 2-3 s at 512 px on a 2-core CPU
(BENCHMARKS.md, "Refinement").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm import tqdm

from stylize.models import Encoder, adain
from stylize.options import normalise_weights
from stylize.training.losses import content_loss, split_stats, ssim_loss, style_loss, tap_stats

REFINE_LR = 0.01  # Adam's step on pixel values in [0, 1]
STYLE_WEIGHT = 10.0  # the paper's lambda
SSIM_WEIGHT = 5.0  # 1 - SSIM against the photo's luminance: holds its shapes (commit ea4c381)


@torch.no_grad()
def style_target(
    encoder: Encoder, styles: Sequence[torch.Tensor], weights: Sequence[float] | None = None
) -> torch.Tensor:
    """The style loss's target (`tap_stats`, (1, STATS_SIZE)) of style images (3, H, W), mixed by
    `weights` (default equal) as `controls.mix_stats` mixes them for AdaIN."""
    ws = normalise_weights(weights if weights is not None else [1.0] * len(styles), len(styles))
    return sum(w * tap_stats(encoder(s[None])) for w, s in zip(ws, styles, strict=True))


def refine(
    encoder: Encoder,
    content: torch.Tensor,
    image: torch.Tensor,
    style: torch.Tensor,
    steps: int,
    alpha: float = 1.0,
    lr: float = REFINE_LR,
    style_weight: float = STYLE_WEIGHT,
    ssim_weight: float = SSIM_WEIGHT,
    check: Callable[[], None] | None = None,
) -> torch.Tensor:
    """`image` (N, 3, H, W), the decoder's picture of `content` (the same shape), after `steps`
    Adam steps on content_loss + style_weight x style_loss (the paper's training loss for this
    pair) + ssim_weight x ssim_loss (the content's luminance structure, which the first two blur).
    `style` is the painting's `style_target`; `alpha` blends both targets with the content's
    own features and statistics, as AdaIN's alpha does. A progress bar shows on a terminal.
    `check`, if given, is called before each step (it may raise to stop the work)."""
    with torch.no_grad():
        taps = encoder(content)
        own = tap_stats(taps)
        target = adain(taps["relu4_1"], *split_stats(style)["relu4_1"], alpha)
        stats = alpha * style + (1 - alpha) * own
    x = image.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    with torch.enable_grad():
        for _ in tqdm(range(steps), desc="refine", unit="step", leave=False, disable=None):
            if check:
                check()
            out = encoder(x)
            loss = content_loss(out["relu4_1"], target) + style_weight * style_loss(out, stats)
            loss = loss + ssim_weight * ssim_loss(x, content)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    return x.detach()
