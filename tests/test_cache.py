import csv
import json
from pathlib import Path

import numpy as np
import torch

from stylize import cache
from stylize import train as T
from stylize.data import CropDataset
from stylize.distributed import Dist
from stylize.losses import tap_stats
from stylize.weights import load_encoder


def test_cache_holds_the_crops_their_features_and_the_paintings_statistics(cache_cfg):
    c = cache_cfg("cache_crops=2", "style_image_size=48")  # paintings at their own scale
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
    batches = [next(straight) for _ in range(5)]
    for a, b in zip(batches[4][:3], next(later)[:3]):  # resuming at step 4 gives step 4's batch
        assert torch.equal(a, b)
    shards = [next(cache.CachedBatches(c.cache_dir, c.seed).batches(2, 0, r, 2)) for r in (0, 1)]
    for whole, *parts in zip(batches[0][:3], *(s[:3] for s in shards)):  # two processes share each step's batch
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


def test_a_cache_of_the_paintings_alone_serves_a_run_that_reads_its_photos(cache_cfg, tmp_path):
    c, cpu = cache_cfg("cache_photos=false"), torch.device("cpu")
    enc = load_encoder(c.encoder)
    root = cache.build(c, enc, cpu)
    assert [p.name for p in root.glob("*.npy")] == ["stats.npy"]
    assert json.loads((root / "meta.json").read_text())["photos"] == 0
    assert cache.build(cache_cfg(), enc, cpu) == root and (root / "feats.npy").exists()  # not mistaken for a full one
    c = cache_cfg("cache_photos=false", f"cache_dir={tmp_path / 'paintings'}")
    read, mixed, full = (next(T.batches(x, enc, cpu, 3, Dist())) for x in (cache_cfg("cache_dir="), c, cache_cfg()))
    assert torch.equal(mixed.content, read.content) and mixed.feats is None  # the photos as read at step 3
    assert torch.equal(mixed.stats, full.stats)  # the paintings as the full cache gives them at step 3
    T.train(cache_cfg("cache_photos=false", "steps=4", out="straight"))
    T.train(cache_cfg("cache_photos=false", "steps=2", out="split"))
    T.train(cache_cfg("cache_photos=false", "steps=4", out="split"))
    a, b = (torch.load(tmp_path / d / "decoder.pth", weights_only=True) for d in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_paintings_cropped_to_their_own_size_are_read_cached_and_trained_on(cache_cfg):
    cpu = torch.device("cpu")
    read = cache_cfg("style_crop_size=24", "cache_dir=")
    enc = load_encoder(read.encoder)
    batch = next(T.batches(read, enc, cpu, 0, Dist()))
    assert batch.content.shape[-2:] == (32, 32) and batch.style.shape[-2:] == (24, 24)
    plain, c = cache_cfg("cache_photos=false"), cache_cfg("cache_photos=false", "style_crop_size=24")
    assert "style_crop_size" not in cache.cache_key(plain, plain.encoder)  # older caches keep their key
    assert cache.cache_key(c, c.encoder)["style_crop_size"] == 24
    stats = np.load(cache.build(c, enc, cpu) / "stats.npy")
    painting = CropDataset(c.style_dir, c.painting_size, 24, c.seed + 1)[1]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(stats[1]), tap_stats(enc(painting[None]))[0], atol=1e-4)
    T.train(cache_cfg("cache_photos=false", "style_crop_size=24", "steps=2"))


def test_the_skip_taps_features_are_added_to_a_cache_built_without_them(cache_cfg):
    enc = load_encoder(cache_cfg().encoder)
    root = cache.build(cache_cfg(), enc, torch.device("cpu"))  # no skips: the crops alone
    crops_built = (root / "content.npy").stat().st_mtime_ns
    c = cache_cfg("skip_taps=[relu2_1, relu3_1]", "cache_skips=true")
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
    content, _, _, shallow = next(cache.CachedBatches(root, c.seed, cache.cached_taps(c)).batches(2, 0))
    with torch.no_grad():
        again = enc(content, last="relu3_1")  # a batch's taps are its own photos'
    assert all(torch.allclose(shallow[t], again[t], rtol=1e-2, atol=1e-2) for t in shallow)
    assert next(cache.CachedBatches(root, c.seed).batches(2, 0))[3] == {}  # asked for none: none


def test_training_on_cached_skip_taps_is_training_on_encoded_ones(cache_cfg, decoder_path):
    c = cache_cfg("skip_taps=[relu2_1, relu3_1]", "cache_skips=true", "identity_weight=1")
    enc = load_encoder(c.encoder)
    dec = T.load_decoder(decoder_path, tuple(c.skip_taps))
    for conv in dec.skips.values():  # skips that do something
        torch.nn.init.normal_(conv.weight, std=0.05)
    content, feats, stats, shallow = next(
        cache.CachedBatches(cache.build(c, enc, torch.device("cpu")), c.seed, ("relu2_1", "relu3_1")).batches(2, 0)
    )
    cached = T.losses(enc, dec, content, feats, stats, 1, laplacian=True, ssim=True, photo_taps=shallow)
    encoded = T.losses(enc, dec, content, feats, stats, 1, laplacian=True, ssim=True)
    for a, b in zip(cached, encoded):
        assert torch.allclose(a, b, rtol=2e-3, atol=1e-6), (a, b)
    T.train(c)  # and a run on them goes through
    assert (Path(c.out_dir) / "decoder.pth").exists()
