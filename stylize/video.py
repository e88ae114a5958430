"""Stylize a video file with PyAV (the optional `video` extra): frames in batches, style
statistics fixed for the whole clip, content statistics smoothed over frames against flicker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylize.files import temp_beside
from stylize.images import pil_to_tensor, tensor_to_pil
from stylize.models import Stats, adain_maps, mean_std
from stylize.stylizer import StyleStats, Stylizer, _batched, _pad8


class VideoError(Exception):
    """A video that cannot be read or written; the message names the file and the reason."""


@dataclass
class VideoReport:
    frames: int
    fps: float
    audio: str  # "kept", "dropped" or "none" (the input had no audio)
    input_flicker: float  # mean absolute frame-to-frame change, values in [0, 1]
    output_flicker: float


def _av():  # noqa: ANN202 - the module, imported late as it is optional
    try:
        import av
    except ImportError:
        raise VideoError('video needs PyAV: pip install -e ".[video]"') from None
    return av


class Flicker:
    """Running mean absolute difference between consecutive frames (N, 3, H, W)."""

    def __init__(self) -> None:
        self.last: torch.Tensor | None = None
        self.total, self.count = 0.0, 0

    def add(self, frames: torch.Tensor) -> None:
        seq = frames if self.last is None else torch.cat([self.last, frames])
        if len(seq) > 1:
            self.total += (seq[1:] - seq[:-1]).abs().mean((1, 2, 3)).sum().item()
            self.count += len(seq) - 1
        self.last = seq[-1:]

    @property
    def value(self) -> float:
        return self.total / max(self.count, 1)


@dataclass
class Temporal:
    """What the next batch of frames needs from the previous ones."""

    stats: dict[str, Stats] = field(default_factory=dict)  # per tap: smoothed content (mean, std) of the last frame
    frame: torch.Tensor | None = None  # last input frame (1, 3, H, W)
    output: torch.Tensor | None = None  # last output frame


def smooth_stats(stats: Stats, state: Stats | None, smoothing: float) -> tuple[Stats, Stats]:
    """Per-frame content (mean, std), each (N, C, 1, 1), each made an exponential moving average
    over the frames so far (`smoothing` 0: every frame its own, as a still image; 0.9: about
    the last ten frames). Returns the per-frame statistics and the state for the next batch."""
    mean, std = stats
    if state is None:
        state = (mean[:1], std[:1])
    means, stds = [], []
    for m, s in zip(mean, std):
        state = (smoothing * state[0] + (1 - smoothing) * m[None], smoothing * state[1] + (1 - smoothing) * s[None])
        means.append(state[0])
        stds.append(state[1])
    return (torch.cat(means), torch.cat(stds)), state


def steady(
    out: torch.Tensor, frames: torch.Tensor, t: Temporal, smoothing: float, motion: float = 0.05
) -> torch.Tensor:
    """Motion-gated temporal filter: where the input did not change (its local mean change, over
    5x5 px, which averages out camera noise, is below `motion`), the output keeps up to
    `smoothing` of the previous output; where it moved, the new output shows as is (no ghosts)."""
    result = []
    for y, x in zip(out, frames):
        if t.output is not None and smoothing > 0:
            change = F.avg_pool2d(x[None] - t.frame, 5, stride=1, padding=2, count_include_pad=False)
            keep = smoothing * (1 - change.abs().mean(1, keepdim=True) / motion).clamp(0, 1)
            y = (keep * t.output + (1 - keep) * y)[0]
        t.frame, t.output = x[None], y[None]
        result.append(y)
    return torch.stack(result)


def stylize_frames(
    stylizer: Stylizer, frames: torch.Tensor, style: StyleStats, alpha: float, smoothing: float, t: Temporal
) -> torch.Tensor:
    """Stylize a batch of consecutive frames (N, 3, H, W), carrying `t` from batch to batch."""
    x = _batched(frames).to(stylizer.device)
    with torch.no_grad():
        _, feats, shallow, taps = stylizer.encode(x)
        smoothed = {}
        for tap, own in {"relu4_1": mean_std(feats), **(shallow or {})}.items():
            smoothed[tap], t.stats[tap] = smooth_stats(own, t.stats.get(tap), smoothing)
        maps = adain_maps(smoothed, {tap: style.at(tap) for tap in smoothed}, alpha)
        padded = _pad8(x) if shallow else None
        out = stylizer.decode(maps["relu4_1"](feats).to(feats.dtype), x.shape[-2:], padded, maps, taps=taps)
        return steady(out, x, t, smoothing)


def read_frames(container, stream, transform: Callable[[torch.Tensor], torch.Tensor], audio_out, out) -> Iterator:  # noqa: ANN001
    """Decoded video frames as tensors; audio packets are copied to `audio_out` on the way."""
    streams = [stream] + ([container.streams.audio[0]] if audio_out is not None else [])
    for packet in container.demux(*streams):
        if packet.stream.type == "audio":
            if packet.dts is not None:
                packet.stream = audio_out
                out.mux(packet)
            continue
        for frame in packet.decode():
            yield transform(pil_to_tensor(frame.to_image()))


def _even(img: torch.Tensor) -> torch.Tensor:
    """H.264 in yuv420p needs even sides: drop an odd last row or column."""
    h, w = img.shape[-2:]
    return img[..., : h - h % 2, : w - w % 2]


def stylize_video(
    stylizer: Stylizer,
    src: str | Path,
    dst: str | Path,
    style: StyleStats,
    alpha: float = 1.0,
    *,
    smoothing: float = 0.9,
    batch_size: int = 8,
    keep_audio: bool = True,
    transform: Callable[[torch.Tensor], torch.Tensor] = lambda img: img,
    progress: bool = True,
) -> VideoReport:
    """Write `src` stylized to `dst` (H.264, at the input's average frame rate; the audio stream
    copied as is, or dropped). `transform` resizes each frame. Written to a temporary file
    beside `dst` and renamed, so `dst` is whole or absent."""
    av = _av()
    dst = Path(dst)
    fd, tmp = temp_beside(dst, f".{dst.stem}.", dst.suffix)
    os.close(fd)
    try:
        with av.open(str(src)) as container, av.open(tmp, "w") as out:
            if not container.streams.video:
                raise VideoError(f"{src}: no video stream")
            vin = container.streams.video[0]
            vin.thread_type = "AUTO"
            fps = vin.average_rate or vin.guessed_rate or 30
            has_audio = bool(container.streams.audio)
            audio_out = out.add_stream_from_template(container.streams.audio[0]) if has_audio and keep_audio else None
            shape = _even(transform(torch.zeros(3, vin.height, vin.width))).shape  # streams before any packet
            vout = out.add_stream("libx264", rate=fps, options={"crf": "18"})
            vout.height, vout.width, vout.pix_fmt = shape[1], shape[2], "yuv420p"
            frames = read_frames(container, vin, lambda img: _even(transform(img)), audio_out, out)
            flicker_in, flicker_out = Flicker(), Flicker()
            temporal, done = Temporal(), 0
            bar = tqdm(total=vin.frames or None, desc="video", unit="frame", disable=not progress)
            for batch in _chunks(frames, batch_size):
                x = torch.stack(batch)
                y = stylize_frames(stylizer, x, style, alpha, smoothing, temporal)
                for img in y:
                    out.mux(vout.encode(av.VideoFrame.from_image(tensor_to_pil(img))))
                flicker_in.add(x)
                flicker_out.add(y.cpu())
                done += len(batch)
                bar.update(len(batch))
            bar.close()
            if done == 0:
                raise VideoError(f"{src}: no frames could be decoded")
            out.mux(vout.encode())  # flush the encoder
        os.replace(tmp, dst)
    except (av.FFmpegError, ValueError) as e:  # PyAV raises ValueError for some unusable files
        raise VideoError(f"{src}: cannot stylize video ({e})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    audio = "none" if not has_audio else "kept" if keep_audio else "dropped"
    return VideoReport(done, float(fps), audio, flicker_in.value, flicker_out.value)


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
