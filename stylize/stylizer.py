"""The Python API: `Stylizer.from_pretrained().stylize(content, style, alpha)`."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from stylize.models import Decoder, Encoder, adain, mean_std
from stylize.weights import DEFAULT_DECODER, DEFAULT_ENCODER, load_decoder, load_encoder


class StyleStats(NamedTuple):
    """A style reduced to what AdaIN needs: relu4_1 channel means and stds, (1, 512, 1, 1)."""

    mean: torch.Tensor
    std: torch.Tensor


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Stylizer:
    """Encoder + AdaIN + decoder. Images are float tensors (3, H, W) or (N, 3, H, W) in [0, 1]."""

    def __init__(self, encoder: Encoder, decoder: Decoder, device: str | torch.device = "auto") -> None:
        self.device = pick_device(device) if isinstance(device, str) else device
        self.encoder = encoder.to(self.device).eval()
        self.decoder = decoder.to(self.device).eval()

    @classmethod
    def from_pretrained(
        cls,
        encoder: str | Path = DEFAULT_ENCODER,
        decoder: str | Path = DEFAULT_DECODER,
        device: str | torch.device = "auto",
    ) -> Stylizer:
        """Load weights from files (default: those shipped in weights/) or `URL#sha256=HEX`."""
        return cls(load_encoder(encoder), load_decoder(decoder), device)

    @torch.no_grad()
    def style_stats(self, style: torch.Tensor) -> StyleStats:
        """Encode a style image once; reuse the result for any number of contents."""
        feats = self.encoder.relu4_1(_batched(style).to(self.device))
        return StyleStats(*mean_std(feats))

    @torch.no_grad()
    def stylize(self, content: torch.Tensor, style: torch.Tensor | StyleStats, alpha: float = 1.0) -> torch.Tensor:
        """Repaint `content` in `style` (an image or its StyleStats); alpha 0 keeps the content,
        1 is full style. The output has the content's size and shape, values in [0, 1]."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        stats = style if isinstance(style, StyleStats) else self.style_stats(style)
        x = _batched(content).to(self.device)
        h, w = x.shape[-2:]
        # The encoder pools three times: pad to a multiple of 8 by reflection, crop afterwards.
        x = F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect")
        out = self.decoder(adain(self.encoder.relu4_1(x), stats.mean, stats.std, alpha))
        out = out[..., :h, :w].clamp_(0, 1)
        return out if content.dim() == 4 else out[0]


def _batched(img: torch.Tensor) -> torch.Tensor:
    if img.dim() == 3:
        return img.unsqueeze(0)
    if img.dim() == 4:
        return img
    raise ValueError(f"expected an image tensor (3, H, W) or (N, 3, H, W), got shape {tuple(img.shape)}")
