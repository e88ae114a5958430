import json
import pickle
from pathlib import Path

import pytest
import torch
from helpers import ROOT

from stylize import weights as W
from stylize.models import Decoder, Encoder


def test_shipped_weights_match_their_manifest():
    manifest = json.loads((ROOT / "weights" / "MANIFEST.json").read_text())
    assert {"vgg19_relu4_1.pth", "decoder.pth"} <= set(manifest)
    for name, entry in manifest.items():
        assert W.sha256(ROOT / "weights" / name) == entry["sha256"], name
        assert entry["source"]


def test_save_load_round_trip(tmp_path):
    dec = Decoder()
    W.atomic_save(dec.state_dict(), tmp_path / "d.pth")
    loaded = W.load_decoder(tmp_path / "d.pth")
    for (k, a), b in zip(dec.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert list(tmp_path.iterdir()) == [tmp_path / "d.pth"]  # no temporary files left


def test_bad_weights_files_give_clear_errors(tmp_path):
    with pytest.raises(W.WeightsError, match="no such file"):
        W.load_decoder(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(W.WeightsError, match="junk.pth: not a readable weights file"):
        W.load_decoder(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save(Encoder().state_dict(), wrong)
    with pytest.raises(W.WeightsError, match=r"wrong.pth: wrong weights for Decoder: missing 0.weight"):
        W.load_decoder(wrong)
    shape = tmp_path / "shape.pth"
    state = Decoder().state_dict()
    state["0.weight"] = torch.zeros(1, 2, 3, 3)
    torch.save(state, shape)
    with pytest.raises(W.WeightsError, match=r"0.weight has shape \(1, 2, 3, 3\), expected \(256, 512, 3, 3\)"):
        W.load_decoder(shape)


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/stylize-pickle-ran"),))


def test_loading_never_unpickles_objects(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"0.weight": Boom()}, f)
    Path("/tmp/stylize-pickle-ran").unlink(missing_ok=True)
    with pytest.raises(W.WeightsError):
        W.load_decoder(evil)
    assert not Path("/tmp/stylize-pickle-ran").exists()


def test_fetch_checks_sha256(tmp_path, monkeypatch):
    monkeypatch.setattr(W, "CACHE_DIR", tmp_path / "cache")
    src = tmp_path / "d.pth"
    torch.save(Decoder().state_dict(), src)
    sha = W.sha256(src)
    assert isinstance(W.load_decoder(f"{src.as_uri()}#sha256={sha}"), Decoder)
    with pytest.raises(W.WeightsError, match="download failed"):
        W.fetch(src.as_uri(), "0" * 64)


def test_load_decoder_keeps_its_skips_and_adds_zero_ones_when_asked(tmp_path):
    plain, skipped = tmp_path / "plain.pth", tmp_path / "skipped.pth"
    torch.save(Decoder().state_dict(), plain)
    dec = W.load_decoder(plain, ["relu2_1"])  # to train skips from a decoder without them
    assert dec.skip_taps == ("relu2_1",) and not dec.skips["relu2_1"].weight.any()
    torch.nn.init.normal_(dec.skips["relu2_1"].weight)
    torch.save(dec.state_dict(), skipped)
    assert W.load_decoder(plain).skip_taps == ()
    again = W.load_decoder(skipped)  # the skips come with the weights
    assert again.skip_taps == ("relu2_1",) and torch.equal(again.skips["relu2_1"].weight, dec.skips["relu2_1"].weight)
    with pytest.raises(W.WeightsError, match="skips from relu2_1, not relu3_1"):
        W.load_decoder(skipped, ["relu3_1"])
