"""The networks: a frozen VGG-19 encoder (to relu4_1), the AdaIN layer and the decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (name, in_channels, out_channels) of VGG-19's convolutions up to conv4_1, with a
# 2x2 max-pool after each of conv1_2, conv2_2 and conv3_4.
VGG_CONVS = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
    ("conv4_1", 256, 512),
)  # fmt: skip
POOL_AFTER = {"conv1_2", "conv2_2", "conv3_4"}
STYLE_TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    # Reflection padding, as in the reference AdaIN: zero padding shows the encoder a dark
    # frame around every image, and the decoder learns to paint that frame back.
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="reflect")


class Encoder(nn.Module):
    """VGG-19 up to relu4_1. Input: RGB in [0, 1]; any colour conversion and mean
    subtraction is folded into conv1_1 by `stylize.weights`. Returns the four style taps."""

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in VGG_CONVS:
            self.add_module(name, conv3x3(cin, cout))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Encoder:
        return super().train(False)  # frozen: never leaves eval mode

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = {}
        for name, _, _ in VGG_CONVS:
            x = F.relu(getattr(self, name)(x))
            relu = "relu" + name[4:]
            if relu in STYLE_TAPS:
                taps[relu] = x
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return taps

    def relu4_1(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)["relu4_1"]


class Decoder(nn.Sequential):
    """Mirror of the encoder: relu4_1 features (512 channels, 1/8 size) to an RGB image.
    Nearest-neighbour upsampling, reflection padding, no normalisation layers."""

    def __init__(self) -> None:
        up = nn.Upsample(scale_factor=2, mode="nearest")
        super().__init__(
            conv3x3(512, 256), nn.ReLU(), up,
            conv3x3(256, 256), nn.ReLU(),
            conv3x3(256, 256), nn.ReLU(),
            conv3x3(256, 256), nn.ReLU(),
            conv3x3(256, 128), nn.ReLU(), up,
            conv3x3(128, 128), nn.ReLU(),
            conv3x3(128, 64), nn.ReLU(), up,
            conv3x3(64, 64), nn.ReLU(),
            conv3x3(64, 3),
        )  # fmt: skip


def mean_std(feat: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-wise mean and std over the spatial dims, shaped (N, C, 1, 1)."""
    var, mean = torch.var_mean(feat.float(), dim=(2, 3), keepdim=True, correction=0)
    return mean, (var + eps).sqrt()


def adain(
    content: torch.Tensor,
    style_mean: torch.Tensor,
    style_std: torch.Tensor,
    alpha: float = 1.0,
    eps: float = 1e-5,
    content_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Give `content` the style's channel statistics; `alpha` blends with the content
    features (1: full style, 0: the content's own features). `content_stats` replaces the
    content's own (mean, std), e.g. those of a mask's region or smoothed over video frames."""
    c_mean, c_std = content_stats if content_stats is not None else mean_std(content, eps)
    target = (content.float() - c_mean) / c_std * style_std + style_mean
    if alpha != 1.0:
        target = alpha * target + (1 - alpha) * content.float()
    return target.to(content.dtype)
