"""Training configuration: a typed dataclass read from YAML, with `--set key=value` overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from stylize.models import SKIP_TAPS


class ConfigError(Exception):
    """A config that cannot be used; the message names the key."""


@dataclass
class TrainConfig:
    """Every key a config may set; configs/ holds the shipped ones, docs/training.md explains them."""

    # data: content images (photos) and style images (paintings), searched recursively
    content_dir: str = "../shared/data/train/content"
    style_dir: str = "../shared/data/train/style"
    image_size: int = 288  # the content images' short side after resizing, before the random crop
    crop_size: int = 256
    # the style images' short side, when it should differ from the content's (0: image_size): the
    # scale each is seen at in training should match the scale it is stylized at
    style_image_size: int = 0
    cache_dir: str = ""  # a folder for fixed crops encoded once (stylize/training/cache.py); empty: encode every step
    # loss: content + style_weight x style (the paper's), and the terms that hold the photo
    encoder: str = "weights/vgg19_relu4_1.pth"
    style_weight: float = 10.0
    # the style term again on the output and the style image both at half scale, times this: the
    # style taps see twice the area (the last 500 steps of one of the shipped decoder's two ingredients)
    style_half_weight: float = 0.0
    # identity: L1 between the first two content images of each batch and their own features
    # decoded (alpha 0); keeps the decoder able to give the photo back
    identity_weight: float = 0.0
    # Laplacian: MSE between the edges (Laplacian of 4x4-pixel averages) of the output and of the
    # content image; holds its shapes, which the relu4_1 content loss lets swirl
    laplacian_weight: float = 0.0
    # SSIM: 1 - SSIM between the luminances of the output and the content image; holds its local
    # structure and leaves the colours and strokes to the style
    ssim_weight: float = 0.0
    # beyond the paper: the decoder also takes the content's AdaIN'd features of these shallow taps
    # (any of relu1_1, relu2_1, relu3_1; stylize.models.Decoder), through skips that start at zero
    skip_taps: list[str] = field(default_factory=list)
    skip_lr_scale: float = 1.0  # the skips' learning rate relative to lr (added to a trained decoder: 10)
    # optimisation
    steps: int = 160_000
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5  # lr / (1 + lr_decay * step), as in the reference
    # a cooldown, for a decoder to ship: from step cooldown_start (-1: never) the lr falls linearly
    # to 0 over cooldown_steps
    cooldown_start: int = -1
    cooldown_steps: int = 0
    # the decoder kept and shipped is an exponential moving average of the trained one with this
    # decay (0: none): at a small lr a snapshot still wanders from step to step, the average less
    ema_decay: float = 0.0
    seed: int = 0
    recon_steps: int = 0  # warm start: the first N steps train the decoder to give the photo back
    # a decoder to start from (a weights file or a run's decoder.pth), the step it was trained to
    # (the lr schedule and the data go on from there) and the images it had seen (for the record)
    init_decoder: str = ""
    init_step: int = 0
    init_images: int = 0
    # machinery
    device: str = "auto"  # auto: cuda when present, else cpu
    amp: bool = True  # bf16 autocast on cuda (ignored on cpu)
    num_workers: int = 4
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    out_dir: str = "runs/adain"
    log_every: int = 50
    checkpoint_every: int = 1000
    sample_every: int = 1000
    sample_pairs: int = 4  # fixed content/style pairs in the sample grid
    sample_size: int = 256

    @property
    def style_size(self) -> int:
        return self.style_image_size or self.image_size


def _check_type(key: str, value: Any, typ: Any) -> Any:
    """Return `value` as `typ`, or raise naming the key. ints are accepted for floats."""
    if typ is float and isinstance(value, int | str) and not isinstance(value, bool):
        # YAML reads 1e-4 (no dot) as a string; ints are fine for floats too
        try:
            return float(value)
        except ValueError:
            pass
    origin = getattr(typ, "__origin__", typ)
    if origin is list:
        ok = isinstance(value, list)
        if ok:
            return [_check_type(f"{key}[{i}]", v, typ.__args__[0]) for i, v in enumerate(value)]
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, origin)
    if not ok:
        expected = getattr(typ, "__name__", str(typ))
        raise ConfigError(f"config key '{key}': expected {expected}, got {type(value).__name__} {value!r}")
    return value


def from_dict(data: dict[str, Any]) -> TrainConfig:
    hints = get_type_hints(TrainConfig)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config key '{unknown[0]}' (known keys: {', '.join(sorted(hints))})")
    cfg = TrainConfig(**{k: _check_type(k, v, hints[k]) for k, v in data.items()})
    for key in ("image_size", "crop_size", "steps", "batch_size", "log_every", "checkpoint_every", "sample_every"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key '{key}': must be positive, got {getattr(cfg, key)}")
    for key in (
        "style_image_size", "style_half_weight", "identity_weight", "laplacian_weight", "ssim_weight", "recon_steps"
    ):  # fmt: skip
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key '{key}': must not be negative, got {getattr(cfg, key)}")
    if cfg.cooldown_start >= 0 and cfg.cooldown_steps <= 0:
        msg = f"config key 'cooldown_steps': must be positive with a cooldown_start, got {cfg.cooldown_steps}"
        raise ConfigError(msg)
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"config key 'ema_decay': must be in [0, 1), got {cfg.ema_decay}")
    unknown = sorted(set(cfg.skip_taps) - set(SKIP_TAPS))
    if unknown:
        raise ConfigError(f"config key 'skip_taps': each one of {', '.join(SKIP_TAPS)}, got {unknown[0]}")
    if cfg.skip_lr_scale <= 0:
        raise ConfigError(f"config key 'skip_lr_scale': must be positive, got {cfg.skip_lr_scale}")
    if cfg.style_half_weight and cfg.cache_dir:
        raise ConfigError("config key 'style_half_weight': needs the style images read each step (cache_dir '')")
    if cfg.image_size < cfg.crop_size:
        raise ConfigError(f"config key 'crop_size': {cfg.crop_size} is larger than image_size {cfg.image_size}")
    if cfg.style_size < cfg.crop_size:
        size = "style_image_size" if cfg.style_image_size else "image_size"
        raise ConfigError(f"config key 'crop_size': {cfg.crop_size} is larger than {size} {cfg.style_size}")
    return cfg


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config and apply `key=value` overrides (values parsed as YAML)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read config ({e})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        data[key.strip()] = yaml.safe_load(value) if value.strip() else ""  # key=: empty (cache_dir=: no cache)
    return from_dict(data)


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
