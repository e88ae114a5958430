"""AdaIN training losses (Huang & Belongie 2017, eq. 11-13)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stylize.models import STYLE_TAPS, mean_std


def content_loss(out_relu4_1: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """relu4_1 of the output against the AdaIN target it was decoded from."""
    return F.mse_loss(out_relu4_1.float(), target.float())


def style_loss(out_taps: dict[str, torch.Tensor], style_taps: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over relu1_1..relu4_1 of the MSE between channel means plus that between stds."""
    loss = torch.zeros((), device=out_taps["relu4_1"].device)
    for tap in STYLE_TAPS:
        om, os_ = mean_std(out_taps[tap])
        sm, ss = mean_std(style_taps[tap])
        loss = loss + F.mse_loss(om, sm) + F.mse_loss(os_, ss)
    return loss
