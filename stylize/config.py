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
    # data
    content_dir: str = "../shared/data/train/content"
    style_dir: str = "../shared/data/train/style"
    image_size: int = 288  # short side after resizing, before the random crop
    crop_size: int = 256
    # the paintings' short side, when it should differ from the photos' (0: image_size): the
    # scale each is seen at in training should match the scale it is stylized at
    style_image_size: int = 0
    # the paintings' crop (0: crop_size): a photo crop larger than a painting's short side can
    # still be painted with a whole painting's statistics, as at use
    style_crop_size: int = 0
    # model and loss
    encoder: str = "weights/vgg19_relu4_1.pth"
    style_weight: float = 10.0
    content_weight: float = 1.0
    # each style tap's share, relu1_1..relu4_1 (the paper: all 1); on the 2-core recipe's decoder
    # relu3_1 and relu4_1 made ~70% of the style loss while the low layers lagged the peer most
    style_layer_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    # identity loss (after the warm start): L1 between the photo and its own features decoded, for
    # the first identity_images photos of each batch; keeps alpha 0 (and the photo's detail) readable
    identity_weight: float = 0.0
    identity_images: int = 2
    # Laplacian loss: MSE between the edges (Laplacian of 4x4-pixel averages) of the painted photo
    # and of the photo; holds the photo's shapes, which the relu4_1 content loss lets swirl
    laplacian_weight: float = 0.0
    # SSIM loss: 1 - SSIM between the luminances of the painted photo and the photo; holds its local
    # structure and leaves the colours and strokes to the painting
    ssim_weight: float = 0.0
    # beyond the paper: the decoder also takes the photo's AdaIN'd features of these shallow taps
    # (any of relu1_1, relu2_1, relu3_1; stylize.models.Decoder), through skips that start at zero
    skip_taps: list[str] = field(default_factory=list)
    skip_lr_scale: float = 1.0  # the skips' learning rate relative to lr (added to a trained decoder: 10)
    # distillation (stylize/distill.py): L1 between the decoder's pictures of distill_images pairs a
    # step, drawn from a set of refined cache pairs in distill_dir, and their refined pictures
    distill_weight: float = 0.0
    distill_dir: str = ""
    distill_images: int = 4
    # optimisation
    steps: int = 160_000
    batch_size: int = 8
    lr: float = 1e-4
    lr_decay: float = 5e-5  # lr / (1 + lr_decay * step), as in the reference
    # a cooldown, for a decoder to ship: from step cooldown_start (-1: never) the lr falls linearly
    # to 0 over cooldown_steps; run it on a copy of the run folder, which goes on at the full lr
    cooldown_start: int = -1
    cooldown_steps: int = 0
    # the decoder kept and shipped is an exponential moving average of the trained one with this
    # decay (0: none): at a small lr a snapshot still wanders from step to step, the average less
    ema_decay: float = 0.0
    seed: int = 0
    recon_steps: int = 0  # warm start: the first N steps train the decoder to give the photo back
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
    init_decoder: str = ""  # optional decoder weights to start from
    init_step: int = 0  # the step init_decoder was trained to: the lr schedule and data go on from there
    init_images: int = 0  # the images init_decoder had seen (for the record)
    cache_dir: str = ""  # a folder for fixed crops encoded once (stylize/cache.py); empty: encode every step
    cache_crops: int = 2  # crops per image in the cache
    # with skip_taps: also cache the photo crops' features at those taps (steps 9% shorter on a 2-core
    # CPU for 1.5 MB a 128 px crop, 12 GB for configs/adain_cpu.yaml's 7,800 crops)
    cache_skips: bool = False
    # false: the cache holds the paintings' statistics alone and the photos are read and encoded each
    # step (a 256 px photo crop with its features takes 1.2 MB, 7 MB with the skip taps; a painting 7.7 KB)
    cache_photos: bool = True
    tags: dict[str, str] = field(default_factory=dict)  # free-form notes kept with checkpoints

    @property
    def painting_size(self) -> int:
        return self.style_image_size or self.image_size

    @property
    def painting_crop(self) -> int:
        return self.style_crop_size or self.crop_size


def _check_type(key: str, value: Any, typ: Any) -> Any:
    """Return `value` as `typ`, or raise naming the key. ints are accepted for floats."""
    if typ is float and isinstance(value, int | str) and not isinstance(value, bool):
        # YAML reads 1e-4 (no dot) as a string; ints are fine for floats too
        try:
            return float(value)
        except ValueError:
            pass
    origin = getattr(typ, "__origin__", typ)
    if origin is dict:
        ok = isinstance(value, dict)
    elif origin is list:
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
    for key in (
        "image_size", "crop_size", "steps", "batch_size", "log_every", "checkpoint_every", "sample_every", "cache_crops"
    ):  # fmt: skip
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config key '{key}': must be positive, got {getattr(cfg, key)}")
    for key in (
        "style_image_size", "style_crop_size", "identity_weight", "identity_images", "laplacian_weight", "ssim_weight",
        "recon_steps", "distill_weight",
    ):  # fmt: skip
        if getattr(cfg, key) < 0:
            raise ConfigError(f"config key '{key}': must not be negative, got {getattr(cfg, key)}")
    if cfg.cooldown_start >= 0 and cfg.cooldown_steps <= 0:
        msg = f"config key 'cooldown_steps': must be positive with a cooldown_start, got {cfg.cooldown_steps}"
        raise ConfigError(msg)
    if not 0 <= cfg.ema_decay < 1:
        raise ConfigError(f"config key 'ema_decay': must be in [0, 1), got {cfg.ema_decay}")
    w = cfg.style_layer_weights
    if len(w) != 4 or min(w) < 0 or sum(w) == 0:
        raise ConfigError(f"config key 'style_layer_weights': 4 weights >= 0 (relu1_1..relu4_1), not all 0, got {w}")
    unknown = sorted(set(cfg.skip_taps) - set(SKIP_TAPS))
    if unknown:
        raise ConfigError(f"config key 'skip_taps': each one of {', '.join(SKIP_TAPS)}, got {unknown[0]}")
    if cfg.skip_lr_scale <= 0:
        raise ConfigError(f"config key 'skip_lr_scale': must be positive, got {cfg.skip_lr_scale}")
    if cfg.distill_weight and not (cfg.distill_dir and cfg.cache_dir and cfg.cache_photos):
        raise ConfigError(
            "config key 'distill_weight': needs distill_dir and cache_dir with cache_photos (its pairs index the cache)"
        )
    if cfg.distill_weight and cfg.distill_images <= 0:
        raise ConfigError(f"config key 'distill_images': must be positive, got {cfg.distill_images}")
    if cfg.image_size < cfg.crop_size:
        raise ConfigError(f"config key 'crop_size': {cfg.crop_size} is larger than image_size {cfg.image_size}")
    if cfg.painting_size < cfg.painting_crop:
        crop = "style_crop_size" if cfg.style_crop_size else "crop_size"
        size = "style_image_size" if cfg.style_image_size else "image_size"
        raise ConfigError(f"config key '{crop}': {cfg.painting_crop} is larger than {size} {cfg.painting_size}")
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
