import csv
import json
from pathlib import Path

import numpy as np
import torch

from stylize.training import cache
from stylize.training import loop as T
from stylize.training import losses as L
from stylize.training.data import CropDataset
from stylize.training.losses import tap_stats
from stylize.weights import load_decoder, load_encoder


def test_cache_holds_the_crops_their_features_and_the_paintings_statistics(cache_cfg):
    c = cache_cfg("style_image_size=48")  # style images at their own scale
    enc = load_encoder(c.encoder)
    root = cache.build(c, enc, torch.device("cpu"))
    pixels, feats, stats = (np.load(root / name) for name in cache.FILES)
    assert pixels.shape == (6, 3, 32, 32) and feats.shape == (6, 512, 4, 4)  # 3 photos x 2 crops
    assert stats.shape == (4, 1920)  # 2 paintings x 2 crops
    photos = CropDataset(c.content_dir, c.image_size, c.crop_size, c.seed)
    paintings = CropDataset(c.style_dir, 48, c.crop_size, c.seed + 1)
    for k in (0, 5):  # the cache holds samples 0..n-1 of the training stream
        crop = photos[k]
        assert np.abs(pixels[k] / 255 - crop.numpy()).max() <= 0.5 / 255 + 1e-6
        with torch.no_grad():
            want = enc.relu4_1(torch.from_numpy(pixels[k][None]).float() / 255)
        assert torch.allclose(torch.from_numpy(feats[k]).float(), want, rtol=1e-2, atol=1e-2)
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(stats[3]), tap_stats(enc(paintings[3][None]))[0], atol=1e-4)


def test_cache_is_reused_and_rebuilt_when_what_it_was_built_from_changes(cache_cfg):
    enc = load_encoder(cache_cfg().encoder)
    root = cache.build(cache_cfg(), enc, torch.device("cpu"))
    meta = root / "meta.json"
    built = meta.stat().st_mtime_ns
    cache.build(cache_cfg(), enc, torch.device("cpu"))
    assert meta.stat().st_mtime_ns == built  # same inputs: reused
    cache.build(cache_cfg("crop_size=24"), enc, torch.device("cpu"))
    assert json.loads(meta.read_text())["key"]["crop_size"] == 24
    cache.build(cache_cfg("crop_size=24", "style_image_size=48"), enc, torch.device("cpu"))
    assert json.loads(meta.read_text())["key"]["style_image_size"] == 48
    assert np.load(root / "feats.npy").shape[-1] == 3


def test_cached_batches_follow_the_sample_numbers(cache_cfg):
    c = cache_cfg()
    cache.build(c, load_encoder(c.encoder), torch.device("cpu"))
    straight = cache.CachedBatches(c.cache_dir, c.seed).batches(2, 0)
    later = cache.CachedBatches(c.cache_dir, c.seed).batches(2, 4)

    def tensors(b):
        return b.content, b.feats, b.stats

    batches = [next(straight) for _ in range(5)]
    for a, b in zip(tensors(batches[4]), tensors(next(later))):  # resuming at step 4 gives step 4's batch
        assert torch.equal(a, b)
    shards = [next(cache.CachedBatches(c.cache_dir, c.seed).batches(2, 0, r, 2)) for r in (0, 1)]
    for whole, *parts in zip(tensors(batches[0]), *map(tensors, shards)):  # two processes share each step's batch
        assert torch.equal(whole, torch.cat(parts))


def test_training_from_the_cache_lowers_the_loss_and_resumes_exactly(cache_cfg, tmp_path):
    T.train(cache_cfg("steps=30", "lr=1e-3", "sample_every=30", "checkpoint_every=30", out="long"))
    loss = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "long" / "log.csv"))]
    assert sum(loss[-6:]) < 0.8 * sum(loss[:6]), loss
    T.train(cache_cfg("steps=6", out="straight"))
    T.train(cache_cfg("steps=3", out="split"))
    T.train(cache_cfg("steps=6", out="split"))
    a, b = (torch.load(tmp_path / d / "decoder.pth", weights_only=True) for d in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_skip_taps_features_are_added_to_a_cache_built_without_them(cache_cfg):
    enc = load_encoder(cache_cfg().encoder)
    root = cache.build(cache_cfg(), enc, torch.device("cpu"))  # no skips: the crops alone
    crops_built = (root / "content.npy").stat().st_mtime_ns
    c = cache_cfg("skip_taps=[relu2_1, relu3_1]")
    cache.build(c, enc, torch.device("cpu"))
    assert (root / "content.npy").stat().st_mtime_ns == crops_built  # the crops were not made again
    assert json.loads((root / "meta.json").read_text())["taps"] == ["relu2_1", "relu3_1"]
    pixels = np.load(root / "content.npy")
    with torch.no_grad():
        want = enc(torch.from_numpy(pixels).float() / 255, last="relu3_1")
    for tap, shape in (("relu2_1", (6, 128, 16, 16)), ("relu3_1", (6, 256, 8, 8))):
        got = np.load(root / f"{tap}.npy")
        assert got.shape == shape and got.dtype == np.float16
        assert torch.allclose(torch.from_numpy(got).float(), want[tap], rtol=1e-2, atol=1e-2)
    b = next(cache.CachedBatches(root, c.seed, tuple(c.skip_taps)).batches(2, 0))
    with torch.no_grad():
        again = enc(b.content, last="relu3_1")  # a batch's taps are its own content images'
    assert all(torch.allclose(b.taps[t], again[t], rtol=1e-2, atol=1e-2) for t in b.taps)
    assert next(cache.CachedBatches(root, c.seed).batches(2, 0)).taps == {}  # asked for none: none


def test_training_on_cached_skip_taps_is_training_on_encoded_ones(cache_cfg, decoder_path):
    c = cache_cfg("skip_taps=[relu2_1, relu3_1]", "identity_weight=1")
    enc = load_encoder(c.encoder)
    dec = load_decoder(decoder_path, tuple(c.skip_taps))
    for conv in dec.skips.values():  # skips that do something
        torch.nn.init.normal_(conv.weight, std=0.05)
    root = cache.build(c, enc, torch.device("cpu"))
    b = next(cache.CachedBatches(root, c.seed, ("relu2_1", "relu3_1")).batches(2, 0))
    with torch.no_grad():  # the same crops, their skip taps encoded here
        taps = enc(b.content, last="relu3_1")
    weights = T.loss_weights(c) | {"laplacian": 1.0, "ssim": 1.0}
    cached = L.terms(enc, dec, b, weights)
    encoded = L.terms(enc, dec, b._replace(taps={t: taps[t] for t in b.taps}), weights)
    for k in cached:
        assert torch.allclose(cached[k], encoded[k], rtol=2e-3, atol=1e-6), (k, cached[k], encoded[k])
    T.train(c)  # and a run on them goes through
    assert (Path(c.out_dir) / "decoder.pth").exists()
