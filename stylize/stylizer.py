"""The Python API: `Stylizer.from_pretrained().stylize(content, style, alpha)`."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from stylize.controls import (
    coral,
    gray_matched,
    keep_chroma,
    luminance,
    masked_adain,
    mix_stats,
    region_weights,
)
from stylize.engine import Engine
from stylize.models import SKIP_CAP, TAP_SCALE, Decoder, Encoder, Stats, TapAdain, adain_maps, mean_std
from stylize.options import COLOR_MODES, DEFAULT_DECODER, DEFAULT_ENCODER
from stylize.refine import refine as run_refine
from stylize.refine import style_target
from stylize.weights import load_decoder, load_encoder


class StyleStats(NamedTuple):
    """A style reduced to what AdaIN needs: relu4_1 channel means and stds, (1, 512, 1, 1), and
    those of the shallow taps that the decoder also takes (if it has skips)."""

    mean: torch.Tensor
    std: torch.Tensor
    shallow: dict[str, Stats] | None = None

    def at(self, tap: str) -> Stats:
        """(mean, std) at `tap`."""
        if tap == "relu4_1":
            return self.mean, self.std
        if not self.shallow or tap not in self.shallow:
            raise ValueError(f"these StyleStats have no {tap}: make them with the Stylizer that paints with them")
        return self.shallow[tap]


class Encoded(NamedTuple):
    """A content image with its features, to paint in several styles encoding it once."""

    image: torch.Tensor  # as given: (3, H, W) or (N, 3, H, W)
    feats: torch.Tensor  # relu4_1 of the image padded to a multiple of 8, on the Stylizer's device
    shallow: dict[str, Stats] | None = None  # channel (mean, std) of the shallow taps a decoder with skips takes
    taps: dict[str, torch.Tensor] | None = None  # those taps themselves, when the image fits one of the engine's tiles


Style = torch.Tensor | StyleStats  # an image (3, H, W) or its statistics
Content = torch.Tensor | Encoded  # an image (3, H, W) or (N, 3, H, W), or its encoding


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Stylizer:
    """Encoder + AdaIN + decoder. Images are float tensors (3, H, W) or (N, 3, H, W) in [0, 1].
    The networks run through `stylize.engine` (faster kernels, bf16 on CUDA, and images over
    `tile` px on a side in tiles: default 1024 on CPU, 2048 on CUDA)."""

    def __init__(
        self, encoder: Encoder, decoder: Decoder, device: str | torch.device = "auto", tile: int | None = None
    ) -> None:
        self.device = pick_device(device) if isinstance(device, str) else device
        # the plain encoder, in float32 with autograd, for `refine`; the engine holds its own copy
        self.encoder = copy.deepcopy(encoder).to(self.device)
        self.engine = Engine(encoder, decoder, self.device, tile)

    @classmethod
    def from_pretrained(
        cls,
        encoder: str | Path = DEFAULT_ENCODER,
        decoder: str | Path = DEFAULT_DECODER,
        device: str | torch.device = "auto",
        tile: int | None = None,
    ) -> Stylizer:
        """Load weights from files (default: those shipped in weights/) or `URL#sha256=HEX`."""
        return cls(load_encoder(encoder), load_decoder(decoder), device, tile)

    def style_stats(self, style: torch.Tensor) -> StyleStats:
        """Encode a style image once; reuse the result for any number of contents."""
        feats, shallow, _ = self.engine.encode(_pad8(_batched(style)))
        return StyleStats(*mean_std(feats), shallow)

    def encode(self, content: Content) -> Encoded:
        """Encode a content image once; pass the result to `stylize` for each style."""
        if isinstance(content, Encoded):
            return content
        return Encoded(content, *self.engine.encode(_pad8(_batched(content))))

    @torch.no_grad()
    def stylize(
        self,
        content: Content,
        style: Style | Sequence[Style],
        alpha: float = 1.0,
        *,
        weights: Sequence[float] | None = None,
        masks: torch.Tensor | Sequence[torch.Tensor] | None = None,
        preserve_color: str | None = None,
        refine: int = 0,
        check: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Repaint `content` in `style` (an image or its StyleStats); alpha 0 keeps the content,
        1 is full style. The output has the content's size and shape, values in [0, 1].
        `content` may be an image or `encode(image)`, to paint one content in many styles.

        Several styles (a list) are mixed by `weights` (default equal; normalised to sum to
        one), or, with `masks` ((H, W) tensors in [0, 1], white = the region, stretched to the
        content), each painted in its own region: one mask per style, or one fewer and the last
        style fills the rest. `preserve_color` keeps the content's colours: "coral" recolours
        the style to them first, "luminance" stylizes only the luminance; both need style
        images rather than StyleStats, as the matching depends on the content. `refine` > 0 takes
        that many steps of the paper's loss and an SSIM term on the picture itself
        (`stylize.refine`: firmer strokes on the photo's shapes, about 2-3 s a step at 512 px on a
        2-core CPU); it needs style images, not masks. `check` is called between the stages (after
        the encoding, before each refine step): an exception it raises stops the work there, as
        the web server does when a request's client has gone."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        styles = [style] if isinstance(style, (torch.Tensor, StyleStats)) else list(style)
        if weights is not None and masks is not None:
            raise ValueError("weights mix styles over the whole image and masks give each its own region: use one")
        if refine < 0:
            raise ValueError(f"refine is a number of steps, 0 or more, got {refine}")
        if refine and (masks is not None or any(isinstance(s, StyleStats) for s in styles)):
            raise ValueError("refine needs style images (not StyleStats), over the whole image (not masks)")
        if preserve_color is not None:
            return self._preserving_color(content, styles, alpha, weights, masks, preserve_color, refine, check)
        stats = [self._as_stats(s) for s in styles]
        image, feats, shallow, taps = self.encode(content)
        if check:
            check()
        x = _batched(image)
        padded = _pad8(x.to(self.device)) if self.engine.skip_taps else None
        if masks is None:
            style_mix = {t: mix_stats([s.at(t) for s in stats], weights) for t in ("relu4_1", *self.engine.skip_taps)}
            maps = adain_maps({"relu4_1": mean_std(feats), **(shallow or {})}, style_mix, alpha)
            out = self.decode(maps["relu4_1"](feats).to(feats.dtype), x.shape[-2:], padded, maps, taps=taps)
            if refine:
                target = style_target(self.encoder, [s.to(self.device) for s in styles], weights)
                out = run_refine(self.encoder, x.to(self.device), out, target, refine, alpha, check=check)
        else:
            m = torch.stack(list(masks)) if not isinstance(masks, torch.Tensor) else masks
            m = _pad8(F.interpolate(m.float().to(self.device)[:, None], size=x.shape[-2:], mode="bilinear"))[:, 0]
            deep_w = region_weights(m, feats.shape[-2:], len(stats))
            target = masked_adain(feats, [s.at("relu4_1") for s in stats], deep_w, alpha)
            grids = {t: tuple(n // TAP_SCALE[t] for n in m.shape[-2:]) for t in self.engine.skip_taps}
            w = {t: region_weights(m, grid, len(stats)) for t, grid in grids.items()}
            regions = self.engine.region_stats(padded, w) if w else {}
            skips = {
                t: TapAdain.of(regions[t], [s.at(t) for s in stats], alpha, SKIP_CAP) for t in self.engine.skip_taps
            }
            out = self.decode(target, x.shape[-2:], padded, skips, w, taps)
        return out if image.dim() == 4 else out[0]

    def mix(self, styles: Sequence[Style], weights: Sequence[float] | None = None) -> StyleStats:
        """Several styles as one, mixed in feature space by `weights` (default equal; normalised
        to sum to one); pass the result to `stylize` like any StyleStats."""
        stats = [self._as_stats(s) for s in styles]
        shallow = {t: mix_stats([s.at(t) for s in stats], weights) for t in self.engine.skip_taps}
        return StyleStats(*mix_stats([s.at("relu4_1") for s in stats], weights), shallow)

    def _as_stats(self, style: Style) -> StyleStats:
        return style if isinstance(style, StyleStats) else self.style_stats(style)

    def decode(
        self,
        target: torch.Tensor,
        size: tuple[int, int] | torch.Size,
        padded: torch.Tensor | None = None,
        skips: dict[str, TapAdain] | None = None,
        weights: dict[str, torch.Tensor] | None = None,
        taps: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode relu4_1 features of an image padded by `_pad8` back to that image's `size`; a
        decoder with skips also takes the `padded` image, the AdaIN at each skip tap, and the
        image's `taps` if its encoding kept them."""
        return self.engine.decode(target, padded, skips, weights, taps)[..., : size[0], : size[1]].clamp_(0, 1)

    def _preserving_color(
        self,
        content: Content,
        styles: list[Style],
        alpha: float,
        weights: Sequence[float] | None,
        masks: torch.Tensor | Sequence[torch.Tensor] | None,
        mode: str,
        refine: int,
        check: Callable[[], None] | None,
    ) -> torch.Tensor:
        if mode not in COLOR_MODES:
            raise ValueError(f"preserve_color must be one of {', '.join(COLOR_MODES)}, got {mode!r}")
        if isinstance(content, Encoded):  # luminance mode paints another image: start from the pixels
            content = content.image
        if any(isinstance(s, StyleStats) for s in styles):
            raise ValueError("preserve_color needs the style images, not StyleStats: colours are matched per content")
        if content.dim() == 4:  # the matching is per content image
            args = (styles, alpha, weights, masks, mode, refine, check)
            return torch.stack([self._preserving_color(c, *args) for c in content])
        controls = {"weights": weights, "masks": masks, "refine": refine, "check": check}
        if mode == "coral":
            return self.stylize(content, [coral(s, content) for s in styles], alpha, **controls)
        y = luminance(content)
        gray = self.stylize(y.expand(3, -1, -1), [gray_matched(s, y) for s in styles], alpha, **controls)
        return keep_chroma(content, gray.to(content.device))


def _pad8(x: torch.Tensor) -> torch.Tensor:
    """The encoder pools three times: pad to a multiple of 8 by reflection (crop afterwards)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect")


def _batched(img: torch.Tensor) -> torch.Tensor:
    if img.dim() == 3:
        return img.unsqueeze(0)
    if img.dim() == 4:
        return img
    raise ValueError(f"expected an image tensor (3, H, W) or (N, 3, H, W), got shape {tuple(img.shape)}")
