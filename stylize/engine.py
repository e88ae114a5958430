"""The networks as stylization runs them: the same functions as `Encoder.relu4_1` and
`Decoder` (which training uses), computed faster and, for large images, in tiles.

- Upsampling + convolution: the decoder's nearest 2x upsampling followed by a
  reflection-padded 3x3 convolution equals, for each of the four output phases, a 2x2
  convolution of the low-resolution input with summed taps (replication padding stands in
  for reflection). One 2x2 convolution with 4x the output channels computes all four at the
  low resolution: the same numbers from 4/9 of the multiplies.
- CPU: NNPACK's Winograd convolutions, which PyTorch's x86 and ARM builds bundle, one image
  at a time (its batched path is slower), for all but small layers; oneDNN on channels_last
  tensors where NNPACK is missing or fails its self-check.
  The max-pools are maxima of strided views (max_pool2d computes indices too), and glibc's
  malloc keeps freed blocks for the next layer's tensors while an image fits one tile
  (`stylize.memory`).
- CUDA: bf16 weights and activations in channels_last (AdaIN's statistics stay fp32).
- Tiles: images larger than `tile` px on a side are encoded and decoded in overlapping
  tiles whose margins cover the networks' receptive fields, so the tiles give the numbers
  one pass would (no seams) in bounded memory; AdaIN still sees the whole image.
- Skips (a decoder that also takes the photo's shallow taps): an image that fits one tile keeps
  its shallow taps from encoding for decoding; a larger one keeps only relu4_1 and the taps'
  statistics whole, and decoding encodes each tile's shallow taps again and applies AdaIN to them
  there (relu2_1 held whole would take 4x the memory of relu4_1). With one style over the whole
  image, a tap's AdaIN is folded into its skip's 1x1 convolution (`add_skip_`).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stylize.memory import keep_freed_memory
from stylize.models import (
    POOL_AFTER,
    SKIP_TAPS,
    TAP_SCALE,
    VGG_CONVS,
    Decoder,
    Encoder,
    Stats,
    TapAdain,
    mean_std,
    upconv_weight,
)

# Margins around tiles, in input pixels. The encoder's receptive field at relu4_1 is 68 px
# (34 each side) and the decoder's about 4 feature cells each side; twice that, rounded to
# the encoder's 8 px grid, leaves the tile interiors exact (tests/test_engine.py checks).
ENCODER_MARGIN = 64
DECODER_MARGIN = 8  # feature cells (64 output px)
# A decoder with skips encodes the image's shallow taps again in each tile (held whole, they would
# take 8x the memory of relu4_1 on a large image): their receptive field (relu3_1: 24 px) adds
# 3 cells to the decoder's margin, rounded up.
SKIP_MARGIN = 12
NNPACK_MIN_PIXELS = 48 * 48


def interleave(y: torch.Tensor, h: int, w: int, relu: bool = False) -> torch.Tensor:
    """(N, 4*O, h+1, w+1) phase outputs -> (N, O, 2h, 2w): phase (a, b) of pixel (i, j) is
    y[:, (a, b), :, i+a, j+b], through a ReLU if `relu` (in the same pass). The output keeps y's
    memory format (a change costs a copy)."""
    n, o = y.shape[0], y.shape[1] // 4
    if y.is_contiguous():
        phases = y.view(n, 2, 2, o, h + 1, w + 1)
        out = y.new_empty(n, o, h, 2, w, 2)
        for a in (0, 1):
            for b in (0, 1):
                _copy(phases[:, a, b, :, a : a + h, b : b + w], out[:, :, :, a, :, b], relu)
        return out.view(n, o, 2 * h, 2 * w)
    phases = y.permute(0, 2, 3, 1).reshape(n, h + 1, w + 1, 2, 2, o)
    out = y.new_empty(n, h, 2, w, 2, o)
    for a in (0, 1):
        for b in (0, 1):
            _copy(phases[:, a : a + h, b : b + w, a, b], out[:, :, a, :, b], relu)
    return out.view(n, 2 * h, 2 * w, o).permute(0, 3, 1, 2)


def _copy(src: torch.Tensor, dst: torch.Tensor, relu: bool) -> None:
    if relu:
        torch.clamp_min(src, 0, out=dst)
    else:
        dst.copy_(src)


def nnpack_works() -> bool:
    """NNPACK present and right on a small case; the check also initialises it, which
    torch does in `_nnpack_available` and which its convolution needs first.
    STYLIZE_NNPACK=0 in the environment turns it off (oneDNN runs instead)."""
    if os.environ.get("STYLIZE_NNPACK", "1") == "0" or not torch.backends.nnpack.is_available():
        return False
    x, w, b = torch.randn(1, 8, 12, 12), torch.randn(16, 8, 3, 3), torch.randn(16)
    try:
        got = torch._nnpack_spatial_convolution(x, w, b, [0, 0])
    except RuntimeError:
        return False
    return torch.allclose(got, F.conv2d(x, w, b), rtol=1e-3, atol=1e-3)


class Layer(nn.Module):
    """A padded convolution (3x3, or the 2x2 form of upsampling + 3x3), optionally + ReLU."""

    def __init__(self, conv: nn.Conv2d, relu: bool, after_upsample: bool) -> None:
        super().__init__()
        self.up, self.relu = after_upsample, relu
        weight = upconv_weight(conv.weight) if after_upsample else conv.weight
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter((conv.bias.repeat(4) if after_upsample else conv.bias).detach().clone(), False)
        self.nnpack = False  # set by Engine
        # the last layer (3 output channels), which the convolution libraries compute slowly
        self.few_outputs = not after_upsample and weight.shape[0] < 16 and weight.shape[-1] == 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.few_outputs and x.device.type == "cpu" and x.is_contiguous():
            y = few_outputs_conv(x, self.weight, self.bias)
        else:
            y = self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate" if self.up else "reflect"))
        if self.up:
            return interleave(y, h, w, self.relu)
        return F.relu_(y) if self.relu else y

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        # NNPACK transforms the kernels on every call: it pays from about 48x48 px up (measured
        # on a 2-core AVX2 CPU).
        if self.nnpack and x.shape[-2] * x.shape[-1] >= NNPACK_MIN_PIXELS:
            try:
                conv = torch._nnpack_spatial_convolution
                ys = [conv(xi[None], self.weight, self.bias, [0, 0]) for xi in x.contiguous()]
                return ys[0] if len(ys) == 1 else torch.cat(ys)
            except RuntimeError:  # a shape NNPACK refuses: the native path from now on
                self.nnpack = False
        return F.conv2d(x, self.weight, self.bias)


def few_outputs_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The reflection-padded 3x3 convolution of NCHW images `x` with few output channels: every
    tap's weights times the input in one matrix product, its (few) channels padded, then the nine
    shifted sums. The last layer (64 -> 3 channels) at 512 px: 16 ms, where oneDNN and NNPACK take
    39-65 ms (their kernels are built for many output channels) after padding all 64 channels."""
    n, c, h, w = x.shape
    o = weight.shape[0]
    taps = weight.permute(2, 3, 0, 1).reshape(9 * o, c)  # rows: (ky, kx, out channel)
    out = x.new_empty(n, o, h, w)
    for i in range(n):
        y = (taps @ x[i].reshape(c, h * w)).view(9 * o, h, w)
        y = F.pad(y, (1, 1, 1, 1), mode="reflect").view(3, 3, o, h + 2, w + 2)  # = the taps on the padded x
        torch.add(y[0, 0, :, :h, :w], bias[:, None, None], out=out[i])
        for ky in range(3):
            for kx in range(3):
                if ky or kx:
                    out[i] += y[ky, kx, :, ky : ky + h, kx : kx + w]
    return out


def encoder_layers(encoder: Encoder) -> nn.ModuleList:
    return nn.ModuleList(Layer(getattr(encoder, name), True, False) for name, _, _ in VGG_CONVS)


def decoder_layers(decoder: Decoder) -> nn.ModuleList:
    mods, layers = decoder.layers(), nn.ModuleList()
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
            layers.append(Layer(m, relu, after_upsample=i > 0 and isinstance(mods[i - 1], nn.Upsample)))
    return layers


class Engine(nn.Module):
    """`encode` = Encoder (the taps the decoder takes) and `decode` = Decoder on one device, for inference."""

    def __init__(
        self,
        encoder: Encoder,
        decoder: Decoder,
        device: torch.device,
        tile: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.device = device
        self.enc, self.dec = encoder_layers(encoder), decoder_layers(decoder)
        self.skip_taps = decoder.skip_taps
        self.skips = copy.deepcopy(decoder.skips).requires_grad_(False) if decoder.skip_taps else nn.ModuleDict()
        self.joins = {SKIP_TAPS[t]: t for t in decoder.skip_taps}  # decoder layer -> the tap added after it
        # bf16 where tensor cores make it fast; x86 CPUs without AMX compute it slower than fp32
        self.dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        use_nnpack = device.type == "cpu" and self.dtype == torch.float32 and nnpack_works()
        for layer in (*self.enc, *self.dec):
            layer.nnpack = use_nnpack
        self.memory_format = torch.contiguous_format if use_nnpack else torch.channels_last
        self.to(device, self.dtype, memory_format=self.memory_format)
        # Larger tiles on the GPU: fewer, bigger launches and little margin recomputed.
        self.tile = tile or (2048 if device.type == "cuda" else 1024)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, Stats], dict[str, torch.Tensor] | None]:
        """relu4_1 features (in the engine's dtype) of images whose sides are multiples of 8, the
        channel (mean, std) over each image of every shallow tap the decoder takes, and, when the
        image fits one tile, those taps themselves (for `decode`, which then need not encode them
        again: a fifth of the time at 512 px); else None."""
        x = x.to(self.device, self.dtype, memory_format=self.memory_format)
        self._memory(max(x.shape[-2:]))
        keep = bool(self.skip_taps) and max(x.shape[-2:]) <= self.tile

        def fn(x: torch.Tensor) -> list[torch.Tensor]:
            return self._encode(x, keep)

        feats, *outs = tiled(fn, [x], self.tile, ENCODER_MARGIN, sums=0 if keep else 2 * len(self.skip_taps))
        if keep:  # the taps whole: their statistics in one float32 pass (float64 sums cost 4x the time)
            return feats, dict(zip(self.skip_taps, map(mean_std, outs))), dict(zip(self.skip_taps, outs))
        count = x.shape[-2] * x.shape[-1]
        stats = [_stats(*outs[2 * i : 2 * i + 2], count / TAP_SCALE[t] ** 2) for i, t in enumerate(self.skip_taps)]
        return feats, dict(zip(self.skip_taps, stats)), None

    @torch.no_grad()
    def region_stats(self, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> dict[str, list[Stats]]:
        """Per region, the channel (mean, std) of each shallow tap, weighted by `weights[tap]`
        (regions, 1, h, w) on the tap's grid (masks: `controls.masked_adain` at the skip taps)."""
        x = x.to(self.device, self.dtype, memory_format=self.memory_format)
        self._memory(max(x.shape[-2:]))
        ws = [weights[t].to(self.device, torch.float32) for t in self.skip_taps]

        def fn(x: torch.Tensor, *ws: torch.Tensor) -> list[torch.Tensor]:
            out = []
            for f, w in zip(self._shallow(x), ws, strict=True):
                f = f.float()
                out += [t for k in w for t in (k * f, k * f * f, k.expand(f.shape[0], 1, *k.shape[-2:]))]
            return out

        n = 3 * sum(len(w) for w in ws)
        sums = tiled(fn, [x, *ws], self.tile, ENCODER_MARGIN, sums=n)
        out, i = {}, 0
        for t, w in zip(self.skip_taps, ws, strict=True):
            out[t] = [_stats(sums[i + 3 * k], sums[i + 3 * k + 1], sums[i + 3 * k + 2]) for k in range(len(w))]
            i += 3 * len(w)
        return out

    @torch.no_grad()
    def decode(
        self,
        feats: torch.Tensor,
        image: torch.Tensor | None = None,
        adain: dict[str, Callable[..., torch.Tensor]] | None = None,
        weights: dict[str, torch.Tensor] | None = None,
        taps: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Images (float32, unclamped) from relu4_1 features, 8x their size. A decoder with skips
        also takes the `image` the features are of: its shallow taps, from `taps` (what `encode`
        kept of a one-tile image) or else encoded again tile by tile, so a large image's are never
        held whole, are mapped by `adain[tap](f)` (or `adain[tap](f, w)`, with `weights[tap]` on
        the tap's grid)."""
        inputs = [feats.to(self.device, self.dtype, memory_format=self.memory_format)]
        self._memory(8 * max(feats.shape[-2:]))
        if self.skip_taps:
            if image is None or adain is None:
                raise ValueError(f"this decoder also takes the image, for {', '.join(self.skip_taps)}")
            inputs.append(image.to(self.device, self.dtype, memory_format=self.memory_format))
            inputs += [weights[t].to(self.device, torch.float32) for t in self.skip_taps] if weights else []

        def fn(x: torch.Tensor, image: torch.Tensor | None = None, *ws: torch.Tensor) -> tuple[torch.Tensor]:
            shallow = {}
            if image is not None:
                fs = [taps[t] for t in self.skip_taps] if taps else self._shallow(image)
                regions = list(ws) if ws else [None] * len(fs)
                shallow = dict(zip(self.skip_taps, zip(fs, regions, strict=True), strict=True))
            return (self._decode(x, shallow, adain or {}),)

        if taps:  # the image fit one tile when encoded, so it does now (tiles here are tile // 8 cells)
            return fn(*inputs)[0].float()
        margin = SKIP_MARGIN if self.skip_taps else DECODER_MARGIN
        return tiled(fn, inputs, self.tile // 8, margin)[0].float()

    def _memory(self, side: int) -> None:
        """On the CPU, freed blocks are kept for reuse while an image fits one tile (`memory`)."""
        if self.device.type == "cpu":
            keep_freed_memory(side <= self.tile)

    def _encode(self, x: torch.Tensor, keep: bool) -> list[torch.Tensor]:
        """relu4_1, then the skip taps if `keep`, else each skip tap and its square (for the sums
        that give its statistics over tiles)."""
        x, taps = self._run_encoder(x, stop_at_skips=False)
        if keep:
            return [x, *(taps[t] for t in self.skip_taps)]
        f32 = [taps[t].float() for t in self.skip_taps]
        return [x] + [s for f in f32 for s in (f, f * f)]

    def _shallow(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The skip taps' features, encoding only as deep as the deepest."""
        _, taps = self._run_encoder(x, stop_at_skips=True)
        return [taps[t] for t in self.skip_taps]

    def _run_encoder(self, x: torch.Tensor, stop_at_skips: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder's last output (relu4_1, or the deepest skip tap's) and the skip taps' features."""
        taps = {}
        for layer, (name, _, _) in zip(self.enc, VGG_CONVS):
            x = layer(x)
            if "relu" + name[4:] in self.skip_taps:
                taps["relu" + name[4:]] = x
                if stop_at_skips and len(taps) == len(self.skip_taps):
                    break
            if name in POOL_AFTER:
                x = max_pool2(x)
        return x, taps

    def _decode(
        self, x: torch.Tensor, shallow: dict[str, tuple[torch.Tensor, torch.Tensor | None]], adain: dict[str, Callable]
    ) -> torch.Tensor:
        """The decoder on relu4_1 features `x`; at each skip tap, the tap's features f (and region
        weights w, or None) go through `adain[tap]` and the skip's 1x1 convolution into x."""
        for i, layer in enumerate(self.dec):
            x = layer(x)
            if i in self.joins:
                tap = self.joins[i]
                f, w = shallow[tap]
                if w is None and fusable(x, f, adain[tap]):
                    add_skip_(x, f, self.skips[tap], adain[tap])
                else:
                    styled = (adain[tap](f, w) if w is not None else adain[tap](f)).to(self.dtype)
                    x = x + self.skips[tap](styled)
        return x


def fusable(x: torch.Tensor, f: torch.Tensor, m: Callable) -> bool:
    """`add_skip_` computes this join: one style's AdaIN, float32 images in NCHW (the CPU's NNPACK path)."""
    contiguous = x.is_contiguous() and f.is_contiguous()
    return isinstance(m, TapAdain) and len(m.scale) == 1 and x.dtype == f.dtype == torch.float32 and contiguous


def add_skip_(x: torch.Tensor, f: torch.Tensor, conv: nn.Conv2d, m: TapAdain) -> None:
    """x += conv(m(f)), in place, with AdaIN's per-channel scale and shift folded into the 1x1
    convolution's matrix: one or two matrix products per image and no styled copy of f (at 512 px,
    a fifth of the time of AdaIN, the convolution and the sum done one after another).
    m(f) = a (min(f, top) s + t) + (1 - a) f, so W m(f) + b = (a W s) min(f, top) + ((1 - a) W) f + (a W t + b)."""
    w, a = conv.weight[:, :, 0, 0], m.alpha
    capped = f if m.top is None else torch.minimum(f, m.top[0])
    for i in range(x.shape[0]):
        k = min(i, m.scale[0].shape[0] - 1)  # statistics per image, or one set for all
        scale, shift = m.scale[0][k].flatten(), m.shift[0][k].flatten()
        xi, ci, fi = x[i].view(x.shape[1], -1), capped[i].view(f.shape[1], -1), f[i].view(f.shape[1], -1)
        if m.top is None:  # the two products are one
            xi.addmm_(w * (a * scale + (1 - a)), fi)
        else:
            xi.addmm_(a * w * scale, ci)
            if a != 1:
                xi.addmm_((1 - a) * w, fi)
        xi.add_((a * (w @ shift) + conv.bias)[:, None])


def max_pool2(x: torch.Tensor) -> torch.Tensor:
    """F.max_pool2d(x, 2): the same numbers, for NCHW tensors of even sides as the maxima of rows'
    then columns' pairs, 3-4x faster on a CPU (max_pool2d there also computes the indices a
    backward pass would need)."""
    if x.shape[-2] % 2 or x.shape[-1] % 2 or not x.is_contiguous():
        return F.max_pool2d(x, 2)
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def _stats(total: torch.Tensor, squares: torch.Tensor, count: float | torch.Tensor, eps: float = 1e-5) -> Stats:
    """(mean, std) shaped (N, C, 1, 1) from per-channel sums over `count` positions."""
    count = torch.as_tensor(count, dtype=torch.float64, device=total.device).clamp(min=1e-12)  # an empty region
    mean = total.double() / count
    var = (squares.double() / count - mean * mean).clamp(min=0)
    return mean.float()[..., None, None], (var + eps).sqrt().float()[..., None, None]


def tiled(
    fn: Callable[..., Sequence[torch.Tensor]],
    xs: Sequence[torch.Tensor],
    tile: int,
    margin: int,
    sums: int = 0,
) -> list[torch.Tensor]:
    """`fn` over overlapping tiles of the inputs `xs`. The first (N, C, H, W) sets the tiles: about
    `tile` px (multiples of `margin`), grown by `margin` on each side except at the image's edges;
    the others, on grids whose sizes are fixed ratios of its (an image, a feature grid), are cut
    alike. Each of `fn`'s outputs, on a grid a fixed ratio of its input's, is cut back to the tile
    and put together; the last `sums` are summed over their height and width instead: (N, C)."""
    height, width = xs[0].shape[-2:]
    single = height <= tile and width <= tile
    rows = [(0, height)] if single else _spans(height, tile, margin)
    cols = [(0, width)] if single else _spans(width, tile, margin)
    outs: list = []
    for top, bottom in rows:
        for left, right in cols:
            t0, l0 = max(top - margin, 0), max(left - margin, 0)
            b0, r0 = min(bottom + margin, height), min(right + margin, width)
            ys = fn(*(x[..., t0 * x.shape[-2] // height : b0 * x.shape[-2] // height,
                         l0 * x.shape[-1] // width : r0 * x.shape[-1] // width] for x in xs))  # fmt: skip
            outs = outs or [None] * len(ys)
            for i, y in enumerate(ys):
                scale = y.shape[-1] / (r0 - l0)
                dt, dl = round((top - t0) * scale), round((left - l0) * scale)
                h, w = round((bottom - top) * scale), round((right - left) * scale)
                if i >= len(ys) - sums:
                    total = y[..., dt : dt + h, dl : dl + w].sum((-2, -1), dtype=torch.float64)
                    outs[i] = total if outs[i] is None else outs[i] + total
                elif single:
                    outs[i] = y
                else:
                    if outs[i] is None:
                        outs[i] = y.new_empty(*y.shape[:2], round(height * scale), round(width * scale))
                    place = outs[i][..., round(top * scale) :, round(left * scale) :]
                    place[..., :h, :w] = y[..., dt : dt + h, dl : dl + w]
    return outs


def _spans(size: int, tile: int, step: int) -> list[tuple[int, int]]:
    """[start, end) spans covering `size` in equal parts of at most ~`tile`, starts on `step`."""
    n = math.ceil(size / tile)
    length = math.ceil(size / n / step) * step
    return [(i, min(i + length, size)) for i in range(0, size, length)]
