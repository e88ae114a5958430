"""A cache of fixed training crops, encoded once.

On a CPU the frozen encoder's passes over a step's photos and paintings are about a quarter
of the step's time. Caching them leaves the decoder and the output's pass through VGG:
for every photo crop its pixels (uint8) and relu4_1 features (float16), and for every
painting crop only the channel means and stds at the four style taps (`tap_stats`), which
is all the AdaIN loss needs of a painting: 7.7 KB a crop. With `cache_skips`, also the photo
crops' features at the decoder's skip taps (float16; relu2_1 and relu3_1 of a 128 px crop: 1.5 MB),
which a decoder with skips would otherwise encode again every step (9% of its step on a 2-core
CPU: BENCHMARKS.md). With `cache_photos` false it holds the paintings' statistics alone, for crops
too big to cache whole (256 px: the photos are read and encoded each step, the paintings not).

The crops are `crops_per_image` samples per image of the same reproducible stream as
`CropDataset` (sample k is a function of the seed and k). The cache lives in a folder of
.npy files plus meta.json, written last, naming what it was built from: a cache built
from other folders, crop sizes or encoder weights is rebuilt, never silently reused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from stylize.data import CountingSampler, CropDataset, permutation
from stylize.files import atomic_write
from stylize.losses import STATS_SIZE, tap_stats
from stylize.models import TAP_CHANNELS, Encoder
from stylize.weights import sha256

FILES = ("content.npy", "feats.npy", "stats.npy")


def cache_key(cfg, encoder_path: str) -> dict:
    """What a cache is built from; any difference means a rebuild."""
    return {
        "content_dir": str(Path(cfg.content_dir).resolve()),
        "style_dir": str(Path(cfg.style_dir).resolve()),
        "image_size": cfg.image_size,
        "style_image_size": cfg.painting_size,
        "crop_size": cfg.crop_size,
        "crops_per_image": cfg.cache_crops,
        "seed": cfg.seed,
        "encoder_sha256": sha256(encoder_path),
        # these two only when not the default, so that the caches built before them stay valid
        **({} if cfg.cache_photos else {"photos": False}),
        **({"style_crop_size": cfg.painting_crop} if cfg.painting_crop != cfg.crop_size else {}),
    }


# a tap's spatial size relative to the crop (relu4_1's is 1/8)
TAP_SCALE = {"relu1_1": 1, "relu2_1": 2, "relu3_1": 4}


def cached_taps(cfg) -> tuple[str, ...]:
    """The skip taps `cfg` caches the photo crops' features of."""
    return tuple(cfg.skip_taps) if cfg.cache_skips and cfg.cache_photos else ()


def build(cfg, encoder: Encoder, device: torch.device, batch_size: int = 32) -> Path:
    """The cache for `cfg` in `cfg.cache_dir`, built unless an up-to-date one is there; the
    skip taps' features are added to a cache built without them (the crops stay as they are)."""
    root = Path(cfg.cache_dir)
    key = cache_key(cfg, cfg.encoder)
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("key") != key:
        meta = _build_crops(cfg, encoder, device, batch_size, root, key)
    if missing := [t for t in cached_taps(cfg) if t not in meta.get("taps", [])]:
        _build_taps(root, encoder, device, missing, batch_size)
        meta["taps"] = sorted(set(meta.get("taps", [])) | set(missing))
        _write_meta(meta_path, meta)
    return root


def _write_meta(path: Path, meta: dict) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps(meta, indent=2).encode())


def _build_crops(cfg, encoder: Encoder, device: torch.device, batch_size: int, root: Path, key: dict) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    meta = root / "meta.json"
    meta.unlink(missing_ok=True)  # the arrays below are incomplete until meta.json is back
    photos = CropDataset(cfg.content_dir, cfg.image_size, cfg.crop_size, cfg.seed)
    paintings = CropDataset(cfg.style_dir, cfg.painting_size, cfg.painting_crop, cfg.seed + 1)
    n_c = len(photos) * cfg.cache_crops if cfg.cache_photos else 0
    n_s, size = len(paintings) * cfg.cache_crops, cfg.crop_size
    arrays = {"stats.npy": ((n_s, STATS_SIZE), np.float32)}
    if n_c:
        arrays["content.npy"] = ((n_c, 3, size, size), np.uint8)
        arrays["feats.npy"] = ((n_c, 512, size // 8, size // 8), np.float16)
    out = {
        name: np.lib.format.open_memmap(root / name, mode="w+", dtype=dtype, shape=shape)
        for name, (shape, dtype) in arrays.items()
    }
    with torch.no_grad():
        for i, crops in _batches(photos, n_c, batch_size, "cache photos"):
            pixels = crops.mul(255).round().byte()
            out["content.npy"][i : i + len(crops)] = pixels.numpy()
            # encode the stored 8-bit pixels, so that features and reconstruction targets agree
            feats = encoder.relu4_1(pixels.float().div(255).to(device, memory_format=torch.channels_last))
            out["feats.npy"][i : i + len(crops)] = feats.half().cpu().numpy()
        for i, crops in _batches(paintings, n_s, batch_size, "cache paintings"):
            stats = tap_stats(encoder(crops.to(device, memory_format=torch.channels_last)))
            out["stats.npy"][i : i + len(crops)] = stats.cpu().numpy()
    for array in out.values():
        array.flush()
    done = {"key": key, "photos": n_c, "paintings": n_s}
    _write_meta(meta, done)
    return done


def _build_taps(root: Path, encoder: Encoder, device: torch.device, taps: list[str], batch_size: int) -> None:
    """`taps`' features of the cached photo crops, encoded from their stored 8-bit pixels (as
    training would encode them); meta.json names them only once they are whole."""
    pixels = np.load(root / "content.npy", mmap_mode="r")
    n, _, size, _ = pixels.shape
    shapes = {t: (n, TAP_CHANNELS[t], size // TAP_SCALE[t], size // TAP_SCALE[t]) for t in taps}
    out = {t: np.lib.format.open_memmap(root / f"{t}.npy", "w+", np.float16, shape) for t, shape in shapes.items()}
    with torch.no_grad(), tqdm(total=n, desc="cache skip taps", unit="crop", dynamic_ncols=True) as bar:
        for i in range(0, n, batch_size):
            x = torch.from_numpy(np.array(pixels[i : i + batch_size])).float().div(255)
            # up to the deepest tap asked for ("relu3_1" > "relu2_1"), not beyond
            feats = encoder(x.to(device, memory_format=torch.channels_last), last=max(taps))
            for t in taps:
                out[t][i : i + len(x)] = feats[t].half().cpu().numpy()
            bar.update(len(x))
    for array in out.values():
        array.flush()


def _batches(data: CropDataset, n: int, batch_size: int, desc: str) -> Iterator[tuple[int, torch.Tensor]]:
    if not n:  # the photos of a cache without them
        return
    loader = DataLoader(Subset(data, range(n)), batch_size=batch_size, num_workers=0)
    with tqdm(total=n, desc=desc, unit="crop", dynamic_ncols=True) as bar:
        for i, crops in zip(range(0, n, batch_size), loader):
            yield i, crops
            bar.update(len(crops))


class CachedBatches:
    """Endless batches from a cache: (photos, their relu4_1 features, paintings' tap stats,
    {tap: the photos' features} for `taps`), sample k of the run taking the photo and painting
    crops at the k-th place of their own per-pass shuffles, so resuming at a step sees what an
    unbroken run would; or, from a cache without photos, the paintings' stats alone (`paintings`)."""

    def __init__(self, root: str | Path, seed: int, taps: tuple[str, ...] = (), photos: bool = True) -> None:
        root = Path(root)
        self.stats = np.load(root / "stats.npy", mmap_mode="r")
        if photos:
            self.content, self.feats = (np.load(root / name, mmap_mode="r") for name in ("content.npy", "feats.npy"))
        self.taps = {t: np.load(root / f"{t}.npy", mmap_mode="r") for t in taps}
        self.seed = seed
        self._orders: dict[tuple[int, int], list[int]] = {}

    def _index(self, k: int, n: int, seed: int) -> int:
        epoch = k // n
        if (seed, epoch) not in self._orders:
            self._orders = {key: v for key, v in self._orders.items() if key[0] != seed}
            self._orders[seed, epoch] = permutation(seed, epoch, n)
        return self._orders[seed, epoch][k % n]

    def batches(
        self, batch_size: int, start_step: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]]:
        sampler = iter(CountingSampler(start_step, batch_size, rank, world_size))
        while True:
            ks = [next(sampler) for _ in range(batch_size // world_size)]
            ci = sorted(self._index(k, len(self.content), self.seed) for k in ks)
            si = [self._index(k, len(self.stats), self.seed + 1) for k in ks]
            yield (
                torch.from_numpy(self.content[ci]).float().div_(255),
                torch.from_numpy(self.feats[ci].astype(np.float32)),
                torch.from_numpy(self.stats[si]),
                {t: torch.from_numpy(a[ci].astype(np.float32)) for t, a in self.taps.items()},
            )

    def paintings(self, batch_size: int, start_step: int, rank: int = 0, world_size: int = 1) -> Iterator[torch.Tensor]:
        """The paintings' tap stats of each step's batch alone, as `batches` gives them."""
        sampler = iter(CountingSampler(start_step, batch_size, rank, world_size))
        while True:
            ks = [next(sampler) for _ in range(batch_size // world_size)]
            yield torch.from_numpy(self.stats[[self._index(k, len(self.stats), self.seed + 1) for k in ks]])
