"""A cache of fixed training crops, encoded once (`cache_dir`: the CPU recipe's 128 px stage).

On a CPU the frozen encoder's passes over a step's content and style images are about a quarter
of the step's time. Caching them leaves the decoder and the output's pass through VGG: for
every content crop its pixels (uint8), relu4_1 features (float16) and the features of the
decoder's skip taps (float16; relu2_1 and relu3_1 of a 128 px crop: 1.5 MB), and for every
style crop only the channel means and stds at the four style taps (`tap_stats`), which is all
the AdaIN loss needs of a style image: 7.7 KB a crop.

The crops are CROPS samples per image of the same reproducible stream as `CropDataset`
(sample k is a function of the seed and k). The cache lives in a folder of .npy files plus
meta.json, written last, naming what it was built from: a cache built from other folders,
crop sizes or encoder weights is rebuilt, never silently reused; the skip taps' features are
added to a cache built without them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from stylize.files import atomic_write
from stylize.models import TAP_CHANNELS, TAP_SCALE, Encoder
from stylize.training.data import CountingSampler, CropDataset, permutation
from stylize.training.losses import STATS_SIZE, Batch, tap_stats
from stylize.weights import sha256

FILES = ("content.npy", "feats.npy", "stats.npy")
CROPS = 2  # crops of each image


def cache_key(cfg, encoder_path: str) -> dict:
    """What a cache is built from; any difference means a rebuild."""
    return {
        "content_dir": str(Path(cfg.content_dir).resolve()),
        "style_dir": str(Path(cfg.style_dir).resolve()),
        "image_size": cfg.image_size,
        "style_image_size": cfg.style_size,
        "crop_size": cfg.crop_size,
        "crops_per_image": CROPS,
        "seed": cfg.seed,
        "encoder_sha256": sha256(encoder_path),
    }


def build(cfg, encoder: Encoder, device: torch.device, batch_size: int = 32) -> Path:
    """The cache for `cfg` in `cfg.cache_dir`, built unless an up-to-date one is there; the
    skip taps' features are added to a cache built without them (the crops stay as they are)."""
    root = Path(cfg.cache_dir)
    key = cache_key(cfg, cfg.encoder)
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("key") != key:
        meta = _build_crops(cfg, encoder, device, batch_size, root, key)
    if missing := [t for t in cfg.skip_taps if t not in meta.get("taps", [])]:
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
    contents = CropDataset(cfg.content_dir, cfg.image_size, cfg.crop_size, cfg.seed)
    styles = CropDataset(cfg.style_dir, cfg.style_size, cfg.crop_size, cfg.seed + 1)
    n_c, n_s, size = len(contents) * CROPS, len(styles) * CROPS, cfg.crop_size
    arrays = {
        "content.npy": ((n_c, 3, size, size), np.uint8),
        "feats.npy": ((n_c, 512, size // 8, size // 8), np.float16),
        "stats.npy": ((n_s, STATS_SIZE), np.float32),
    }
    out = {
        name: np.lib.format.open_memmap(root / name, mode="w+", dtype=dtype, shape=shape)
        for name, (shape, dtype) in arrays.items()
    }
    with torch.no_grad():
        for i, crops in _batches(contents, n_c, batch_size, "cache content"):
            pixels = crops.mul(255).round().byte()
            out["content.npy"][i : i + len(crops)] = pixels.numpy()
            # encode the stored 8-bit pixels, so that features and reconstruction targets agree
            feats = encoder.relu4_1(pixels.float().div(255).to(device, memory_format=torch.channels_last))
            out["feats.npy"][i : i + len(crops)] = feats.half().cpu().numpy()
        for i, crops in _batches(styles, n_s, batch_size, "cache style"):
            stats = tap_stats(encoder(crops.to(device, memory_format=torch.channels_last)))
            out["stats.npy"][i : i + len(crops)] = stats.cpu().numpy()
    for array in out.values():
        array.flush()
    done = {"key": key, "content": n_c, "style": n_s}
    _write_meta(meta, done)
    return done


def _build_taps(root: Path, encoder: Encoder, device: torch.device, taps: list[str], batch_size: int) -> None:
    """`taps`' features of the cached content crops, encoded from their stored 8-bit pixels (as
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
    loader = DataLoader(Subset(data, range(n)), batch_size=batch_size, num_workers=0)
    with tqdm(total=n, desc=desc, unit="crop", dynamic_ncols=True) as bar:
        for i, crops in zip(range(0, n, batch_size), loader):
            yield i, crops
            bar.update(len(crops))


class CachedBatches:
    """Endless batches from a cache, each a `losses.Batch` (content crops, their relu4_1 features and
    `taps`' features, the style crops' tap stats), sample k of the run taking the content and style
    crops at the k-th place of their own per-pass shuffles, so resuming at a step sees what an
    unbroken run would."""

    def __init__(self, root: str | Path, seed: int, taps: tuple[str, ...] = ()) -> None:
        root = Path(root)
        self.content, self.feats, self.stats = (np.load(root / name, mmap_mode="r") for name in FILES)
        self.taps = {t: np.load(root / f"{t}.npy", mmap_mode="r") for t in taps}
        self.seed = seed
        self._orders: dict[tuple[int, int], list[int]] = {}

    def _index(self, k: int, n: int, seed: int) -> int:
        epoch = k // n
        if (seed, epoch) not in self._orders:
            self._orders = {key: v for key, v in self._orders.items() if key[0] != seed}
            self._orders[seed, epoch] = permutation(seed, epoch, n)
        return self._orders[seed, epoch][k % n]

    def batches(self, batch_size: int, start_step: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]:
        sampler = iter(CountingSampler(start_step, batch_size, rank, world_size))
        while True:
            ks = [next(sampler) for _ in range(batch_size // world_size)]
            ci = sorted(self._index(k, len(self.content), self.seed) for k in ks)
            si = [self._index(k, len(self.stats), self.seed + 1) for k in ks]
            yield Batch(
                torch.from_numpy(self.content[ci]).float().div_(255),
                torch.from_numpy(self.feats[ci].astype(np.float32)),
                {t: torch.from_numpy(a[ci].astype(np.float32)) for t, a in self.taps.items()},
                torch.from_numpy(self.stats[si]),
            )
