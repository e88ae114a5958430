"""Helpers for the tests: pictures made on the fly."""

from __future__ import annotations

import builtins
import io
import math
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylize.images import tensor_to_pil

ROOT = Path(__file__).resolve().parent.parent


def make_image(h: int, w: int, seed: int) -> torch.Tensor:
    """A smooth, colourful test picture (3, h, w) in [0, 1]: waves plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    f = 2 + 6 * torch.rand(3, generator=g)
    phase = 2 * math.pi * torch.rand(3, generator=g)
    img = torch.stack([0.5 + 0.4 * torch.sin(f[c] * (x + y * (c + 1)) * math.pi + phase[c]) for c in range(3)])
    return (img + 0.05 * torch.randn(3, h, w, generator=g)).clamp(0, 1)


def write_image(path: Path, h: int, w: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensor_to_pil(make_image(h, w, seed)).save(path)
    return path


def pil_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def png16_rgb(path: Path, rgb: tuple[int, int, int], h: int = 24, w: int = 32) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), filled with one colour."""
    row = b"\x00" + struct.pack(">3H", *rgb) * w
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b"")
    )
    return path


def jpeg_bytes() -> bytes:
    """A small JPEG, as bytes, to cut or damage."""
    buf = io.BytesIO()
    tensor_to_pil(make_image(64, 64, 1)).save(buf, format="JPEG")
    return buf.getvalue()


def refuse_open(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """Make `path` unreadable: chmod for a normal user; root reads anyway, so refuse the open too."""
    path.chmod(0)
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)


def write_clip(path: Path, frames: int = 12, h: int = 48, w: int = 64, fps: int = 12, audio: bool = True) -> Path:
    """A small generated video: a square crossing a still picture, light per-frame noise (as a
    camera's), and a 440 Hz tone when `audio`. Needs PyAV."""
    import av
    import numpy as np

    g = torch.Generator().manual_seed(0)
    background = make_image(h, w, 0)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps, options={"crf": "10"})
        video.height, video.width, video.pix_fmt = h, w, "yuv420p"
        sound = out.add_stream("aac", rate=16000) if audio else None
        for i in range(frames):
            img = background.clone()
            x = (i * (w - h // 3)) // max(frames - 1, 1)
            img[:, h // 3 : 2 * h // 3, x : x + h // 3] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]
            img = (img + 0.02 * torch.randn(img.shape, generator=g)).clamp(0, 1)
            out.mux(video.encode(av.VideoFrame.from_image(tensor_to_pil(img))))
        out.mux(video.encode())
        if sound is not None:
            t = np.arange(16000 * frames // fps) / 16000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for start in range(0, tone.shape[1], 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, start : start + 1024]), "fltp", "mono")
                frame.sample_rate, frame.pts = 16000, start
                out.mux(sound.encode(frame))
            out.mux(sound.encode())
    return path
