"""Loading weights: the shipped files in weights/, other files, or `URL#sha256=HEX`.

Weights are plain tensor dicts saved with `torch.save` and always read with
`weights_only=True`, so loading never unpickles arbitrary objects. Importing a VGG-19 and
exporting a trained decoder are tools: `python -m stylize.tools.weights`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from stylize.files import atomic_write
from stylize.models import Decoder, Encoder
from stylize.options import DEFAULT_DECODER, DEFAULT_ENCODER

CACHE_DIR = Path(os.environ.get("STYLIZE_CACHE", Path.home() / ".cache" / "stylize"))


class WeightsError(Exception):
    """A weights file that cannot be used; the message names the file and the reason."""


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_save(obj: object, path: str | Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        torch.save(obj, f)


def fetch(url: str, sha: str | None = None) -> Path:
    """Download `url` once into the cache, checking its sha256 when given."""
    from torch.hub import download_url_to_file

    name = Path(urllib.parse.urlparse(url).path).name or "weights.pth"
    dst = CACHE_DIR / (f"{sha[:12]}-{name}" if sha else name)
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            download_url_to_file(url, str(dst), hash_prefix=sha, progress=True)
        except Exception as e:  # network errors, hash mismatch
            raise WeightsError(f"{url}: download failed ({e})") from None
    return dst


def checkpoint_decoder(ckpt: Mapping) -> dict[str, torch.Tensor]:
    """A training checkpoint's decoder: the moving average where the run keeps one."""
    return ckpt.get("ema") or ckpt["decoder"]


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor dict safely. A training checkpoint yields its decoder (the moving average
    where it has one)."""
    path = str(path)
    if "://" in path:
        url, _, sha = path.partition("#sha256=")
        path = str(fetch(url, sha or None))
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise WeightsError(f"{path}: not a readable weights file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("decoder"), dict):
        state = checkpoint_decoder(state)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a dict of tensors")
    return state


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path) -> nn.Module:
    """Copy `state` into `model`, naming every missing, unexpected or misshapen key."""
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise WeightsError(f"{path}: wrong weights for {type(model).__name__}: {'; '.join(problems[:3])}{more}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model


def load_encoder(path: str | Path = DEFAULT_ENCODER) -> Encoder:
    return load_into(Encoder(), read_state(path), path)


def skip_taps_of(state: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    """The shallow taps a decoder's weights take besides relu4_1 (none for the paper's decoder)."""
    return tuple(dict.fromkeys(k.split(".")[1] for k in state if k.startswith("skips.")))


def load_decoder(path: str | Path = DEFAULT_DECODER, skip_taps: Sequence[str] = ()) -> Decoder:
    """The decoder in `path`, with the skips its weights have. `skip_taps` adds skips that
    start at zero to a decoder without them (to train them); its weights' own skips must match."""
    state = read_state(path)
    own = skip_taps_of(state)
    if own and skip_taps and set(own) != set(skip_taps):
        raise WeightsError(f"{path}: a decoder with skips from {', '.join(own)}, not {', '.join(skip_taps)}")
    decoder = Decoder(own or tuple(skip_taps))
    fresh = {k: v for k, v in decoder.state_dict().items() if k.startswith("skips.") and not own}
    return load_into(decoder, {**state, **fresh}, path)
