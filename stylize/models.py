"""The networks: a frozen VGG-19 encoder (to relu4_1), the AdaIN layer and the decoder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

Stats = tuple[torch.Tensor, torch.Tensor]  # channel (mean, std), each (N, C, 1, 1)

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
TAP_CHANNELS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512}
TAP_SCALE = {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4, "relu4_1": 8}  # each tap's downscaling of the image


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

    def forward(self, x: torch.Tensor, last: str = "relu4_1") -> dict[str, torch.Tensor]:
        """The style taps up to `last` (the layers after it are not computed)."""
        taps = {}
        for name, _, _ in VGG_CONVS:
            x = F.relu(getattr(self, name)(x))
            relu = "relu" + name[4:]
            if relu in STYLE_TAPS:
                taps[relu] = x
                if relu == last:
                    break
            if name in POOL_AFTER:
                x = F.max_pool2d(x, 2)
        return taps

    def relu4_1(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)["relu4_1"]


# One 2x2 tap pair per output phase and input tap of a 3x3 kernel row, for a conv after
# nearest 2x upsampling: phase 0 reads rows (i-1, i) = (w0, w1+w2), phase 1 rows (i, i+1).
PHASE_TAPS = torch.tensor([[[1.0, 0, 0], [0, 1, 1]], [[1.0, 1, 0], [0, 0, 1]]])


def upconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernels (O, I, 3, 3) of a conv after 2x upsampling -> (4*O, I, 2, 2), phases (a, b)."""
    k = torch.einsum("apk,bql,oikl->aboipq", PHASE_TAPS.to(weight), PHASE_TAPS.to(weight), weight)
    return k.reshape(4 * weight.shape[0], weight.shape[1], 2, 2)


def upsample_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(2x nearest upsampling of x) for a reflection-padded 3x3 conv, computed as one 2x2
    convolution of x with 4x the output channels, one per output phase (replication padding of
    x stands for reflection of the upsampled image), then interleaved: 4/9 of the multiplies."""
    h, w = x.shape[-2:]
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), upconv_weight(conv.weight), conv.bias.repeat(4))
    phases = y.unflatten(1, (2, 2, -1))  # phase (a, b) of pixel (i, j) is at [i + a, j + b]
    rows = [torch.stack([phases[:, a, b, :, a : a + h, b : b + w] for b in (0, 1)], -1) for a in (0, 1)]
    return torch.stack(rows, 3).flatten(2, 3).flatten(3, 4)


# The shallow taps a decoder may take besides relu4_1, with the index of the decoder convolution
# after whose ReLU each joins: the first convolution at that tap's scale (1, 1/2, 1/4).
SKIP_TAPS = {"relu1_1": 7, "relu2_1": 5, "relu3_1": 1}
# The photo's features at a skip tap are capped at their mean + SKIP_CAP stds per channel before
# AdaIN. A channel that is quiet over the photo but fires at a few pixels (the dark tip of a stupa
# against the sky) sits ~10 stds out there, and the painting's std stretches that into a spike the
# decoder paints as a saturated blot (the red spots). Style-embedding distance -1.4% on the
# evaluation's 200 pairs, photo kept as well (commit e792a4b).
SKIP_CAP = 6.0
DECODER_LAYERS = 20  # the paper's decoder: convolutions, ReLUs and upsamplings, in order


class Decoder(nn.Sequential):
    """Mirror of the encoder: relu4_1 features (512 channels, 1/8 size) to an RGB image.
    Nearest-neighbour upsampling, reflection padding, no normalisation layers. Each upsampling
    and the convolution after it run as `upsample_conv` (the same function, ~10% faster to train).

    With `skip_taps` (beyond the paper) it also takes the AdaIN'd features of those shallow taps
    of the photo (relu3_1: 1/4 size, relu2_1: 1/2), each added at its own scale through a 1x1
    convolution that starts at zero: a new skip leaves a trained decoder's output as it was,
    and training teaches it how much of the photo's finer shapes to keep."""

    def __init__(self, skip_taps: tuple[str, ...] = ()) -> None:
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
        unknown = set(skip_taps) - set(SKIP_TAPS)
        if unknown:
            raise ValueError(f"skip taps must be among {', '.join(SKIP_TAPS)}, got {', '.join(sorted(unknown))}")
        # in one order, whatever the order given: the optimiser's state follows the parameters' order
        self.skip_taps = tuple(t for t in SKIP_TAPS if t in skip_taps)
        if self.skip_taps:
            self.skips = nn.ModuleDict({t: nn.Conv2d(TAP_CHANNELS[t], TAP_CHANNELS[t], 1) for t in self.skip_taps})
            for conv in self.skips.values():
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    def layers(self) -> list[nn.Module]:
        """The paper's decoder, in order (the skips are not among them)."""
        return list(self)[:DECODER_LAYERS]

    def forward(self, x: torch.Tensor, shallow: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Decode relu4_1 features `x`; `shallow` holds the AdaIN'd features of `skip_taps`."""
        if self.skip_taps and (shallow is None or set(self.skip_taps) - set(shallow)):
            raise ValueError(f"this decoder also takes the features of {', '.join(self.skip_taps)}")
        joins = {SKIP_TAPS[t]: t for t in self.skip_taps}
        upsampled, convs = False, 0
        for m in self.layers():
            if isinstance(m, nn.Upsample):
                upsampled = True
                continue
            if upsampled:
                x, upsampled = upsample_conv(m, x), False
            else:
                x = m(x)
            if isinstance(m, nn.ReLU):
                if convs - 1 in joins:
                    x = x + self.skips[joins[convs - 1]](shallow[joins[convs - 1]])
            else:
                convs += 1
        return x


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
    cap: float | None = None,
) -> torch.Tensor:
    """Give `content` the style's channel statistics; `alpha` blends with the content
    features (1: full style, 0: the content's own features). `content_stats` replaces the
    content's own (mean, std), e.g. those of a mask's region or smoothed over video frames.
    `cap` bounds the content at its mean + cap stds first (as at the skip taps: SKIP_CAP)."""
    c_mean, c_std = content_stats if content_stats is not None else mean_std(content, eps)
    f = content.float()
    capped = f if cap is None else torch.minimum(f, c_mean + cap * c_std)
    target = (capped - c_mean) / c_std * style_std + style_mean
    if alpha != 1.0:
        target = alpha * target + (1 - alpha) * f
    return target.to(content.dtype)


class TapAdain(NamedTuple):
    """AdaIN at one tap as a map of that tap's features, to apply tile by tile: per style k,
    min(f, top[k]) * scale[k] + shift[k] (from the content's statistics, or its region's, and the
    style's; top[k] its mean + `cap` stds), blended by region weights w (styles, 1, h, w; None:
    one style everywhere), then by `alpha` with f. The same numbers as `adain` (with mixed
    statistics) and `controls.masked_adain`, given the same `cap`."""

    scale: list[torch.Tensor]
    shift: list[torch.Tensor]
    top: list[torch.Tensor] | None
    alpha: float

    @classmethod
    def of(cls, content: Sequence[Stats], style: Sequence[Stats], alpha: float, cap: float | None = None) -> TapAdain:
        scale = [s_std / c_std for (_, c_std), (_, s_std) in zip(content, style, strict=True)]
        shift = [s_mean - c_mean * a for a, (c_mean, _), (s_mean, _) in zip(scale, content, style, strict=True)]
        top = None if cap is None else [c_mean + cap * c_std for c_mean, c_std in content]
        return cls(scale, shift, top, alpha)

    def __call__(self, f: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        f = f.float()
        if w is None:
            t = self._styled(f, 0)
        else:
            t = f * (1 - w.sum(0)).clamp(min=0)
            for k, wk in enumerate(w):
                t = t + wk * self._styled(f, k)
        return t if self.alpha == 1 else self.alpha * t + (1 - self.alpha) * f

    def _styled(self, f: torch.Tensor, k: int) -> torch.Tensor:
        capped = f if self.top is None else torch.minimum(f, self.top[k])
        return capped * self.scale[k] + self.shift[k]


def adain_maps(
    content: Mapping[str, Stats], style: Mapping[str, Stats], alpha: float = 1.0, cap: float | None = SKIP_CAP
) -> dict[str, TapAdain]:
    """How a pair is painted, from statistics alone: AdaIN at relu4_1 and at every skip tap in
    `content` (the content's (mean, std) per tap; `style`, the style's), the skip taps capped at
    `cap` (SKIP_CAP at use; training's loss paints uncapped: None). Training, its sample grids, the
    Stylizer and video all paint through it."""
    return {t: TapAdain.of([c], [style[t]], alpha, None if t == "relu4_1" else cap) for t, c in content.items()}


def paint(
    decoder: nn.Module,
    feats: torch.Tensor,
    taps: Mapping[str, torch.Tensor],
    style: Mapping[str, Stats],
    alpha: float = 1.0,
    cap: float | None = SKIP_CAP,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's picture of content features `feats` (relu4_1) and `taps` (those of the skip
    taps it takes) in a style given by its statistics per tap (`adain_maps`), and the relu4_1
    target it decoded (what training's content loss compares the picture's features with)."""
    maps = adain_maps({t: mean_std(x) for t, x in {"relu4_1": feats, **taps}.items()}, style, alpha, cap)
    target = maps["relu4_1"](feats)
    return decoder(target, {t: maps[t](x) for t, x in taps.items()}), target
