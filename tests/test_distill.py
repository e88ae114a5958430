import csv
import json

import numpy as np
import pytest
import torch
from helpers import ROOT

from stylize import cache, distill
from stylize import train as T
from stylize.config import ConfigError
from stylize.refine import refine
from stylize.weights import load_decoder, load_encoder


@pytest.fixture
def built(cache_cfg, decoder_path, tmp_path):
    """A finished set of 5 refined pairs (batches of 2: the last one short) and its pieces."""
    c = cache_cfg()
    enc, dec = load_encoder(c.encoder), load_decoder(decoder_path)
    root = cache.build(c, enc, torch.device("cpu"))
    out = distill.build(root, enc, dec, decoder_path, tmp_path / "refined", pairs=5, steps=2, batch_size=2)
    return c, enc, dec, out


def test_the_targets_are_the_decoder_s_pictures_refined(built):
    c, enc, dec, out = built
    pairs, targets = np.load(out / "pairs.npy"), np.load(out / "targets.npy")
    content, feats, stats = (np.load(f"{c.cache_dir}/{name}") for name in cache.FILES)
    assert targets.shape == (5, 3, 32, 32) and json.loads((out / "meta.json").read_text())["done"] == 5
    assert len(set(pairs[:, 0])) == 5 and pairs[:, 1].max() < len(stats)  # distinct photos, real paintings
    k, (ci, si) = 4, pairs[4]  # the short last batch
    photo = torch.from_numpy(content[[ci]]).float() / 255
    style = torch.from_numpy(stats[[si]])
    with torch.no_grad():
        image = distill.paint(enc, dec, photo, torch.from_numpy(feats[[ci]]).float(), style)
    expected = refine(enc, photo, image.clamp(0, 1), style, steps=2)
    assert np.abs(targets[k].astype(int) - expected[0].mul(255).round().numpy()).max() <= 1
    assert not np.array_equal(targets[k], image.clamp(0, 1)[0].mul(255).round().byte().numpy())


def test_a_stopped_build_goes_on_where_it_stopped_and_another_key_starts_afresh(built, monkeypatch, decoder_path):
    c, enc, dec, out = built
    whole = np.load(out / "targets.npy")
    other = out.parent / "stopped"
    calls = []

    def stop_at_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return refine(*args, **kwargs)

    monkeypatch.setattr(distill, "refine", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        distill.build(c.cache_dir, enc, dec, decoder_path, other, pairs=5, steps=2, batch_size=2)
    assert json.loads((other / "meta.json").read_text())["done"] == 2
    monkeypatch.setattr(distill, "refine", refine)
    distill.build(c.cache_dir, enc, dec, decoder_path, other, pairs=5, steps=2, batch_size=2)
    assert np.abs(np.load(other / "targets.npy").astype(int) - whole).max() <= 1
    distill.build(c.cache_dir, enc, dec, decoder_path, other, pairs=5, steps=1, batch_size=2)
    assert not np.array_equal(np.load(other / "targets.npy"), whole)  # refined again, fewer steps


def test_batches_follow_the_sample_numbers_and_an_unfinished_set_is_refused(built, tmp_path):
    c, _, _, out = built
    straight = distill.DistillBatches(out, c.cache_dir, 0).batches(2, 0)
    later = distill.DistillBatches(out, c.cache_dir, 0).batches(2, 3)
    seen = [next(straight) for _ in range(5)]
    assert all(torch.equal(a, b) for a, b in zip(seen[3], next(later)))
    targets = np.load(out / "targets.npy")
    firsts = {tuple(t[0].mul(255).round().byte().flatten()[:8].tolist()) for t in (b[3] for b in seen[:3])}
    assert len(firsts) == 3 and all(b[3].shape == (2, 3, 32, 32) for b in seen)
    assert any(np.array_equal(seen[0][3][0].mul(255).round().byte().numpy(), t) for t in targets)
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "done": 4}))
    with pytest.raises(FileNotFoundError, match="no finished set"):
        distill.DistillBatches(out, c.cache_dir, 0)


def test_training_with_the_distill_term_pulls_towards_the_targets_and_resumes_exactly(built, cache_cfg, tmp_path):
    *_, out = built
    sets = [f"distill_dir={out}", "distill_images=2"]
    only = ["content_weight=0", "style_weight=0", "distill_weight=1", "steps=40", "checkpoint_every=40"]
    T.train(cache_cfg(*sets, *only, "sample_every=40", out="only"))
    rows = list(csv.DictReader(open(tmp_path / "only" / "log.csv")))
    ld = [float(r["distill"]) for r in rows]
    assert sum(ld[-8:]) < 0.8 * sum(ld[:8]), ld
    assert [float(r["loss"]) for r in rows] == pytest.approx(ld, rel=1e-5)  # the only term, weight 1
    T.train(cache_cfg(*sets, "distill_weight=5", "steps=4", out="straight"))
    T.train(cache_cfg(*sets, "distill_weight=5", "steps=2", out="split"))
    T.train(cache_cfg(*sets, "distill_weight=5", "steps=4", out="split"))
    a, b = (torch.load(tmp_path / d / "decoder.pth", weights_only=True) for d in ("straight", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(float(r["distill"]) > 0 for r in csv.DictReader(open(tmp_path / "split" / "log.csv")))


def test_the_distill_term_needs_its_set_and_the_cache(cache_cfg, tmp_path):
    with pytest.raises(ConfigError, match="distill_dir and cache_dir"):
        cache_cfg("distill_weight=1")
    with pytest.raises(ConfigError, match="distill_images"):
        cache_cfg("distill_weight=1", f"distill_dir={tmp_path}", "distill_images=0")
    with pytest.raises(FileNotFoundError, match="no finished set"):
        T.train(cache_cfg("distill_weight=1", f"distill_dir={tmp_path / 'none'}"))


def test_the_command_says_what_is_missing(tmp_path, capsys, image_dirs, encoder_path):
    content, style = image_dirs
    args = ["--config", str(ROOT / "configs" / "smoke.yaml"), "--out", str(tmp_path / "r")]
    sets = ["--set", f"content_dir={content}", "--set", f"style_dir={style}", "--set", f"encoder={encoder_path}"]
    with pytest.raises(SystemExit) as e:
        distill.main(args + sets)
    assert e.value.code == 2 and "cache_dir" in capsys.readouterr().err
