"""Distilling refined pictures into the decoder (beyond the paper).

The decoder paints every pair in one pass, trained over many pairs: its picture lies near, not
at, the minimum of its loss for that pair. A few Adam steps on the picture itself (`refine`)
bring it much closer; `--refine 20` met every target where the one-pass decoder misses the
style embedding's (EVALUATION.md, "Refinement"). Here a fixed set of training pairs from the
cache (stylize/cache.py: photo crops with their relu4_1 features, painting crops' statistics) is
refined once, from the decoder's own pictures; training then adds an L1 term pulling the
decoder's pictures of those pairs towards their refined ones, beside the recipe's terms on
fresh pairs. A pixel target asks for the painting's strokes directly, where the loss through
VGG asks for them only through statistics.

The set lives in a folder: targets.npy (uint8 pictures), pairs.npy (each target's photo and
painting index in the cache) and meta.json, rewritten after every batch, so that a build that
is stopped goes on where it stopped: `python -m stylize.distill --help`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stylize import cache
from stylize.config import ConfigError, load_config
from stylize.data import CountingSampler, permutation
from stylize.files import atomic_write
from stylize.losses import split_stats
from stylize.models import Decoder, Encoder, adain
from stylize.refine import refine
from stylize.weights import DEFAULT_DECODER, WeightsError, load_decoder, load_encoder, sha256


def paint(
    encoder: Encoder, decoder: torch.nn.Module, content: torch.Tensor, feats: torch.Tensor, stats: torch.Tensor
) -> torch.Tensor:
    """The decoder's pictures of photos (their pixels and relu4_1 `feats`) in paintings' `stats`
    (`tap_stats`), with the photos' shallow taps AdaIN'd for a decoder with skips."""
    style = split_stats(stats)
    skip_taps = getattr(decoder, "module", decoder).skip_taps
    shallow = {}
    if skip_taps:
        with torch.no_grad():
            photo = encoder(content, last=max(skip_taps))
        shallow = {t: adain(photo[t], *style[t]) for t in skip_taps}
    return decoder(adain(feats, *style["relu4_1"]), shallow)


def distill_loss(
    encoder: Encoder,
    decoder: torch.nn.Module,
    content: torch.Tensor,
    feats: torch.Tensor,
    stats: torch.Tensor,
    target: torch.Tensor,
) -> torch.Tensor:
    """L1 between the decoder's pictures of the pairs and their refined `target`s."""
    return F.l1_loss(paint(encoder, decoder, content, feats, stats).float(), target.float())


def _pairs(n: int, photos: int, paintings: int, seed: int) -> np.ndarray:
    """`n` (photo, painting) index pairs of the cache: distinct photos while there are enough."""
    g = torch.Generator().manual_seed(seed)
    ci = torch.cat([torch.randperm(photos, generator=g) for _ in range(-(-n // photos))])[:n]
    si = torch.randint(paintings, (n,), generator=g)
    return torch.stack([ci, si], 1).numpy()


def build(
    cache_dir: str | Path,
    encoder: Encoder,
    decoder: Decoder,
    decoder_path: str | Path,
    out_dir: str | Path,
    pairs: int,
    steps: int,
    batch_size: int = 8,
    seed: int = 0,
) -> Path:
    """Refine `pairs` cache pairs for `steps` steps from `decoder`'s pictures into `out_dir`;
    goes on with a build of the same key that was stopped, and rebuilds one of another key."""
    root, src = Path(out_dir), Path(cache_dir)
    cmeta = json.loads((src / "meta.json").read_text())
    key = {
        "cache": cmeta["key"],
        "decoder_sha256": sha256(decoder_path),
        "pairs": pairs,
        "steps": steps,
        "seed": seed,
    }
    meta_path = root / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    done = meta.get("done", 0) if meta.get("key") == key else 0
    root.mkdir(parents=True, exist_ok=True)
    if done == 0:
        np.save(root / "pairs.npy", _pairs(pairs, cmeta["photos"], cmeta["paintings"], seed))
        size = np.load(src / "content.npy", mmap_mode="r").shape[-1]
        np.lib.format.open_memmap(root / "targets.npy", mode="w+", dtype=np.uint8, shape=(pairs, 3, size, size))
    index = np.load(root / "pairs.npy")
    contents, feats, stats = (np.load(src / name, mmap_mode="r") for name in cache.FILES)
    targets = np.load(root / "targets.npy", mmap_mode="r+")
    decoder.eval()
    with tqdm(total=pairs, initial=done, desc="refine pairs", unit="pair", dynamic_ncols=True) as bar:
        for i in range(done, pairs, batch_size):
            ci, si = index[i : i + batch_size, 0], index[i : i + batch_size, 1]
            content = torch.from_numpy(contents[ci]).float().div_(255)
            style = torch.from_numpy(stats[si])
            with torch.no_grad():
                image = paint(encoder, decoder, content, torch.from_numpy(feats[ci].astype(np.float32)), style)
            refined = refine(encoder, content, image.clamp(0, 1), style, steps)
            targets[i : i + len(ci)] = refined.mul(255).round().byte().numpy()
            targets.flush()
            _write_meta(meta_path, key, i + len(ci))
            bar.update(len(ci))
    return root


def _write_meta(path: Path, key: dict, done: int) -> None:
    with atomic_write(path) as f:
        f.write(json.dumps({"key": key, "done": done}, indent=2).encode())


class DistillBatches:
    """Endless batches (photos, relu4_1 features, paintings' stats, refined targets) of a
    finished set, in a fresh shuffle every pass; sample k of the run is a function of k alone,
    so a resumed run sees what an unbroken one would."""

    def __init__(self, root: str | Path, cache_dir: str | Path, seed: int) -> None:
        root, src = Path(root), Path(cache_dir)
        meta = json.loads((root / "meta.json").read_text()) if (root / "meta.json").exists() else {}
        if not meta or meta["done"] < meta["key"]["pairs"]:
            raise FileNotFoundError(f"{root}: no finished set of refined pairs (build it: python -m stylize.distill)")
        if meta["key"]["cache"] != json.loads((src / "meta.json").read_text())["key"]:
            raise FileNotFoundError(f"{root}: its pairs index another cache than {src}; rebuild it")
        self.index, self.targets = np.load(root / "pairs.npy"), np.load(root / "targets.npy", mmap_mode="r")
        self.content, self.feats, self.stats = (np.load(src / name, mmap_mode="r") for name in cache.FILES)
        self.seed = seed

    def batches(self, batch_size: int, start_step: int) -> Iterator[tuple[torch.Tensor, ...]]:
        n, sampler = len(self.index), iter(CountingSampler(start_step, batch_size))
        order: tuple[int, list[int]] = (-1, [])
        while True:
            ks = [next(sampler) for _ in range(batch_size)]
            picked = []
            for k in ks:
                if order[0] != k // n:
                    order = (k // n, permutation(self.seed, k // n, n))
                picked.append(order[1][k % n])
            ci, si = self.index[picked, 0], self.index[picked, 1]
            yield (
                torch.from_numpy(self.content[ci]).float().div_(255),
                torch.from_numpy(self.feats[ci].astype(np.float32)),
                torch.from_numpy(self.stats[si]),
                torch.from_numpy(self.targets[picked]).float().div_(255),
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m stylize.distill",
        description="Refine a fixed set of the training cache's pairs from a decoder's pictures: the "
        "targets of training's distill term (config keys distill_dir, distill_weight). Builds the "
        "cache first if the config's cache_dir has none; a stopped build goes on where it stopped.",
        epilog="example: python -m stylize.distill --config configs/adain_cpu.yaml --out runs/distill --pairs 1024",
    )
    p.add_argument("--config", type=Path, required=True, help="the training config (its data, cache and encoder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, required=True, help="folder of the refined set")
    p.add_argument("--decoder", type=Path, default=DEFAULT_DECODER, help="decoder whose pictures are refined")
    p.add_argument("--pairs", type=int, default=1024, help="how many pairs (default 1024)")
    p.add_argument("--steps", type=int, default=20, help="refinement steps per pair (default 20, as --refine 20)")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        if not (cfg.cache_dir and cfg.cache_photos):
            raise ConfigError("config key 'cache_dir': the refined pairs are drawn from the cache of photos; set one")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        encoder = load_encoder(cfg.encoder)
        decoder = load_decoder(args.decoder, tuple(cfg.skip_taps))
        root = cache.build(cfg, encoder, torch.device("cpu"))
        out = build(root, encoder, decoder, args.decoder, args.out, args.pairs, args.steps, args.batch_size, cfg.seed)
    except (ConfigError, WeightsError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"refined pairs: {out}")


if __name__ == "__main__":
    main()
